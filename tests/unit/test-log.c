/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "edgeprov/log.h"
#include "lib/log-internal.h"

#define SEC ((uint64_t) 1000000)

static uint64_t fake_now;
static uint64_t fake_clock(void) {
        return fake_now;
}

#define MAX_LINES 64
static char lines[MAX_LINES][512];
static int levels[MAX_LINES];
static unsigned n_lines;

static void sink(int level, const char *message) {
        assert_true(n_lines < MAX_LINES);
        levels[n_lines] = level;
        (void) snprintf(lines[n_lines++], sizeof(lines[0]), "%s", message);
}

static int setup(void **state) {
        (void) state;
        n_lines = 0;
        fake_now = 1000 * SEC;
        log_set_sink(sink);
        log_set_max_level(LOG_DEBUG);
        log_test_set_clock(fake_clock);
        return 0;
}

static int teardown(void **state) {
        (void) state;
        log_test_set_clock(NULL);
        log_set_sink(NULL);
        log_set_max_level(LOG_INFO);
        return 0;
}

static unsigned count_lines(const char *text) {
        unsigned n = 0;
        for (unsigned i = 0; i < n_lines; i++)
                n += streq(lines[i], text);
        return n;
}

/* one call site, so that repeated calls are "the same message" */
static void log_failure(const char *what) {
        log_error("Registration failed: %s", what);
}

static void test_burst_then_suppressed(void **state) {
        (void) state;
        for (unsigned i = 0; i < 20; i++) {
                log_failure("401002");
                fake_now += SEC;
        }
        assert_int_equal(n_lines, LOG_RATELIMIT_BURST);
        assert_int_equal(count_lines("Registration failed: 401002"), LOG_RATELIMIT_BURST);
        assert_int_equal(levels[0], LOG_ERR);
}

static void test_summary_when_window_ends(void **state) {
        (void) state;
        for (unsigned i = 0; i < 12; i++) /* 5 emitted, 7 suppressed */
                log_failure("timeout");
        assert_int_equal(n_lines, 5);
        /* still inside the window: nothing more, even for another message */
        fake_now += LOG_RATELIMIT_INTERVAL_USEC - 1;
        log_info("Connecting to %s", "hub");
        assert_int_equal(n_lines, 6);
        assert_string_equal(lines[5], "Connecting to hub");
        /* window over: the next message of any kind first brings the summary */
        fake_now += 1;
        log_info("Connecting to %s", "hub");
        assert_int_equal(n_lines, 8);
        assert_string_equal(lines[6], "Suppressed 7 similar messages: Registration failed: timeout");
        assert_int_equal(levels[6], LOG_ERR);
        assert_string_equal(lines[7], "Connecting to hub");
        /* a new window for the old message starts from scratch */
        log_failure("timeout");
        assert_int_equal(n_lines, 9);
        assert_string_equal(lines[8], "Registration failed: timeout");
}

static void test_no_summary_without_suppression(void **state) {
        (void) state;
        for (unsigned i = 0; i < LOG_RATELIMIT_BURST; i++)
                log_failure("x");
        fake_now += 2 * LOG_RATELIMIT_INTERVAL_USEC;
        log_failure("x");
        assert_int_equal(n_lines, LOG_RATELIMIT_BURST + 1);
        for (unsigned i = 0; i < n_lines; i++)
                assert_null(strstr(lines[i], "Suppressed"));
}

static void test_different_text_level_site_are_separate(void **state) {
        (void) state;
        for (unsigned i = 0; i < 10; i++) {
                log_failure("a");
                log_failure("b");
                log_warning("Registration failed: a");            /* other level (and site) */
                log_error("Registration failed: %s", "a");        /* other call site */
        }
        assert_int_equal(count_lines("Registration failed: a"), 3 * LOG_RATELIMIT_BURST);
        assert_int_equal(count_lines("Registration failed: b"), LOG_RATELIMIT_BURST);
}

static void test_debug_not_limited(void **state) {
        (void) state;
        for (unsigned i = 0; i < 20; i++)
                log_debug("Polling operation %s", "op-1");
        assert_int_equal(count_lines("Polling operation op-1"), 20);
}

static void test_filtered_levels_do_not_count(void **state) {
        (void) state;
        log_set_max_level(LOG_WARNING);
        for (unsigned i = 0; i < 20; i++)
                log_info("Hidden");
        log_set_max_level(LOG_DEBUG);
        log_info("Hidden");
        assert_int_equal(n_lines, 1);
}

static void log_numbered(unsigned i) {
        log_warning("Peer %u sent garbage", i);
}

static void test_table_bounded_eviction_summarises(void **state) {
        (void) state;
        for (unsigned i = 0; i < 7; i++) /* 5 emitted, 2 suppressed */
                log_numbered(0);
        assert_int_equal(n_lines, 5);
        /* fill every other slot: the oldest entry (peer 0) is evicted and summarised */
        for (unsigned i = 1; i <= LOG_RATELIMIT_SLOTS; i++) {
                fake_now += 1;
                log_numbered(i);
        }
        assert_int_equal(count_lines("Suppressed 2 similar messages: Peer 0 sent garbage"), 1);
        assert_int_equal(n_lines, 5 + LOG_RATELIMIT_SLOTS + 1);
        /* many distinct messages never lose one */
        n_lines = 0;
        fake_now += 2 * LOG_RATELIMIT_INTERVAL_USEC;
        for (unsigned i = 100; i < 140; i++)
                log_numbered(i);
        assert_int_equal(n_lines, 40);
}

static void test_flush_and_errno_return(void **state) {
        (void) state;
        for (unsigned i = 0; i < 6; i++)
                assert_int_equal(log_error_errno(-EIO, "Write failed: %m"), -EIO);
        assert_int_equal(n_lines, 5);
        log_ratelimit_flush();
        assert_int_equal(n_lines, 6);
        assert_string_equal(lines[5], "Suppressed 1 similar message: Write failed: Input/output error");
        log_ratelimit_flush();
        assert_int_equal(n_lines, 6);
}

static void test_long_text_truncated_in_summary(void **state) {
        char big[1500];
        (void) state;
        memset(big, 'z', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        for (unsigned i = 0; i < 8; i++)
                log_error("%s", big);
        assert_int_equal(n_lines, 5);
        log_ratelimit_flush();
        assert_int_equal(n_lines, 6);
        assert_true(startswith(lines[5], "Suppressed 3 similar messages: zzz"));
        assert_true(strlen(lines[5]) < LOG_RATELIMIT_TEXT_MAX + 64);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_burst_then_suppressed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_summary_when_window_ends, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_summary_without_suppression, setup, teardown),
                cmocka_unit_test_setup_teardown(test_different_text_level_site_are_separate, setup, teardown),
                cmocka_unit_test_setup_teardown(test_debug_not_limited, setup, teardown),
                cmocka_unit_test_setup_teardown(test_filtered_levels_do_not_count, setup, teardown),
                cmocka_unit_test_setup_teardown(test_table_bounded_eviction_summarises, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flush_and_errno_return, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_text_truncated_in_summary, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
