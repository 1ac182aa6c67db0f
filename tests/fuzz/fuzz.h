/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Every fuzz target defines this.  With --enable-fuzzing it is driven by libFuzzer;
 * otherwise tests/fuzz/fuzz-main.c replays tests/fuzz/corpus/<target>/ through it. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
