/* SPDX-License-Identifier: MIT */
#pragma once

/* Internals of log.c that tests need: the rate limit of repeated identical messages and a hook
 * to control its clock.  Not for use outside log.c and tests/unit/test-log.c. */

#include <stdint.h>

/* A message (same level, same call site, same formatted text) is emitted at most
 * LOG_RATELIMIT_BURST times per LOG_RATELIMIT_INTERVAL_USEC; further copies are counted, and
 * once the window is over one line "Suppressed N similar messages: <text>" is emitted (lazily:
 * at the next log call of any message after the window ended, or when the entry is evicted from
 * the fixed table of LOG_RATELIMIT_SLOTS entries).  LOG_DEBUG is never rate-limited. */
#define LOG_RATELIMIT_INTERVAL_USEC (60ULL * 1000000ULL)
#define LOG_RATELIMIT_BURST 5U
#define LOG_RATELIMIT_SLOTS 16U
#define LOG_RATELIMIT_TEXT_MAX 256U

typedef uint64_t (*LogClock)(void);

/* Replace the monotonic clock (NULL restores CLOCK_MONOTONIC) and forget all rate-limit state. */
void log_test_set_clock(LogClock clock);
/* Forget all rate-limit state without emitting anything. */
void log_ratelimit_reset(void);
/* Emit the pending "Suppressed N similar messages" lines of every entry, whether or not its
 * window is over, and forget all state. */
void log_ratelimit_flush(void);
