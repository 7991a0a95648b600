/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Arch-neutral <asm/swab.h>: the generic byte swaps, no architecture's inline assembly. */
#pragma once
#include <asm-generic/swab.h>
