/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Arch-neutral <asm/bitsperlong.h>: asm-generic derives it from __SIZEOF_LONG__ (64 on BPF). */
#pragma once
#include <asm-generic/bitsperlong.h>
