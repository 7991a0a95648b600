/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Arch-neutral <asm/posix_types.h> for the BPF target. */
#pragma once
#include <asm-generic/posix_types.h>
