/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Arch-neutral <asm/types.h> for the BPF target: the generic definitions every architecture uses. */
#pragma once
#include <asm-generic/types.h>
