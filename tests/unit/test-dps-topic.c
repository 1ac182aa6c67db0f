/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "edgeprov/dps.h"
#include "edgeprov/macro.h"

#define OP "4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d"
#define UUID "9f0b8e1e-5ad7-4c2b-9d0e-3f1c6a2b7e11"

static void test_request_topics(void **state) {
        static const struct {
                const char *name, *topic;
                DpsRequestType type;
                const char *rid, *op;
        } v[] = {
                { "C SDK register", "$dps/registrations/PUT/iotdps-register/?$rid=1", DPS_REQUEST_REGISTER, "1", NULL },
                { "C SDK poll", "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=" OP,
                  DPS_REQUEST_OPERATION_STATUS, "2", OP },
                { "embedded C poll", "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=" OP,
                  DPS_REQUEST_OPERATION_STATUS, "1", OP },
                { "Node register", "$dps/registrations/PUT/iotdps-register/?$rid=" UUID, DPS_REQUEST_REGISTER, UUID,
                  NULL },
                { "Node poll", "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=" UUID "&operationId=" OP,
                  DPS_REQUEST_OPERATION_STATUS, UUID, OP },
                { "Python poll (quoted, no-op)",
                  "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=" UUID "&operationId=" OP,
                  DPS_REQUEST_OPERATION_STATUS, UUID, OP },
                { "Python poll (quoted, something to decode)",
                  "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=" UUID "&operationId=4%2Eabc%3Adef",
                  DPS_REQUEST_OPERATION_STATUS, UUID, "4.abc:def" },
                { ".NET register", "$dps/registrations/PUT/iotdps-register/?$rid=42", DPS_REQUEST_REGISTER, "42",
                  NULL },
                { "keys swapped", "$dps/registrations/GET/iotdps-get-operationstatus/?operationId=" OP "&$rid=7",
                  DPS_REQUEST_OPERATION_STATUS, "7", OP },
                { "rid echoed raw, not decoded", "$dps/registrations/PUT/iotdps-register/?$rid=a%2Fb=c",
                  DPS_REQUEST_REGISTER, "a%2Fb=c", NULL },
                { "unknown key, operationId on register", "$dps/registrations/PUT/iotdps-register/?x=y&$rid=9&operationId=z",
                  DPS_REQUEST_REGISTER, "9", NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                _cleanup_(dps_request_topic_done) DpsRequestTopic t = {};
                int r = dps_request_topic_parse(v[i].topic, &t);
                if (r != 0)
                        fail_msg("%s: %d", v[i].name, r);
                assert_int_equal(t.type, v[i].type);
                assert_string_equal(t.rid, v[i].rid);
                if (v[i].op)
                        assert_string_equal(t.operation_id, v[i].op);
                else
                        assert_null(t.operation_id);
        }
}

static void test_request_topics_bad(void **state) {
        char long_rid[DPS_RID_MAX + 2];
        memset(long_rid, '1', sizeof(long_rid) - 1);
        long_rid[sizeof(long_rid) - 1] = 0;
        _cleanup_free_ char *t_long_rid = NULL;
        assert_true(asprintf(&t_long_rid, "$dps/registrations/PUT/iotdps-register/?$rid=%s", long_rid) > 0);

        const char *bad[] = {
                "",
                "$dps/registrations/PUT/iotdps-register/",
                "$dps/registrations/PUT/iotdps-register/?",
                "$dps/registrations/PUT/iotdps-register/?$rid=",
                "$dps/registrations/PUT/iotdps-register/?rid=1",
                "$dps/registrations/PUT/iotdps-register/?$RID=1",
                "$dps/registrations/PUT/iotdps-register/?$rid=1&$rid=2",
                "$dps/registrations/PUT/iotdps-register/?$rid=1&",
                "$dps/registrations/PUT/iotdps-register/?$rid=1&&x=y",
                "$dps/registrations/PUT/iotdps-register/?$rid=1&junk",
                "$dps/registrations/PUT/iotdps-register/?$rid=a b",
                "$dps/registrations/PUT/iotdps-register/?$rid=a\tb",
                "$dps/registrations/PUT/iotdps-register/?$rid=\xc3\xa9",
                "$dps/registrations/put/iotdps-register/?$rid=1",
                "$dps/registrations/PUT/iotdps-register?$rid=1",
                "$dps/registrations/res/202/?$rid=1",
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1",
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=",
                "$dps/registrations/GET/iotdps-get-operationstatus/?operationId=" OP,
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=a%00",
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=a%zz",
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=a%20b",
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=a&operationId=b",
                t_long_rid,
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                DpsRequestTopic t = { .rid = (char *) 0x1 };
                int r = dps_request_topic_parse(bad[i], &t);
                if (r != -EINVAL)
                        fail_msg("case %zu '%s': %d", i, bad[i], r);
                assert_ptr_equal(t.rid, (char *) 0x1);
        }

        /* DPS_RID_MAX itself is fine */
        t_long_rid[strlen(t_long_rid) - 1] = 0;
        _cleanup_(dps_request_topic_done) DpsRequestTopic t = {};
        assert_int_equal(dps_request_topic_parse(t_long_rid, &t), 0);
        assert_int_equal(strlen(t.rid), DPS_RID_MAX);

        char big[DPS_TOPIC_MAX + 2];
        int n = snprintf(big, sizeof(big), "$dps/registrations/PUT/iotdps-register/?$rid=1&x=");
        memset(big + n, 'x', sizeof(big) - n - 1);
        big[sizeof(big) - 1] = 0;
        DpsRequestTopic t2 = {};
        assert_int_equal(dps_request_topic_parse(big, &t2), -E2BIG);
        big[DPS_TOPIC_MAX] = 0;
        assert_int_equal(dps_request_topic_parse(big, &t2), 0);
        assert_string_equal(t2.rid, "1");
        dps_request_topic_done(&t2);
        assert_null(t2.rid);
}

static void test_response_topics(void **state) {
        static const struct {
                const char *topic;
                unsigned status;
                const char *rid;
                int retry_after;
        } v[] = {
                { "$dps/registrations/res/202/?$rid=R&retry-after=3", 202, "R", 3 },
                { "$dps/registrations/res/202/?$rid=1&retry-after=3", 202, "1", 3 },
                { "$dps/registrations/res/200/?$rid=1", 200, "1", -1 },
                { "$dps/registrations/res/401/?$rid=" UUID, 401, UUID, -1 },
                { "$dps/registrations/res/429/?retry-after=10&$rid=abc", 429, "abc", 10 },
                { "$dps/registrations/res/202/?$rid=R&Retry-After=5", 202, "R", 5 },
                { "$dps/registrations/res/202/?$rid=R&RETRY-AFTER=0", 202, "R", 0 },
                { "$dps/registrations/res/500/?$rid=R&foo=bar&retry-after=2147483647", 500, "R", 2147483647 },
                { "$dps/registrations/res/100/?$rid=R", 100, "R", -1 },
                { "$dps/registrations/res/599/?$rid=R", 599, "R", -1 },
        };

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                _cleanup_(dps_response_topic_done) DpsResponseTopic t = {};
                int r = dps_response_topic_parse(v[i].topic, &t);
                if (r != 0)
                        fail_msg("'%s': %d", v[i].topic, r);
                assert_int_equal(t.status, v[i].status);
                assert_string_equal(t.rid, v[i].rid);
                assert_int_equal(t.retry_after, v[i].retry_after);
        }
}

static void test_response_topics_bad(void **state) {
        static const char *const bad[] = {
                "",
                "$dps/registrations/res/",
                "$dps/registrations/res/202",
                "$dps/registrations/res/202/",
                "$dps/registrations/res/202/?",
                "$dps/registrations/res/202?$rid=1",
                "$dps/registrations/res/20/?$rid=1",
                "$dps/registrations/res/2020/?$rid=1",
                "$dps/registrations/res/099/?$rid=1",
                "$dps/registrations/res/600/?$rid=1",
                "$dps/registrations/res/+20/?$rid=1",
                "$dps/registrations/res/ 20/?$rid=1",
                "$dps/registrations/res/abc/?$rid=1",
                "$dps/registrations/RES/200/?$rid=1",
                "$dps/registrations/PUT/iotdps-register/?$rid=1",
                "$dps/registrations/res/200/?retry-after=3",
                "$dps/registrations/res/200/?$rid=",
                "$dps/registrations/res/200/?$rid=1&$rid=2",
                "$dps/registrations/res/200/?$rid=1&retry-after=3&Retry-After=4",
                "$dps/registrations/res/200/?$rid=1&retry-after=",
                "$dps/registrations/res/200/?$rid=1&retry-after=-1",
                "$dps/registrations/res/200/?$rid=1&retry-after=+1",
                "$dps/registrations/res/200/?$rid=1&retry-after=1.5",
                "$dps/registrations/res/200/?$rid=1&retry-after=2147483648",
                "$dps/registrations/res/200/?$rid=1&retry-after=99999999999",
                "$dps/registrations/res/200/?$rid=1&retry-after=Wed, 21 Oct 2015 07:28:00 GMT",
                "$dps/registrations/res/200/?$rid=1&",
                "$dps/registrations/res/200/?$rid=1&x",
                "$dps/registrations/res/200/?$rid=a b",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                DpsResponseTopic t = { .rid = (char *) 0x1, .retry_after = 77 };
                int r = dps_response_topic_parse(bad[i], &t);
                if (r != -EINVAL)
                        fail_msg("case %zu '%s': %d", i, bad[i], r);
                assert_ptr_equal(t.rid, (char *) 0x1);
                assert_int_equal(t.retry_after, 77);
        }

        char big[DPS_TOPIC_MAX + 2];
        int n = snprintf(big, sizeof(big), "$dps/registrations/res/200/?$rid=1&x=");
        memset(big + n, 'x', sizeof(big) - n - 1);
        big[sizeof(big) - 1] = 0;
        DpsResponseTopic t = {};
        assert_int_equal(dps_response_topic_parse(big, &t), -E2BIG);
}

static void test_format_round_trip(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;

        assert_int_equal(dps_response_topic_format(202, "R", 3, &a), 0);
        assert_string_equal(a, "$dps/registrations/res/202/?$rid=R&retry-after=3");
        assert_int_equal(dps_response_topic_format(200, UUID, -1, &b), 0);
        assert_string_equal(b, "$dps/registrations/res/200/?$rid=" UUID);
        assert_int_equal(dps_response_topic_format(429, "a%2Fb=c", 0, &c), 0);
        assert_string_equal(c, "$dps/registrations/res/429/?$rid=a%2Fb=c&retry-after=0");

        const char *all[] = { a, b, c };
        const int ra[] = { 3, -1, 0 };
        const unsigned st[] = { 202, 200, 429 };
        for (size_t i = 0; i < ELEMENTSOF(all); i++) {
                _cleanup_(dps_response_topic_done) DpsResponseTopic t = {};
                assert_int_equal(dps_response_topic_parse(all[i], &t), 0);
                assert_int_equal(t.status, st[i]);
                assert_int_equal(t.retry_after, ra[i]);
        }

        /* request topics: the rid of the request comes back byte for byte */
        assert_int_equal(dps_register_topic_format(UUID, &d), 0);
        assert_string_equal(d, "$dps/registrations/PUT/iotdps-register/?$rid=" UUID);
        _cleanup_(dps_request_topic_done) DpsRequestTopic rq = {};
        assert_int_equal(dps_request_topic_parse(d, &rq), 0);
        assert_int_equal(rq.type, DPS_REQUEST_REGISTER);
        assert_string_equal(rq.rid, UUID);

        assert_int_equal(dps_poll_topic_format("17", OP, &e), 0);
        assert_string_equal(e, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=17&operationId=" OP);
        _cleanup_(dps_request_topic_done) DpsRequestTopic rq2 = {};
        assert_int_equal(dps_request_topic_parse(e, &rq2), 0);
        assert_int_equal(rq2.type, DPS_REQUEST_OPERATION_STATUS);
        assert_string_equal(rq2.rid, "17");
        assert_string_equal(rq2.operation_id, OP);

        _cleanup_free_ char *f = NULL;
        _cleanup_(dps_request_topic_done) DpsRequestTopic rq3 = {};
        assert_int_equal(dps_poll_topic_format("1", "a:b&c", &f), 0);
        assert_string_equal(f, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=a%3Ab%26c");
        assert_int_equal(dps_request_topic_parse(f, &rq3), 0);
        assert_string_equal(rq3.operation_id, "a:b&c");

        char *x = (char *) 0x1;
        assert_int_equal(dps_response_topic_format(99, "1", -1, &x), -EINVAL);
        assert_int_equal(dps_response_topic_format(600, "1", -1, &x), -EINVAL);
        assert_int_equal(dps_response_topic_format(200, "", -1, &x), -EINVAL);
        assert_int_equal(dps_response_topic_format(200, "a&b", -1, &x), -EINVAL);
        assert_int_equal(dps_response_topic_format(200, "a#", -1, &x), -EINVAL);
        assert_int_equal(dps_response_topic_format(200, "a+", -1, &x), -EINVAL);
        assert_int_equal(dps_register_topic_format("a b", &x), -EINVAL);
        assert_int_equal(dps_poll_topic_format("1", "", &x), -EINVAL);
        assert_int_equal(dps_poll_topic_format("1", "a b", &x), -EINVAL);
        assert_ptr_equal(x, (char *) 0x1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_request_topics),  cmocka_unit_test(test_request_topics_bad),
                cmocka_unit_test(test_response_topics), cmocka_unit_test(test_response_topics_bad),
                cmocka_unit_test(test_format_round_trip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
