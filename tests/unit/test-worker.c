/* SPDX-License-Identifier: MIT */
/* The daemon ↔ edgeprov-worker socket (src/agent/worker.h): datagram limits, malformed input,
 * EOF, secrets wiped after sending, and the checks on a "result" event. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/dps-client.h"
#include "agent/worker.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"

static void pair(int sv[2]) {
        int big = WORKER_MSG_MAX * 4;
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        (void) setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
}

static void send_raw(int fd, const void *p, size_t n) {
        assert_int_equal(send(fd, p, n, 0), (ssize_t) n);
}

static void test_recv_limits(void **state) {
        struct json_object *m = NULL;
        int sv[2];

        pair(sv);
        assert_int_equal(worker_recv(sv[0], MSG_DONTWAIT, &m), -EAGAIN);

        /* an object arrives whole */
        send_raw(sv[1], "{\"ev\":\"result\",\"x\":7}", 21);
        assert_int_equal(worker_recv(sv[0], MSG_DONTWAIT, &m), 1);
        assert_string_equal(json_get_string(m, "ev"), "result");
        json_object_put(m);

        /* one byte over the limit: refused and dropped, the next one still reads */
        size_t n = WORKER_MSG_MAX + 1;
        char *big = malloc(n);
        assert_non_null(big);
        memset(big, ' ', n);
        big[0] = '{';
        big[n - 1] = '}';
        send_raw(sv[1], big, n);
        free(big);
        send_raw(sv[1], "{\"a\":1}", 7);
        m = NULL;
        assert_int_equal(worker_recv(sv[0], MSG_DONTWAIT, &m), -EBADMSG);
        assert_null(m);
        assert_int_equal(worker_recv(sv[0], MSG_DONTWAIT, &m), 1);
        json_object_put(m);

        /* not JSON, not an object, trailing garbage */
        send_raw(sv[1], "{\"a\":", 5);
        send_raw(sv[1], "[1,2]", 5);
        send_raw(sv[1], "{} x", 4);
        for (int i = 0; i < 3; i++) {
                m = NULL;
                assert_int_equal(worker_recv(sv[0], MSG_DONTWAIT, &m), -EBADMSG);
                assert_null(m);
        }

        /* the peer closes: EOF */
        close(sv[1]);
        m = (struct json_object *) 1;
        assert_int_equal(worker_recv(sv[0], MSG_DONTWAIT, &m), 0);
        assert_null(m);
        close(sv[0]);
}

static void test_send_wipes_secrets(void **state) {
        struct json_object *o = json_object_new_object(), *v, *m = NULL;
        int sv[2];

        pair(sv);
        assert_int_equal(json_add_string(o, "m", "exchange"), 0);
        assert_int_equal(json_add_string(o, "password", "SharedAccessSignature sig=secret"), 0);
        assert_int_equal(worker_send_fd(sv[0], o), 0);
        /* the receiver has it ... */
        assert_int_equal(worker_recv(sv[1], MSG_DONTWAIT, &m), 1);
        assert_string_equal(json_get_string(m, "password"), "SharedAccessSignature sig=secret");
        json_object_put(m);
        /* ... the sender's copy is gone */
        assert_true(json_object_object_get_ex(o, "password", &v));
        const char *p = json_object_get_string(v);
        for (int i = 0; i < json_object_get_string_len(v); i++)
                assert_int_equal(p[i], 0);
        assert_string_equal(json_get_string(o, "m"), "exchange");
        json_object_put(o);

        /* larger than a datagram may be: refused before sending */
        o = json_object_new_object();
        char *big = malloc(WORKER_MSG_MAX + 1);
        assert_non_null(big);
        memset(big, 'a', WORKER_MSG_MAX);
        big[WORKER_MSG_MAX] = 0;
        assert_int_equal(json_add_string(o, "payload_json", big), 0);
        free(big);
        assert_int_equal(worker_send_fd(sv[0], o), -E2BIG);
        json_object_put(o);
        assert_int_equal(worker_recv(sv[1], MSG_DONTWAIT, &m), -EAGAIN);
        close(sv[0]);
        close(sv[1]);
}

static void test_b64_and_wipe(void **state) {
        _cleanup_free_ uint8_t *out = NULL;
        struct json_object *o = json_object_new_object(), *macs = json_object_new_array();
        const uint8_t data[5] = { 1, 2, 3, 4, 5 };
        size_t len = 0;

        assert_int_equal(worker_json_add_b64(o, "blob", data, sizeof(data)), 0);
        assert_int_equal(worker_json_get_b64(o, "blob", sizeof(data), &out, &len), 0);
        assert_int_equal(len, sizeof(data));
        assert_memory_equal(out, data, sizeof(data));
        /* one byte less allowed: refused before decoding; absent: EBADMSG */
        assert_int_equal(worker_json_get_b64(o, "blob", 3, &out, &len), -E2BIG);
        assert_int_equal(worker_json_get_b64(o, "nothing", 64, &out, &len), -EBADMSG);

        /* secrets, also inside arrays, are zeroed; other members are not */
        assert_int_equal(json_object_array_add(macs, json_object_new_string("bWFjLTE=")), 0);
        assert_int_equal(json_add(o, "macs", macs), 0);
        assert_int_equal(json_add_string(o, "eauth", "owner-secret"), 0);
        worker_wipe_secrets(o);
        const char *m = json_object_get_string(json_object_array_get_idx(macs, 0));
        const char *e = json_get_string(o, "eauth");
        for (int i = 0; i < 8; i++)
                assert_int_equal(m[i], 0);
        for (int i = 0; i < 12; i++)
                assert_int_equal(e[i], 0);
        assert_non_null(json_get_string(o, "blob"));
        assert_int_not_equal(json_get_string(o, "blob")[0], 0);
        json_object_put(o);
}

static int parse(const char *text, DpsResult *res, struct json_object **keep) {
        assert_int_equal(json_parse_limited(text, strlen(text), 4096, 8, keep), 0);
        return dps_result_from_event(*keep, res);
}

static void test_result_event(void **state) {
        struct json_object *o = NULL;
        DpsResult r;

        assert_int_equal(parse("{\"outcome\":\"assigned\",\"status\":200,\"assigned_hub\":\"h\",\"device_id\":\"d\","
                               "\"operation_id\":\"op\",\"retry_after\":-1}", &r, &o), 0);
        assert_int_equal(r.outcome, DPS_OUTCOME_ASSIGNED);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.assigned_hub, "h");
        assert_string_equal(r.operation_id, "op");
        json_object_put(o);

        /* a transient one without a message gets one; retry-after kept */
        assert_int_equal(parse("{\"outcome\":\"transient\",\"status\":429,\"retry_after\":5}", &r, &o), 0);
        assert_int_equal(r.retry_after, 5);
        assert_non_null(r.error_message);
        json_object_put(o);

        /* refused: unknown outcome, assignment without hub or device, numbers out of range */
        static const char *const bad[] = {
                "{}",
                "{\"outcome\":\"maybe\"}",
                "{\"outcome\":\"assigned\",\"device_id\":\"d\"}",
                "{\"outcome\":\"assigned\",\"assigned_hub\":\"\",\"device_id\":\"d\"}",
                "{\"outcome\":\"rejected\",\"status\":1000}",
                "{\"outcome\":\"rejected\",\"status\":-1}",
                "{\"outcome\":\"transient\",\"retry_after\":-2}",
                "{\"outcome\":\"transient\",\"retry_after\":4294967296}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_int_equal(parse(bad[i], &r, &o), -EBADMSG);
                json_object_put(o);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_recv_limits),
                cmocka_unit_test(test_send_wipes_secrets),
                cmocka_unit_test(test_b64_and_wipe),
                cmocka_unit_test(test_result_event),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
