/* SPDX-License-Identifier: MIT */
/* The DPS REST codec (src/lib/dps-rest.c) and the REST layer of the HTTPS front
 * (src/dps/rest.c) on the core, without libmicrohttpd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dps/datafile.h"
#include "dps/rest.h"
#include "dps/service.h"
#include "edgeprov/dps-rest.h"
#include "edgeprov/dps.h"
#include "edgeprov/macro.h"
#include "edgeprov/sas.h"

#define SCOPE "0ne00000A0A"
#define K1 "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
#define K2 "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
#define K3 "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
#define NOW_SEC UINT64_C(1700000000)

static void test_path_parse(void **state) {
        DpsRestPath p = {};

        assert_int_equal(dps_rest_path_parse("/" SCOPE "/registrations/dev1/register", &p), 0);
        assert_int_equal(p.op, DPS_REST_REGISTER);
        assert_string_equal(p.id_scope, SCOPE);
        assert_string_equal(p.registration_id, "dev1");
        assert_null(p.operation_id);
        dps_rest_path_done(&p);

        assert_int_equal(dps_rest_path_parse("/" SCOPE "/registrations/dev%2D1/operations/4.ab%2Ecd", &p), 0);
        assert_int_equal(p.op, DPS_REST_OPERATION_STATUS);
        assert_string_equal(p.registration_id, "dev-1");
        assert_string_equal(p.operation_id, "4.ab.cd");
        dps_rest_path_done(&p);

        assert_int_equal(dps_rest_path_parse("/" SCOPE "/registrations/dev1", &p), 0);
        assert_int_equal(p.op, DPS_REST_DEVICE_STATUS);
        dps_rest_path_done(&p);

        static const char *const bad[] = {
                "", "/", "//", "/" SCOPE, "/" SCOPE "/registrations", "/" SCOPE "/registrations/",
                "/" SCOPE "/registrations//register", "/" SCOPE "/registrations/d/register/",
                "/" SCOPE "/registrations/d/register/x", "/" SCOPE "/registration/d/register",
                "/" SCOPE "/registrations/d/operations", "/" SCOPE "/registrations/d/operations/",
                "/" SCOPE "/registrations/d/operation/x", "/" SCOPE "/registrations/d/register?api-version=1",
                "/" SCOPE "/registrations/a%2Fb/register", "/" SCOPE "/registrations/a%00b/register",
                "/" SCOPE "/registrations/a%0ab/register", "/" SCOPE "/registrations/a%zz/register",
                "/" SCOPE "/registrations/a%2/register", SCOPE "/registrations/d/register",
                "/" SCOPE "/registrations/d/register#x",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                p = (DpsRestPath) {};
                if (dps_rest_path_parse(bad[i], &p) != -EINVAL)
                        fail_msg("accepted '%s'", bad[i]);
        }

        char long_path[DPS_REST_PATH_MAX + 64];
        memset(long_path, 'a', sizeof(long_path) - 1);
        long_path[0] = '/';
        long_path[sizeof(long_path) - 1] = 0;
        assert_int_equal(dps_rest_path_parse(long_path, &p), -E2BIG);
}

static void test_path_format(void **state) {
        _cleanup_free_ char *reg = NULL, *op = NULL, *st = NULL;
        DpsRestPath p = {};

        assert_int_equal(dps_rest_path_format(DPS_REST_REGISTER, SCOPE, "dev.1", NULL, "2021-06-01", &reg), 0);
        assert_string_equal(reg, "/" SCOPE "/registrations/dev.1/register?api-version=2021-06-01");
        assert_int_equal(dps_rest_path_format(DPS_REST_OPERATION_STATUS, SCOPE, "dev:1", "4.a/b", "2019-03-31", &op), 0);
        assert_string_equal(op, "/" SCOPE "/registrations/dev%3a1/operations/4.a%2fb?api-version=2019-03-31");
        assert_int_equal(dps_rest_path_format(DPS_REST_DEVICE_STATUS, SCOPE, "d", NULL, "v", &st), 0);
        assert_string_equal(st, "/" SCOPE "/registrations/d?api-version=v");
        assert_int_equal(dps_rest_path_format(DPS_REST_OPERATION_STATUS, SCOPE, "d", NULL, "v", &st), -EINVAL);
        assert_int_equal(dps_rest_path_format(DPS_REST_OPERATION_STATUS, SCOPE, "d", "", "v", &st), -EINVAL);

        /* round trip up to the query: the id with ':' survives */
        *strchr(op, '?') = 0;
        assert_int_equal(dps_rest_path_parse(op, &p), -EINVAL); /* a decoded '/' in the operation id */
        free(op);
        op = NULL;
        assert_int_equal(dps_rest_path_format(DPS_REST_OPERATION_STATUS, SCOPE, "dev:1", "4.ab", "v", &op), 0);
        *strchr(op, '?') = 0;
        assert_int_equal(dps_rest_path_parse(op, &p), 0);
        assert_string_equal(p.registration_id, "dev:1");
        assert_string_equal(p.operation_id, "4.ab");
        dps_rest_path_done(&p);
        assert_string_equal(dps_rest_op_method(DPS_REST_REGISTER), "PUT");
        assert_string_equal(dps_rest_op_method(DPS_REST_OPERATION_STATUS), "GET");
        assert_null(dps_rest_op_method(_DPS_REST_OP_MAX));
}

static void test_retry_after(void **state) {
        assert_int_equal(dps_http_retry_after_parse("3", 1), 3);
        assert_int_equal(dps_http_retry_after_parse(" 10 \t", 5), 10);
        assert_int_equal(dps_http_retry_after_parse("0", 1), 0);
        assert_int_equal(dps_http_retry_after_parse("999999999", 9), 86400);
        assert_int_equal(dps_http_retry_after_parse("", 0), -EINVAL);
        assert_int_equal(dps_http_retry_after_parse("  ", 2), -EINVAL);
        assert_int_equal(dps_http_retry_after_parse("-1", 2), -EINVAL);
        assert_int_equal(dps_http_retry_after_parse("1.5", 3), -EINVAL);
        assert_int_equal(dps_http_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", 29), -EINVAL);
        assert_int_equal(dps_http_retry_after_parse("1234567890123456789", 19), -EINVAL);
        assert_int_equal(dps_http_retry_after_parse("12", 1), 1); /* only len bytes are read */
}

static void test_header_parse(void **state) {
        const char *n, *v;
        size_t nl, vl;

        assert_int_equal(dps_http_header_parse("Retry-After:  3 \r\n", 18, &n, &nl, &v, &vl), 1);
        assert_true(dps_http_header_name_is(n, nl, "retry-after"));
        assert_int_equal(vl, 1);
        assert_int_equal(v[0], '3');
        assert_int_equal(dps_http_header_parse("X:\r\n", 4, &n, &nl, &v, &vl), 1);
        assert_int_equal(vl, 0);
        assert_int_equal(dps_http_header_parse("HTTP/1.1 202 Accepted\r\n", 23, &n, &nl, &v, &vl), 0);
        assert_int_equal(dps_http_header_parse("\r\n", 2, &n, &nl, &v, &vl), 0);
        assert_int_equal(dps_http_header_parse("no colon\r\n", 10, &n, &nl, &v, &vl), -EINVAL);
        assert_int_equal(dps_http_header_parse(": empty name\r\n", 14, &n, &nl, &v, &vl), -EINVAL);
        assert_int_equal(dps_http_header_parse("Bad Name: x\r\n", 13, &n, &nl, &v, &vl), -EINVAL);
        assert_int_equal(dps_http_header_parse("A: b\0c\r\n", 8, &n, &nl, &v, &vl), -EINVAL);
        assert_int_equal(dps_http_header_parse("A: b\rc\r\n", 8, &n, &nl, &v, &vl), -EINVAL);
        assert_false(dps_http_header_name_is("Retry", 5, "retry-after"));

        size_t big = DPS_HTTP_HEADER_LINE_MAX + 1;
        _cleanup_free_ char *line = malloc(big);
        assert_non_null(line);
        memset(line, 'a', big);
        line[1] = ':';
        assert_int_equal(dps_http_header_parse(line, big, &n, &nl, &v, &vl), -EINVAL);
}

/* ---- the REST layer on the core ---- */

static uint64_t fake_clock(void *userdata) {
        return NOW_SEC * UINT64_C(1000000);
}

static DpsService *service(void) {
        static const char json[] =
                "{\"idScope\":\"" SCOPE "\",\"linkedHubs\":[{\"name\":\"hub1.example.net\"}],"
                "\"individualEnrollments\":["
                " {\"registrationId\":\"gw1\",\"deviceId\":\"gw1-device\",\"attestation\":"
                "  {\"type\":\"symmetricKey\",\"symmetricKey\":{\"primaryKey\":\"" K1 "\",\"secondaryKey\":\"" K2 "\"}}}]}";
        _cleanup_free_ char *msg = NULL;
        DpsService *s = NULL;
        DpsData *d = NULL;

        assert_int_equal(dps_service_new(&s), 0);
        if (dps_data_parse(json, strlen(json), &d, &msg) < 0)
                fail_msg("data: %s", msg);
        dps_service_set_data(s, d);
        dps_service_set_clock(s, fake_clock, NULL);
        return s;
}

static char *token(const char *key, const char *regid, uint64_t expiry) {
        _cleanup_free_ char *resource = NULL;
        char *t = NULL;
        assert_true(asprintf(&resource, SCOPE "/registrations/%s", regid) > 0);
        assert_int_equal(sas_token_build_b64(key, resource, expiry, "registration", &t), 0);
        return t;
}

static unsigned call(DpsRest *rest, const char *method, const char *path, const char *auth, const char *body,
                     DpsRestReply *ret) {
        static int conn;
        DpsRestRequest rq = {
                .conn = &conn,
                .method = method,
                .path = path,
                .api_version = "2021-06-01",
                .authorization = auth,
                .content_type = "application/json; charset=utf-8",
                .body = body,
                .body_len = body ? strlen(body) : 0,
        };
        dps_rest_reply_done(ret);
        assert_int_equal(dps_rest_handle(rest, &rq, ret), 0);
        assert_non_null(ret->body);
        return ret->status;
}

static void test_rest_flow(void **state) {
        DpsService *s = service();
        DpsRest *rest = NULL;
        DpsRestReply r = { .retry_after = -1 };
        _cleanup_free_ char *tok = token(K1, "gw1", NOW_SEC + 600), *bad = token(K3, "gw1", NOW_SEC + 600);
        _cleanup_free_ char *old = token(K1, "gw1", NOW_SEC - 1), *poll = NULL;
        _cleanup_(dps_response_done) DpsResponse resp = {};

        assert_int_equal(dps_rest_new(s, &rest), 0);

        /* status lookup before the first registration */
        assert_int_equal(call(rest, "POST", "/" SCOPE "/registrations/gw1", tok, "{\"registrationId\":\"gw1\"}", &r), 404);
        assert_int_equal(r.error_code, DPS_ERROR_NOT_REGISTERED);

        assert_int_equal(call(rest, "PUT", "/" SCOPE "/registrations/gw1/register", tok, "{\"registrationId\":\"gw1\"}", &r), 202);
        assert_int_equal(r.retry_after, DPS_RETRY_AFTER_DEFAULT);
        assert_int_equal(dps_response_parse(r.body, r.body_len, &resp), 0);
        assert_non_null(resp.operation_id);
        assert_non_null(r.location);
        assert_non_null(strstr(r.location, "/" SCOPE "/registrations/gw1/operations/"));
        assert_non_null(strstr(r.location, "?api-version=2021-06-01"));
        assert_true(asprintf(&poll, "/" SCOPE "/registrations/gw1/operations/%s", resp.operation_id) > 0);

        assert_int_equal(call(rest, "GET", poll, tok, NULL, &r), 200);
        assert_non_null(strstr(r.body, "\"assigned\""));
        assert_non_null(strstr(r.body, "gw1-device"));
        assert_int_equal(r.error_code, 0);
        assert_int_equal(dps_service_n_clients(s), 0); /* every request disconnects */

        /* errors */
        assert_int_equal(call(rest, "GET", poll, NULL, NULL, &r), 401);
        assert_int_equal(r.error_code, DPS_ERROR_UNAUTHORIZED);
        assert_int_equal(call(rest, "GET", poll, bad, NULL, &r), 401);
        assert_int_equal(call(rest, "PUT", "/" SCOPE "/registrations/gw1/register", old, "{}", &r), 401);
        assert_int_equal(call(rest, "PUT", "/" SCOPE "/registrations/gw1/register", bad, "{}", &r), 401);
        assert_int_equal(call(rest, "GET", "/" SCOPE "/registrations/gw1/operations/nope", tok, NULL, &r), 404);
        assert_int_equal(r.error_code, DPS_ERROR_NO_OPERATION);
        assert_int_equal(call(rest, "GET", "/nope", tok, NULL, &r), 404);
        assert_int_equal(r.error_code, DPS_ERROR_REST_NOT_FOUND);
        assert_int_equal(call(rest, "GET", "/" SCOPE "/registrations/gw1/register", tok, NULL, &r), 405);
        assert_string_equal(r.allow, "PUT");
        /* status lookup: the DeviceRegistrationResult; the same authentication as a register */
        assert_int_equal(call(rest, "POST", "/" SCOPE "/registrations/gw1", tok, "{}", &r), 200);
        assert_non_null(strstr(r.body, "\"registrationId\":\"gw1\""));
        assert_non_null(strstr(r.body, "\"deviceId\":\"gw1-device\""));
        assert_non_null(strstr(r.body, "\"assignedHub\":\"hub1.example.net\""));
        assert_non_null(strstr(r.body, "\"status\":\"assigned\""));
        assert_non_null(strstr(r.body, "\"etag\""));
        assert_null(strstr(r.body, "operationId"));
        assert_int_equal(call(rest, "POST", "/" SCOPE "/registrations/gw1", bad, "{}", &r), 401);
        assert_int_equal(call(rest, "POST", "/" SCOPE "/registrations/gw1", old, "{}", &r), 401);
        assert_int_equal(call(rest, "POST", "/" SCOPE "/registrations/gw1", NULL, "{}", &r), 401);
        assert_int_equal(call(rest, "POST", "/" SCOPE "/registrations/gw1", tok, "[", &r), 400);
        assert_int_equal(call(rest, "PUT", "/0ne00000FFF/registrations/gw1/register", tok, "{}", &r), 401);
        assert_int_equal(call(rest, "PUT", "/" SCOPE "/registrations/-x-/register", tok, "{}", &r), 400);
        assert_int_equal(call(rest, "PUT", "/" SCOPE "/registrations/gw1/register", tok, "{\"registrationId\":\"gw2\"}", &r), 400);
        assert_int_equal(r.error_code, DPS_ERROR_REGISTRATION_ID_MISMATCH);
        assert_int_equal(call(rest, "PUT", "/" SCOPE "/registrations/gw1/register", tok, "[", &r), 400);
        assert_int_equal(r.error_code, DPS_ERROR_BAD_BODY);

        /* no api-version, wrong media type, oversize */
        static int conn2;
        DpsRestRequest rq = { .conn = &conn2, .method = "PUT", .path = "/" SCOPE "/registrations/gw1/register",
                              .authorization = tok, .body = "{}", .body_len = 2 };
        dps_rest_reply_done(&r);
        assert_int_equal(dps_rest_handle(rest, &rq, &r), 0);
        assert_int_equal(r.status, 400);
        assert_int_equal(r.error_code, DPS_ERROR_REST_BAD_REQUEST);
        rq.api_version = "2019-03-31";
        rq.content_type = "text/plain";
        dps_rest_reply_done(&r);
        assert_int_equal(dps_rest_handle(rest, &rq, &r), 0);
        assert_int_equal(r.status, 415);
        rq.content_type = "application/jsonx";
        dps_rest_reply_done(&r);
        assert_int_equal(dps_rest_handle(rest, &rq, &r), 0);
        assert_int_equal(r.status, 415);
        rq.content_type = NULL;
        rq.body_len = DPS_BODY_MAX + 1;
        dps_rest_reply_done(&r);
        assert_int_equal(dps_rest_handle(rest, &rq, &r), 0);
        assert_int_equal(r.status, 413);

        dps_rest_reply_done(&r);
        dps_rest_free(rest);
        dps_service_free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_path_parse),
                cmocka_unit_test(test_path_format),
                cmocka_unit_test(test_retry_after),
                cmocka_unit_test(test_header_parse),
                cmocka_unit_test(test_rest_flow),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
