/* SPDX-License-Identifier: MIT */
/* The registration record store (src/dps/store.c): round trip, case-insensitive ids,
 * replace, delete, iteration, a second handle seeing the first one's commits (as
 * edgeprov-dpsctl sees the plugin's), file mode, and constant cost per put as the table grows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <errno.h>

#include "dps/store.h"
#include "edgeprov/macro.h"

static char dir[] = "/tmp/test-dps-store.XXXXXX";
static char *db_path;

static int setup(void **state) {
        assert_non_null(mkdtemp(dir));
        assert_true(asprintf(&db_path, "%s/registrations.db", dir) > 0);
        return 0;
}

static int teardown(void **state) {
        char *cmd = NULL;
        assert_true(asprintf(&cmd, "rm -rf '%s'", dir) > 0);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        free(db_path);
        return 0;
}

static DpsRecord record(const char *id, const char *hub, const char *substatus) {
        return (DpsRecord) {
                .registration_id = (char *) id,
                .device_id = (char *) id,
                .assigned_hub = (char *) hub,
                .initial_hub = (char *) hub,
                .status = (char *) "assigned",
                .substatus = (char *) substatus,
                .etag = (char *) "ImV0YWci",
                .initial_twin = (char *) "{\"tags\":{\"a\":1}}",
                .created_usec = 1000,
                .updated_usec = 2000,
        };
}

static void test_roundtrip(void **state) {
        _cleanup_(dps_store_freep) DpsStore *s = NULL, *other = NULL;
        _cleanup_(dps_record_done) DpsRecord got = {};
        struct stat st;
        uint64_t n = 99;

        assert_int_equal(dps_store_open(db_path, &s, NULL), 0);
        assert_int_equal(stat(db_path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0640);

        assert_int_equal(dps_store_get(s, "dev1", &got), -ENOENT);
        DpsRecord r = record("Dev1", "hub-a", "initialAssignment");
        assert_int_equal(dps_store_put(s, &r), 0);
        assert_int_equal(dps_store_get(s, "dev1", &got), 0); /* case-insensitive */
        assert_string_equal(got.registration_id, "Dev1");
        assert_string_equal(got.assigned_hub, "hub-a");
        assert_string_equal(got.substatus, "initialAssignment");
        assert_string_equal(got.initial_twin, "{\"tags\":{\"a\":1}}");
        assert_null(got.enrollment_group_id);
        assert_null(got.error_message);
        assert_int_equal(got.created_usec, 1000);
        assert_int_equal(got.updated_usec, 2000);
        dps_record_done(&got);

        /* replace */
        r = record("DEV1", "hub-b", "deviceDataMigrated");
        r.updated_usec = 3000;
        assert_int_equal(dps_store_put(s, &r), 0);
        assert_int_equal(dps_store_count(s, &n), 0);
        assert_int_equal(n, 1);

        /* another handle (another process in real life) sees the committed record */
        assert_int_equal(dps_store_open(db_path, &other, NULL), 0);
        assert_int_equal(dps_store_get(other, "dev1", &got), 0);
        assert_string_equal(got.assigned_hub, "hub-b");
        assert_string_equal(got.substatus, "deviceDataMigrated");
        assert_int_equal(got.updated_usec, 3000);
        dps_record_done(&got);

        assert_int_equal(dps_store_delete(other, "dev1"), 0);
        assert_int_equal(dps_store_delete(other, "dev1"), -ENOENT);
        assert_int_equal(dps_store_get(s, "dev1", &got), -ENOENT);

        /* invalid records are refused */
        r = record("dev2", "hub-a", NULL);
        r.etag = NULL;
        assert_int_equal(dps_store_put(s, &r), -EINVAL);
}

static int collect(const DpsRecord *r, void *userdata) {
        char *buf = userdata;
        strcat(buf, r->registration_id);
        strcat(buf, ",");
        return 0;
}

static int stop_early(const DpsRecord *r, void *userdata) {
        return -ECANCELED;
}

static void test_foreach(void **state) {
        _cleanup_(dps_store_freep) DpsStore *s = NULL;
        char buf[64] = "";

        assert_int_equal(dps_store_open(db_path, &s, NULL), 0);
        const char *ids[] = { "c", "a", "b" };
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                DpsRecord r = record(ids[i], "hub", "initialAssignment");
                assert_int_equal(dps_store_put(s, &r), 0);
        }
        assert_int_equal(dps_store_foreach(s, collect, buf), 0);
        assert_string_equal(buf, "a,b,c,");
        assert_int_equal(dps_store_foreach(s, stop_early, NULL), -ECANCELED);
}

static void test_open_errors(void **state) {
        DpsStore *s = NULL;
        char *msg = NULL;

        assert_int_equal(dps_store_open("/nonexistent-dir/x.db", &s, &msg), -ENOENT);
        assert_null(s);
        assert_non_null(strstr(msg, "/nonexistent-dir/x.db"));
        free(msg);
}

static uint64_t now_nsec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* mean ns per get+put of n_batch new records */
static uint64_t batch_cost(DpsStore *s, unsigned start, unsigned n_batch) {
        uint64_t t0 = now_nsec();
        for (unsigned i = start; i < start + n_batch; i++) {
                char id[32];
                DpsRecord got;
                snprintf(id, sizeof(id), "device-%08u", (i * 2654435761u) % 100000000u);
                DpsRecord r = record(id, "hub", "initialAssignment");
                assert_int_equal(dps_store_get(s, id, &got), -ENOENT);
                assert_int_equal(dps_store_put(s, &r), 0);
        }
        return (now_nsec() - t0) / n_batch;
}

/* O(log n) with a small constant: the cost per registration with ~20,000 records is not much
 * higher than with ~1,000 (the 100,000-record figure is measured by bench/dps-throughput). */
static void test_operations(void **state) {
        _cleanup_(dps_store_freep) DpsStore *s = NULL, *other = NULL;
        _cleanup_(dps_operation_record_done) DpsOperationRecord got = {}, got2 = {}, pending = {};
        _cleanup_(dps_record_done) DpsRecord rec = {};
        DpsRecord r = record("op-dev", "hub1.example.net", "initialAssignment");
        unsigned n = 99;

        assert_int_equal(dps_store_open(db_path, &s, NULL), 0);
        assert_int_equal(dps_store_open(db_path, &other, NULL), 0);

        /* record and operation in one transaction, visible to the other handle */
        DpsOperationRecord op = { .id = (char *) "4.1.a", .registration_id = (char *) "op-dev", .created_usec = 5000,
                                  .body = (char *) "{\"status\":\"assigned\"}" };
        assert_int_equal(dps_store_put_operation(s, &r, &op), 0);
        assert_int_equal(dps_store_get_operation(other, "4.1.a", &got), 0);
        assert_string_equal(got.registration_id, "op-dev");
        assert_string_equal(got.body, "{\"status\":\"assigned\"}");
        assert_int_equal(got.created_usec, 5000);
        assert_int_equal(dps_store_get(other, "OP-DEV", &rec), 0);
        assert_int_equal(dps_store_get_operation(s, "4.1.b", &got2), -ENOENT);

        /* a pending operation has no body; an explicit transaction rolls back */
        DpsOperationRecord op2 = { .id = (char *) "4.1.b", .registration_id = (char *) "op-dev", .created_usec = 9000 };
        assert_int_equal(dps_store_put_operation(s, NULL, &op2), 0);
        assert_int_equal(dps_store_get_operation(s, "4.1.b", &pending), 0);
        assert_null(pending.body);
        DpsOperationRecord op3 = { .id = (char *) "4.1.c", .registration_id = (char *) "x", .created_usec = 1 };
        assert_int_equal(dps_store_begin(s), 0);
        assert_int_equal(dps_store_put_operation(s, NULL, &op3), 0);
        dps_store_rollback(s);
        dps_store_rollback(s); /* outside a transaction: nothing */
        assert_int_equal(dps_store_get_operation(other, "4.1.c", &got2), -ENOENT);

        /* expiry: oldest first, at most max per call */
        assert_int_equal(dps_store_purge_operations(s, 6000, 10, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(dps_store_get_operation(s, "4.1.a", &got2), -ENOENT);
        assert_int_equal(dps_store_purge_operations(s, 6000, 10, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(dps_store_purge_operations(s, 100000, 0, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(dps_store_purge_operations(s, 100000, 1, &n), 0);
        assert_int_equal(n, 1);

        assert_int_equal(dps_store_put_operation(s, NULL, NULL), -EINVAL);
        DpsOperationRecord bad = { .id = (char *) "x" };
        assert_int_equal(dps_store_put_operation(s, NULL, &bad), -EINVAL);
}

static void test_cost_does_not_grow(void **state) {
        _cleanup_(dps_store_freep) DpsStore *s = NULL;
        _cleanup_free_ char *p = NULL;

        assert_true(asprintf(&p, "%s/big.db", dir) > 0);
        assert_int_equal(dps_store_open(p, &s, NULL), 0);
        uint64_t early = batch_cost(s, 0, 1000);
        for (unsigned i = 1000; i < 19000; i += 1000)
                (void) batch_cost(s, i, 1000);
        uint64_t late = batch_cost(s, 19000, 1000);
        print_message("get+put: %" PRIu64 " ns at 1k records, %" PRIu64 " ns at 20k records\n", early, late);
        assert_true(late < early * 3 + 20000);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip),
                cmocka_unit_test(test_foreach),
                cmocka_unit_test(test_operations),
                cmocka_unit_test(test_open_errors),
                cmocka_unit_test(test_cost_does_not_grow),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
