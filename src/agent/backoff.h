/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

/* Exponential backoff with full jitter: the n-th delay is uniform in
 * [floor, min(max, initial * 2^n)], floor = min(initial, 1 s) / 2 so that retries never spin. */
typedef struct Backoff {
        uint64_t initial_usec;
        uint64_t max_usec;
        unsigned attempt;
} Backoff;

void backoff_init(Backoff *b, uint64_t initial_usec, uint64_t max_usec);
void backoff_reset(Backoff *b);
/* The upper bound for the current attempt (before jitter). */
uint64_t backoff_ceiling(const Backoff *b);
/* Next delay using a caller-provided random 64-bit value (tests), or a CSPRNG one. */
uint64_t backoff_next_with(Backoff *b, uint64_t random_value);
uint64_t backoff_next(Backoff *b);
