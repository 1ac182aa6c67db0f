/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>
#include <time.h>

/* The time of `clock` in µs (0 if the clock cannot be read): CLOCK_MONOTONIC for intervals,
 * CLOCK_BOOTTIME for timers that must count a suspend, CLOCK_REALTIME for timestamps. */
uint64_t clock_now_usec(clockid_t clock);
