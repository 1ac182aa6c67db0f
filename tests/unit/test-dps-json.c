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
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"

#define PARSE_RESPONSE(s, r) dps_response_parse((s), strlen(s), (r))
#define PARSE_REGISTER(s, r) dps_register_request_parse((s), strlen(s), (r))

static void test_status_strings(void **state) {
        for (DpsStatus s = 0; s < _DPS_STATUS_MAX; s++)
                assert_int_equal(dps_status_from_string(dps_status_to_string(s)), s);
        assert_string_equal(dps_status_to_string(DPS_STATUS_ASSIGNED), "assigned");
        assert_int_equal(dps_status_from_string("Assigned"), _DPS_STATUS_INVALID);
        assert_int_equal(dps_status_from_string("blacklisted"), _DPS_STATUS_INVALID);
        assert_int_equal(dps_status_from_string(NULL), _DPS_STATUS_INVALID);
        assert_null(dps_status_to_string(_DPS_STATUS_MAX));
        assert_null(dps_status_to_string(_DPS_STATUS_INVALID));
}

/* dps-protocol.md §2.7, canonical message sequence */
static void test_sequence(void **state) {
        _cleanup_(dps_response_done) DpsResponse r1 = {}, r2 = {}, r3 = {}, r4 = {};

        assert_int_equal(PARSE_RESPONSE("{\"operationId\":\"OP\",\"status\":\"assigning\"}", &r1), 0);
        assert_string_equal(r1.operation_id, "OP");
        assert_int_equal(r1.status, DPS_STATUS_ASSIGNING);
        assert_false(r1.has_registration_state);
        assert_int_equal(r1.state.status, _DPS_STATUS_INVALID);
        assert_int_equal(r1.error_code, 0);

        assert_int_equal(PARSE_RESPONSE("{\"operationId\":\"OP\",\"status\":\"assigning\",\n"
                                        "  \"registrationState\":{\"registrationId\":\"dev1\",\"status\":\"assigning\"}}",
                                        &r2),
                         0);
        assert_string_equal(r2.operation_id, "OP");
        assert_int_equal(r2.status, DPS_STATUS_ASSIGNING);
        assert_true(r2.has_registration_state);
        assert_string_equal(r2.state.registration_id, "dev1");
        assert_int_equal(r2.state.status, DPS_STATUS_ASSIGNING);
        assert_null(r2.state.assigned_hub);

        assert_int_equal(PARSE_RESPONSE("{\"operationId\":\"OP\",\"status\":\"assigned\",\"registrationState\":{"
                                        "\"x509\":{},\"registrationId\":\"dev1\","
                                        "\"createdDateTimeUtc\":\"2020-04-10T03:11:13.0276997Z\","
                                        "\"assignedHub\":\"contoso.azure-devices.net\",\"deviceId\":\"dev1\","
                                        "\"status\":\"assigned\",\"substatus\":\"initialAssignment\","
                                        "\"lastUpdatedDateTimeUtc\":\"2020-04-10T03:11:13.2096201Z\","
                                        "\"etag\":\"IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI=\"}}",
                                        &r3),
                         0);
        assert_int_equal(r3.status, DPS_STATUS_ASSIGNED);
        assert_true(r3.has_registration_state);
        assert_string_equal(r3.state.registration_id, "dev1");
        assert_string_equal(r3.state.assigned_hub, "contoso.azure-devices.net");
        assert_string_equal(r3.state.device_id, "dev1");
        assert_int_equal(r3.state.status, DPS_STATUS_ASSIGNED);
        assert_string_equal(r3.state.substatus, "initialAssignment");
        assert_string_equal(r3.state.created, "2020-04-10T03:11:13.0276997Z");
        assert_string_equal(r3.state.last_updated, "2020-04-10T03:11:13.2096201Z");
        assert_string_equal(r3.state.etag, "IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI=");
        assert_null(r3.state.payload_json);
        assert_null(r3.state.tpm_authentication_key);
        assert_null(r3.state.enrollment_group_id);
        assert_int_equal(r3.state.error_code, 0);

        assert_int_equal(PARSE_RESPONSE("{\"errorCode\":401002,\"trackingId\":\"8ad0463c-6427-4479-9dfa-3e8bb7003e9b\","
                                        "\"message\":\"Invalid certificate.\",\"timestampUtc\":\"2020-04-10T05:24:22.4718526Z\"}",
                                        &r4),
                         0);
        assert_int_equal(r4.error_code, 401002);
        assert_string_equal(r4.tracking_id, "8ad0463c-6427-4479-9dfa-3e8bb7003e9b");
        assert_string_equal(r4.message, "Invalid certificate.");
        assert_null(r4.operation_id);
        assert_int_equal(r4.status, _DPS_STATUS_INVALID);
        assert_false(r4.has_registration_state);
}

static void test_assigned_full(void **state) {
        _cleanup_(dps_response_done) DpsResponse r = {};

        /* custom allocation: payload returned; symmetric-key group; an "info" map and extra fields ignored */
        assert_int_equal(PARSE_RESPONSE("{\"operationId\":\"4.abc.def\",\"status\":\"assigned\",\"registrationState\":{"
                                        "\"registrationId\":\"gw1\",\"assignedHub\":\"hub.local\",\"deviceId\":\"gw1\","
                                        "\"status\":\"assigned\",\"substatus\":\"reprovisionedToInitialAssignment\","
                                        "\"symmetricKey\":{\"enrollmentGroupId\":\"edge-gateways\"},"
                                        "\"generationId\":\"x\","
                                        "\"payload\":{ \"hubs\" : [ 1, 2.5, \"a/b\" ], \"n\": null , \"t\":true }}}",
                                        &r),
                         0);
        assert_string_equal(r.state.enrollment_group_id, "edge-gateways");
        assert_string_equal(r.state.substatus, "reprovisionedToInitialAssignment");
        assert_string_equal(r.state.payload_json, "{\"hubs\":[1,2.5,\"a\\/b\"],\"n\":null,\"t\":true}");

        /* the re-serialized payload is valid JSON */
        _cleanup_json_ struct json_object *o = NULL;
        assert_int_equal(json_parse_limited(r.state.payload_json, strlen(r.state.payload_json), DPS_BODY_MAX, 4, &o), 0);
        assert_true(json_object_is_type(o, json_type_object));
        struct json_object *hubs = json_object_object_get(o, "hubs");
        assert_true(json_object_is_type(hubs, json_type_array));
        assert_string_equal(json_object_get_string(json_object_array_get_idx(hubs, 2)), "a/b");

        _cleanup_(dps_response_done) DpsResponse x = {};
        assert_int_equal(PARSE_RESPONSE("{\"status\":\"assigned\",\"registrationState\":{"
                                        "\"x509\":{\"enrollmentGroupId\":\"grp\",\"certificateInfo\":{\"subjectName\":\"CN=gw\"}},"
                                        "\"payload\":\"just a string\"}}",
                                        &x),
                         0);
        assert_string_equal(x.state.enrollment_group_id, "grp");
        assert_string_equal(x.state.payload_json, "\"just a string\"");
}

static void test_failed(void **state) {
        _cleanup_(dps_response_done) DpsResponse r = {};

        assert_int_equal(PARSE_RESPONSE("{\"operationId\":\"OP\",\"status\":\"failed\",\"registrationState\":{"
                                        "\"registrationId\":\"dev1\",\"status\":\"failed\",\"errorCode\":400209,"
                                        "\"errorMessage\":\"Hub unauthorized\","
                                        "\"lastUpdatedDateTimeUtc\":\"2024-01-01T00:00:00Z\"}}",
                                        &r),
                         0);
        assert_int_equal(r.status, DPS_STATUS_FAILED);
        assert_int_equal(r.state.status, DPS_STATUS_FAILED);
        assert_int_equal(r.state.error_code, 400209);
        assert_string_equal(r.state.error_message, "Hub unauthorized");

        /* unknown status strings are not an error, but not a status either */
        _cleanup_(dps_response_done) DpsResponse b = {};
        assert_int_equal(PARSE_RESPONSE("{\"operationId\":\"OP\",\"status\":\"blacklisted\"}", &b), 0);
        assert_int_equal(b.status, _DPS_STATUS_INVALID);
        assert_string_equal(b.operation_id, "OP");
}

static void test_tpm_challenge(void **state) {
        _cleanup_(dps_response_done) DpsResponse r = {}, a = {};

        assert_int_equal(PARSE_RESPONSE("{\"authenticationKey\":\"ADQAIIRhQ1Y2ZGNmNjM=\",\"keyName\":\"registration\","
                                        "\"message\":\"Activation required\"}",
                                        &r),
                         0);
        assert_string_equal(r.authentication_key, "ADQAIIRhQ1Y2ZGNmNjM=");
        assert_string_equal(r.key_name, "registration");
        assert_string_equal(r.message, "Activation required");
        assert_int_equal(r.status, _DPS_STATUS_INVALID);

        /* TPM assigned: registrationState.tpm.authenticationKey */
        assert_int_equal(PARSE_RESPONSE("{\"operationId\":\"OP\",\"status\":\"assigned\",\"registrationState\":{"
                                        "\"assignedHub\":\"h\",\"deviceId\":\"d\",\"tpm\":{\"authenticationKey\":\"AAAA\"}}}",
                                        &a),
                         0);
        assert_string_equal(a.state.tpm_authentication_key, "AAAA");
}

static void test_response_empty_and_null(void **state) {
        _cleanup_(dps_response_done) DpsResponse e = {}, w = {}, n = {};

        assert_int_equal(dps_response_parse("", 0, &e), 0);
        assert_null(e.operation_id);
        assert_int_equal(e.status, _DPS_STATUS_INVALID);
        assert_false(e.has_registration_state);
        assert_int_equal(dps_response_parse(NULL, 0, &e), 0);
        assert_int_equal(dps_response_parse(" \r\n", 3, &w), 0);
        assert_null(w.operation_id);

        /* JSON nulls are treated as absent */
        assert_int_equal(PARSE_RESPONSE("{\"operationId\":null,\"status\":null,\"registrationState\":null,"
                                        "\"errorCode\":null}",
                                        &n),
                         0);
        assert_null(n.operation_id);
        assert_false(n.has_registration_state);
}

static void test_response_bad(void **state) {
        static const char *const bad[] = {
                "garbage",
                "{",
                "{\"operationId\":\"OP\"",
                "{\"operationId\":\"OP\"} x",
                "{\"operationId\":\"OP\"}{}",
                "{\"operationId\":\"OP\",}",
                "{'operationId':'OP'}",
                "[]",
                "\"assigned\"",
                "42",
                "null",
                "{\"operationId\":42}",
                "{\"operationId\":\"a\\u0000b\"}",
                "{\"status\":1}",
                "{\"status\":{}}",
                "{\"errorCode\":\"401002\"}",
                "{\"errorCode\":401.5}",
                "{\"trackingId\":[]}",
                "{\"message\":true}",
                "{\"authenticationKey\":1}",
                "{\"keyName\":{}}",
                "{\"registrationState\":\"x\"}",
                "{\"registrationState\":[]}",
                "{\"registrationState\":{\"assignedHub\":1}}",
                "{\"registrationState\":{\"deviceId\":[]}}",
                "{\"registrationState\":{\"status\":true}}",
                "{\"registrationState\":{\"errorCode\":\"x\"}}",
                "{\"registrationState\":{\"errorMessage\":1}}",
                "{\"registrationState\":{\"tpm\":\"x\"}}",
                "{\"registrationState\":{\"tpm\":{\"authenticationKey\":1}}}",
                "{\"registrationState\":{\"x509\":1}}",
                "{\"registrationState\":{\"symmetricKey\":{\"enrollmentGroupId\":2}}}",
                "{\"operationId\":\"\xff\"}", /* not UTF-8 */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                DpsResponse r = { .operation_id = (char *) 0x1 };
                int k = PARSE_RESPONSE(bad[i], &r);
                if (k != -EINVAL)
                        fail_msg("case %zu '%s': %d", i, bad[i], k);
                assert_ptr_equal(r.operation_id, (char *) 0x1);
        }

        DpsResponse r = {};
        assert_int_equal(dps_response_parse("{\"a\":\0}", 7, &r), -EINVAL);
}

static char *nested(size_t depth) {
        char *s = malloc(depth * 2 + 64);
        assert_non_null(s);
        char *p = stpcpy(s, "{\"operationId\":\"OP\",\"x\":");
        for (size_t i = 0; i < depth; i++)
                *p++ = '[';
        for (size_t i = 0; i < depth; i++)
                *p++ = ']';
        strcpy(p, "}");
        return s;
}

static void test_depth_and_size(void **state) {
        /* json-c counts every nested value: the object plus DPS_JSON_MAX_DEPTH - 1 (empty) arrays is the limit */
        _cleanup_free_ char *ok = nested(DPS_JSON_MAX_DEPTH - 1), *deep = nested(DPS_JSON_MAX_DEPTH),
                            *deeper = nested(10000), *very = nested(100000);
        _cleanup_(dps_response_done) DpsResponse r = {};
        assert_int_equal(PARSE_RESPONSE(ok, &r), 0);
        assert_string_equal(r.operation_id, "OP");

        DpsResponse x = {};
        assert_int_equal(PARSE_RESPONSE(deep, &x), -EINVAL);
        assert_int_equal(PARSE_RESPONSE(deeper, &x), -EINVAL);
        assert_int_equal(PARSE_RESPONSE(very, &x), -E2BIG);

        /* deep payload in a register request */
        _cleanup_free_ char *reg = NULL;
        _cleanup_free_ char *arr = nested(DPS_JSON_MAX_DEPTH);
        assert_true(asprintf(&reg, "{\"registrationId\":\"d\",\"payload\":%s}", arr) > 0);
        DpsRegisterRequest q = {};
        assert_int_equal(PARSE_REGISTER(reg, &q), -EINVAL);

        /* size limit, exactly at and above DPS_BODY_MAX */
        _cleanup_free_ char *big = malloc(DPS_BODY_MAX + 2);
        assert_non_null(big);
        memset(big, ' ', DPS_BODY_MAX + 1);
        memcpy(big, "{\"operationId\":\"OP\"}", 20);
        big[DPS_BODY_MAX + 1] = 0;
        assert_int_equal(dps_response_parse(big, DPS_BODY_MAX + 1, &x), -E2BIG);
        assert_int_equal(dps_register_request_parse(big, DPS_BODY_MAX + 1, &q), -E2BIG);
        _cleanup_(dps_response_done) DpsResponse y = {};
        assert_int_equal(dps_response_parse(big, DPS_BODY_MAX, &y), 0);
        assert_string_equal(y.operation_id, "OP");
}

static void test_register_bodies(void **state) {
        static const struct {
                const char *name, *body;
                const char *id, *payload;
        } v[] = {
                { "C SDK", "{\"registrationId\":\"dev1\"}", "dev1", NULL },
                { "C SDK with payload", "{\"registrationId\":\"dev1\",\"payload\":{\"modelId\":\"dtmi:x;1\"}}", "dev1",
                  "{\"modelId\":\"dtmi:x;1\"}" },
                { "embedded C", "{\"registrationId\":\"dev1\",\"payload\":{\"a\":1}}", "dev1", "{\"a\":1}" },
                { "Node", "{\"registrationId\":\"dev1\"}", "dev1", NULL },
                { "Python", "{\"payload\": null, \"registrationId\": \"dev1\"}", "dev1", NULL },
                { "Python with payload", "{\"payload\": {\"gatewayId\": \"gw\", \"n\": [1, 2]}, \"registrationId\": \"dev1\"}",
                  "dev1", "{\"gatewayId\":\"gw\",\"n\":[1,2]}" },
                { ".NET empty", "", NULL, NULL },
                { ".NET payload only", "{\"payload\":{\"x\":true}}", NULL, "{\"x\":true}" },
                { "Node/Python poll body", " ", NULL, NULL },
                { "whitespace", " \t\r\n ", NULL, NULL },
                { "null body", "null", NULL, NULL },
                { "empty object", "{}", NULL, NULL },
                { "scalar payload", "{\"payload\":42}", NULL, "42" },
                { "registrationId null", "{\"registrationId\":null}", NULL, NULL },
                { "unknown members", "{\"registrationId\":\"dev1\",\"foo\":[1,{}]}", "dev1", NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                _cleanup_(dps_register_request_done) DpsRegisterRequest r = {};
                int k = PARSE_REGISTER(v[i].body, &r);
                if (k != 0)
                        fail_msg("%s: %d", v[i].name, k);
                if (v[i].id)
                        assert_string_equal(r.registration_id, v[i].id);
                else
                        assert_null(r.registration_id);
                if (v[i].payload)
                        assert_string_equal(r.payload_json, v[i].payload);
                else
                        assert_null(r.payload_json);
                assert_null(r.tpm_endorsement_key);
                assert_null(r.tpm_storage_root_key);
        }

        /* TPM (HTTPS) body */
        _cleanup_(dps_register_request_done) DpsRegisterRequest t = {};
        assert_int_equal(PARSE_REGISTER("{\"registrationId\":\"wlp3jztxbptdrg7dvrjxdlci4rdxzblup5tdzw5blvcyrvqcxcta\","
                                        "\"tpm\":{\"endorsementKey\":\"AToAAQAL\",\"storageRootKey\":\"ARgAAQAL\"}}",
                                        &t),
                         0);
        assert_string_equal(t.registration_id, "wlp3jztxbptdrg7dvrjxdlci4rdxzblup5tdzw5blvcyrvqcxcta");
        assert_string_equal(t.tpm_endorsement_key, "AToAAQAL");
        assert_string_equal(t.tpm_storage_root_key, "ARgAAQAL");

        DpsRegisterRequest e = { .registration_id = (char *) 0x1 };
        assert_int_equal(dps_register_request_parse(NULL, 0, &e), 0);
        assert_null(e.registration_id);
}

static void test_register_bad(void **state) {
        static const char *const bad[] = {
                "x",        "{",        "{\"registrationId\":\"dev1\"",   "{\"registrationId\":\"dev1\"} {}",
                "[]",       "\"dev1\"", "{\"registrationId\":1}",         "{\"registrationId\":[\"dev1\"]}",
                "{\"tpm\":1}", "{\"tpm\":{\"endorsementKey\":1}}", "{\"tpm\":{\"storageRootKey\":{}}}",
                "{\"registrationId\":\"a\\u0000b\"}", "{\"payload\":}",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                DpsRegisterRequest r = { .registration_id = (char *) 0x1 };
                int k = PARSE_REGISTER(bad[i], &r);
                if (k != -EINVAL)
                        fail_msg("case %zu '%s': %d", i, bad[i], k);
                assert_ptr_equal(r.registration_id, (char *) 0x1);
        }

        DpsRegisterRequest r = {};
        assert_int_equal(dps_register_request_parse(" \0 ", 3, &r), -EINVAL);
}

static void test_register_format(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL;

        assert_int_equal(dps_register_request_format("dev1", NULL, NULL, NULL, &a), 0);
        assert_string_equal(a, "{\"registrationId\":\"dev1\"}");

        assert_int_equal(dps_register_request_format("dev1", " { \"gatewayId\" : \"gw\", \"p\": [1] } ", NULL, NULL, &b), 0);
        assert_string_equal(b, "{\"registrationId\":\"dev1\",\"payload\":{\"gatewayId\":\"gw\",\"p\":[1]}}");

        assert_int_equal(dps_register_request_format("dev1", NULL, "EK", "SRK", &c), 0);
        assert_string_equal(c, "{\"registrationId\":\"dev1\",\"tpm\":{\"endorsementKey\":\"EK\",\"storageRootKey\":\"SRK\"}}");

        assert_int_equal(dps_register_request_format(NULL, "null", NULL, NULL, &d), 0);
        assert_string_equal(d, "{\"payload\":null}");

        /* round trip */
        _cleanup_(dps_register_request_done) DpsRegisterRequest r = {};
        assert_int_equal(PARSE_REGISTER(b, &r), 0);
        assert_string_equal(r.registration_id, "dev1");
        assert_string_equal(r.payload_json, "{\"gatewayId\":\"gw\",\"p\":[1]}");

        char *x = (char *) 0x1;
        assert_int_equal(dps_register_request_format("dev1", "{not json", NULL, NULL, &x), -EINVAL);
        assert_int_equal(dps_register_request_format("dev1", "{} {}", NULL, NULL, &x), -EINVAL);
        assert_int_equal(dps_register_request_format("dev1", "", NULL, NULL, &x), -EINVAL);
        assert_int_equal(dps_register_request_format("dev1", NULL, NULL, "SRK", &x), -EINVAL);
        assert_ptr_equal(x, (char *) 0x1);
}

static void test_json_util(void **state) {
        _cleanup_json_ struct json_object *o = NULL, *n = NULL;
        struct json_object *x = NULL;

        assert_int_equal(json_parse_limited("{\"s\":\"v\",\"i\":1,\"z\":null}\n", 24, 100, 2, &o), 0);
        assert_string_equal(json_get_string(o, "s"), "v");
        assert_null(json_get_string(o, "i"));
        assert_null(json_get_string(o, "missing"));
        assert_null(json_get_string(NULL, "s"));

        _cleanup_free_ char *s = NULL, *z = NULL, *m = NULL;
        assert_int_equal(json_dup_string(o, "s", &s), 0);
        assert_string_equal(s, "v");
        assert_int_equal(json_dup_string(o, "z", &z), 0);
        assert_null(z);
        assert_int_equal(json_dup_string(o, "missing", &m), 0);
        assert_null(m);
        char *bad = (char *) 0x1;
        assert_int_equal(json_dup_string(o, "i", &bad), -EINVAL);
        assert_ptr_equal(bad, (char *) 0x1);

        /* top-level numbers need no terminator, top-level null is NULL */
        assert_int_equal(json_parse_limited("123", 3, 100, 1, &x), 0);
        assert_int_equal(json_object_get_int(x), 123);
        json_object_put(x);
        assert_int_equal(json_parse_limited("null", 4, 100, 1, &n), 0);
        assert_null(n);

        /* size limit, depth limit */
        assert_int_equal(json_parse_limited("[1,2,3]", 7, 6, 1, &x), -E2BIG);
        assert_int_equal(json_parse_limited("[[1]]", 5, 100, 3, &x), 0);
        json_object_put(x);
        assert_int_equal(json_parse_limited("[[1]]", 5, 100, 2, &x), -EINVAL);
        assert_int_equal(json_parse_limited("[[]]", 4, 100, 2, &x), 0);
        json_object_put(x);
        assert_int_equal(json_parse_limited("", 0, 100, 1, &x), -EINVAL);
        assert_int_equal(json_parse_limited("  ", 2, 100, 1, &x), -EINVAL);
        assert_int_equal(json_parse_limited("1 2", 3, 100, 1, &x), -EINVAL);
        assert_int_equal(json_parse_limited("[1,]", 4, 100, 1, &x), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_status_strings),   cmocka_unit_test(test_sequence),
                cmocka_unit_test(test_assigned_full),    cmocka_unit_test(test_failed),
                cmocka_unit_test(test_tpm_challenge),    cmocka_unit_test(test_response_empty_and_null),
                cmocka_unit_test(test_response_bad),     cmocka_unit_test(test_depth_and_size),
                cmocka_unit_test(test_register_bodies),  cmocka_unit_test(test_register_bad),
                cmocka_unit_test(test_register_format),  cmocka_unit_test(test_json_util),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
