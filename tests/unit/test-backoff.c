/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/backoff.h"

#define SEC ((uint64_t) 1000000)

static void test_ceiling_doubles_and_caps(void **state) {
        Backoff b;
        backoff_init(&b, 2 * SEC, 60 * SEC);
        uint64_t expect[] = { 2, 4, 8, 16, 32, 60, 60, 60 };
        for (unsigned i = 0; i < 8; i++) {
                assert_int_equal(backoff_ceiling(&b), expect[i] * SEC);
                (void) backoff_next_with(&b, 0);
        }
        backoff_reset(&b);
        assert_int_equal(backoff_ceiling(&b), 2 * SEC);
}

static void test_full_jitter_bounds(void **state) {
        Backoff b;
        backoff_init(&b, 1 * SEC, 300 * SEC);
        /* smallest and largest random values hit the floor and the ceiling exactly */
        assert_int_equal(backoff_next_with(&b, 0), SEC / 2);
        uint64_t ceiling = backoff_ceiling(&b);
        assert_int_equal(ceiling, 2 * SEC);
        assert_int_equal(backoff_next_with(&b, ceiling - SEC / 2), ceiling);

        /* with the CSPRNG: always inside [floor, ceiling], and spread out (not constant) */
        backoff_init(&b, 1 * SEC, 300 * SEC);
        for (unsigned i = 0; i < 12; i++)
                (void) backoff_next(&b);
        uint64_t lo = UINT64_MAX, hi = 0;
        for (unsigned i = 0; i < 200; i++) {
                Backoff c = b;
                uint64_t d = backoff_next(&c);
                assert_true(d >= SEC / 2);
                assert_true(d <= 300 * SEC);
                lo = d < lo ? d : lo;
                hi = d > hi ? d : hi;
        }
        assert_true(hi - lo > 60 * SEC);
}

static void test_degenerate(void **state) {
        Backoff b;
        backoff_init(&b, 0, 0); /* becomes 1 s .. 1 s */
        assert_int_equal(backoff_ceiling(&b), SEC);
        for (unsigned i = 0; i < 100; i++) {
                uint64_t d = backoff_next_with(&b, UINT64_MAX);
                assert_true(d >= SEC / 2 && d <= SEC);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ceiling_doubles_and_caps),
                cmocka_unit_test(test_full_jitter_bounds),
                cmocka_unit_test(test_degenerate),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
