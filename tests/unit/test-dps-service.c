/* SPDX-License-Identifier: MIT */
/* The local provisioning service core (src/dps/service.c, datafile.c) without mosquitto. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "dps/datafile.h"
#include "dps/service.h"
#include "edgeprov/codec.h"
#include "edgeprov/dps.h"
#include "edgeprov/fileio.h"
#include "edgeprov/json-util.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/sas.h"

#define SCOPE "0ne00000A0A"
/* dps-protocol.md §4.1, §4.3 */
#define GROUP_KEY "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
#define DOC_REG_ID "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
#define DOC_TOKEN                                                                                     \
        "SharedAccessSignature sr=0ne00000A0A%2fregistrations%2fsn-007-888-abc-mac-a1-b2-c3-d4-e5-f6" \
        "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000&skn=registration"

#define K1 "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
#define K2 "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
#define K3 "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
#define K4 "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ="
#define K5 "BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU="
#define SK(p, s) "{\"type\":\"symmetricKey\",\"symmetricKey\":{\"primaryKey\":\"" p "\",\"secondaryKey\":\"" s "\"}}"

#define NOW_SEC UINT64_C(1600000000) /* before the documented token's expiry */
#define LATER (NOW_SEC + 3600)

static const char data_json[] =
        "{\"idScope\":\"" SCOPE "\",\"allocationPolicy\":\"hashed\","
        "\"linkedHubs\":["
        " {\"name\":\"hub1.example.net\",\"allocationWeight\":1,\"applyAllocationPolicy\":true},"
        " {\"name\":\"hub2.example.net\",\"allocationWeight\":2},"
        " {\"name\":\"hub3.example.net\",\"allocationWeight\":3},"
        " {\"name\":\"pinned.example.net\",\"applyAllocationPolicy\":false}],"
        "\"individualEnrollments\":["
        " {\"registrationId\":\"gw1\",\"deviceId\":\"gw1-device\",\"provisioningStatus\":\"enabled\","
        "  \"attestation\":" SK(K1, K2) ",\"iotHubHostName\":null,\"iotHubs\":[\"hub1.example.net\"],"
        "  \"capabilities\":{\"iotEdge\":true},\"initialTwin\":{\"tags\":{\"site\":\"a\"}}},"
        " {\"registrationId\":\"gw2\",\"attestation\":" SK(K3, K4) "},"
        " {\"registrationId\":\"off\",\"provisioningStatus\":\"disabled\",\"attestation\":" SK(K4, K5) "},"
        " {\"registrationId\":\"both\",\"attestation\":" SK(K5, K1) "},"
        " {\"registrationId\":\"tpm1\",\"attestation\":{\"type\":\"tpm\",\"tpm\":{\"endorsementKey\":\"AAAA\"}}},"
        " {\"registrationId\":\"pinned\",\"attestation\":" SK(K1, K2) ",\"iotHubHostName\":\"pinned.example.net\"},"
        " {\"registrationId\":\"nohub\",\"attestation\":" SK(K1, K2) ",\"iotHubs\":[]}"
        "],"
        "\"enrollmentGroups\":["
        " {\"enrollmentGroupId\":\"x509group\",\"attestation\":{\"type\":\"x509\",\"x509\":{}}},"
        " {\"enrollmentGroupId\":\"sensors\",\"attestation\":" SK(GROUP_KEY, K2) "},"
        " {\"enrollmentGroupId\":\"offgroup\",\"provisioningStatus\":\"disabled\",\"attestation\":" SK(K3, K4) "}"
        "]}";

static uint64_t fake_now_usec;

static uint64_t fake_clock(void *userdata) {
        return fake_now_usec;
}

static DpsData *parse_data(const char *json) {
        _cleanup_free_ char *msg = NULL;
        DpsData *d = NULL;
        int r = dps_data_parse(json, strlen(json), &d, &msg);
        if (r < 0)
                fail_msg("data: %s", strna(msg));
        return d;
}

static DpsService *new_service_with(const char *json) {
        DpsService *s = NULL;
        assert_int_equal(dps_service_new(&s), 0);
        dps_service_set_data(s, parse_data(json));
        fake_now_usec = NOW_SEC * UINT64_C(1000000);
        dps_service_set_clock(s, fake_clock, NULL);
        return s;
}

static DpsService *new_service(void) {
        return new_service_with(data_json);
}

static char *token_for(const char *regid, const char *key_b64, uint64_t expiry) {
        _cleanup_free_ char *resource = NULL;
        char *t = NULL;
        assert_true(asprintf(&resource, SCOPE "/registrations/%s", regid) > 0);
        assert_int_equal(sas_token_build_b64(key_b64, resource, expiry, "registration", &t), 0);
        return t;
}

static char *group_token_for(const char *regid, const char *group_key, uint64_t expiry) {
        _cleanup_erase_ char *dk = NULL;
        assert_int_equal(sas_derive_device_key(group_key, regid, &dk), 0);
        return token_for(regid, dk, expiry);
}

static int conn_id[256];

static int do_connect(DpsService *s, unsigned conn, const char *client_id, const char *username, const char *token,
                      DpsClient **ret) {
        return dps_service_connect(s, &conn_id[conn], client_id, username, token, token ? strlen(token) : 0, ret);
}

static DpsClient *connect_as(DpsService *s, unsigned conn, const char *regid, const char *token) {
        _cleanup_free_ char *u = NULL;
        DpsClient *c = NULL;
        assert_true(asprintf(&u, SCOPE "/registrations/%s/api-version=2019-03-31", regid) > 0);
        assert_int_equal(do_connect(s, conn, regid, u, token, &c), DPS_CONNECT_ACCEPTED);
        assert_non_null(c);
        assert_ptr_equal(dps_service_get_client(s, &conn_id[conn]), c);
        return c;
}

static void request(DpsClient *c, const char *topic, const char *body, DpsReply *ret) {
        assert_int_equal(dps_client_handle_request(c, topic, body, body ? strlen(body) : 0, ret), 0);
        assert_non_null(ret->topic);
        assert_non_null(ret->body);
        assert_int_equal(strlen(ret->body), ret->body_len);
}

static struct json_object *body_json(const DpsReply *r) {
        struct json_object *o = NULL;
        assert_int_equal(json_parse_limited(r->body, r->body_len, DPS_BODY_MAX, 32, &o), 0);
        assert_non_null(o);
        assert_true(json_object_is_type(o, json_type_object));
        return o;
}

static struct json_object *get(struct json_object *o, const char *key) {
        struct json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v))
                fail_msg("missing key '%s' in %s", key, json_object_to_json_string(o));
        return v;
}

static bool has(struct json_object *o, const char *key) {
        return json_object_object_get_ex(o, key, NULL);
}

static void assert_error(const DpsReply *r, unsigned status, int64_t code, const char *message_part) {
        _cleanup_json_ struct json_object *o = body_json(r);
        char prefix[64];

        snprintf(prefix, sizeof(prefix), DPS_RESPONSE_TOPIC_PREFIX "%u/?$rid=", status);
        if (!startswith(r->topic, prefix))
                fail_msg("topic %s, expected status %u (%s)", r->topic, status, r->body);
        assert_int_equal(r->status, status);
        assert_int_equal(json_object_get_int64(get(o, "errorCode")), code);
        assert_true(json_object_is_type(get(o, "trackingId"), json_type_string));
        assert_true(json_object_is_type(get(o, "timestampUtc"), json_type_string));
        const char *m = json_object_get_string(get(o, "message"));
        if (message_part && !strstr(m, message_part))
                fail_msg("message '%s' lacks '%s'", m, message_part);
        assert_int_equal(json_object_object_length(o), 4);
}

/* register, expect 202; returns the operation id */
static char *do_register(DpsClient *c, const char *body) {
        _cleanup_(dps_reply_done) DpsReply r = {};
        request(c, DPS_REGISTER_TOPIC_PREFIX "$rid=1", body, &r);
        if (r.status != 202)
                fail_msg("register: %s %s", r.topic, r.body);
        assert_string_equal(r.topic, "$dps/registrations/res/202/?$rid=1&retry-after=3");
        _cleanup_json_ struct json_object *o = body_json(&r);
        assert_int_equal(json_object_object_length(o), 2);
        assert_string_equal(json_object_get_string(get(o, "status")), "assigning");
        char *op = strdup(json_object_get_string(get(o, "operationId")));
        assert_non_null(op);
        for (const char *p = op; *p; p++)
                assert_true(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-", *p));
        return op;
}

static void do_poll(DpsClient *c, const char *op, DpsReply *ret) {
        _cleanup_free_ char *topic = NULL;
        assert_int_equal(dps_poll_topic_format("2", op, &topic), 0);
        request(c, topic, " ", ret);
}

/* registration id → registrationState of the 200 reply */
static struct json_object *register_and_poll(DpsClient *c, const char *body, const char *expect_status) {
        _cleanup_(dps_reply_done) DpsReply r = {};
        _cleanup_free_ char *op = do_register(c, body);
        do_poll(c, op, &r);
        assert_string_equal(r.topic, "$dps/registrations/res/200/?$rid=2");
        assert_int_equal(r.status, 200);
        struct json_object *o = body_json(&r);
        assert_string_equal(json_object_get_string(get(o, "operationId")), op);
        assert_string_equal(json_object_get_string(get(o, "status")), expect_status);
        assert_int_equal(json_object_object_length(o), 3);
        return o;
}

/* ---- connections and usernames ------------------------------------------------------------ */

static void test_username_variants(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service();
        _cleanup_free_ char *tok = token_for("gw1", K1, LATER);
        static const char *const usernames[] = {
                /* C SDK */
                SCOPE "/registrations/gw1/api-version=2021-06-01&ClientVersion=1.15.0",
                /* embedded C without user agent */
                SCOPE "/registrations/gw1/api-version=2019-03-31",
                /* Node */
                SCOPE "/registrations/gw1/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1",
                /* Python */
                SCOPE "/registrations/gw1/api-version=2019-03-31&ClientVersion=azure-iot-device-provisioning-py%2F2."
                      "14.0%28Python%203.11%3BLinux%206.1%3Bx86_64%29",
                /* .NET */
                SCOPE "/registrations/gw1/api-version=2019-03-31&ClientVersion=Microsoft.Azure.Devices.Provisioning."
                      "Client%2F1.19.0%20%28.NET%29",
                /* IoT Edge */
                SCOPE "/registrations/gw1/api-version=2021-10-01",
        };

        for (size_t i = 0; i < ELEMENTSOF(usernames); i++) {
                DpsClient *c = NULL;
                assert_int_equal(do_connect(s, 1, "gw1", usernames[i], tok, &c), DPS_CONNECT_ACCEPTED);
                free(do_register(c, "{\"registrationId\":\"gw1\"}"));
        }
        assert_int_equal(dps_service_n_clients(s), 1); /* the same connection key was reused */

        /* not ours: left to the broker */
        static const char *const others[] = {
                "monitor", "", "admin/registrations", SCOPE "/registrations/gw1", SCOPE "/registrations/gw1/",
                SCOPE "/registrations/-gw1/api-version=2019-03-31", "/registrations/gw1/api-version=2019-03-31",
        };
        for (size_t i = 0; i < ELEMENTSOF(others); i++)
                assert_int_equal(do_connect(s, 2, "gw1", others[i], tok, NULL), DPS_CONNECT_NOT_OURS);
        assert_int_equal(do_connect(s, 2, "gw1", NULL, NULL, NULL), DPS_CONNECT_NOT_OURS);
        assert_null(dps_service_get_client(s, &conn_id[2]));
}

static void test_client_id_and_scope(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service();
        _cleanup_free_ char *tok = token_for("gw1", K1, LATER);

        assert_int_equal(do_connect(s, 1, "other", SCOPE "/registrations/gw1/api-version=2019-03-31", tok, NULL),
                         DPS_CONNECT_REJECTED);
        assert_int_equal(do_connect(s, 1, NULL, SCOPE "/registrations/gw1/api-version=2019-03-31", tok, NULL),
                         DPS_CONNECT_REJECTED);
        assert_int_equal(do_connect(s, 1, "gw1", "0neFFFFFFFF/registrations/gw1/api-version=2019-03-31", tok, NULL),
                         DPS_CONNECT_REJECTED);
        assert_null(dps_service_get_client(s, &conn_id[1]));
        assert_int_equal(dps_service_n_clients(s), 0);

        /* the override wins over the file */
        assert_int_equal(dps_service_set_id_scope(s, "0ne00000B0B"), 0);
        assert_int_equal(do_connect(s, 1, "gw1", SCOPE "/registrations/gw1/api-version=2019-03-31", tok, NULL),
                         DPS_CONNECT_REJECTED);
        _cleanup_free_ char *tok2 = NULL;
        assert_int_equal(sas_token_build_b64(K1, "0ne00000B0B/registrations/gw1", LATER, NULL, &tok2), 0);
        DpsClient *c = NULL;
        assert_int_equal(do_connect(s, 1, "gw1", "0ne00000B0B/registrations/gw1/api-version=2019-03-31", tok2, &c),
                         DPS_CONNECT_ACCEPTED);
        free(do_register(c, NULL));

        dps_service_disconnect(s, &conn_id[1]);
        assert_null(dps_service_get_client(s, &conn_id[1]));
        dps_service_disconnect(s, &conn_id[1]); /* twice is fine */
}

/* ---- SAS tokens ------------------------------------------------------------------------------- */

static void expect_register_error(DpsClient *c, unsigned status, int64_t code, const char *message_part) {
        _cleanup_(dps_reply_done) DpsReply r = {};
        request(c, DPS_REGISTER_TOPIC_PREFIX "$rid=x1", "{\"payload\":{\"x\":1}}", &r);
        assert_error(&r, status, code, message_part);
        assert_true(startswith(r.topic, DPS_RESPONSE_TOPIC_PREFIX) != NULL);
        assert_non_null(strstr(r.topic, "?$rid=x1"));
        if (status == 429)
                assert_non_null(strstr(r.topic, "&retry-after=3"));
        else
                assert_null(strstr(r.topic, "retry-after"));
}

static void test_sas(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service();
        _cleanup_free_ char *good = token_for("gw1", K1, LATER), *secondary = token_for("gw1", K2, LATER),
                            *expired = token_for("gw1", K1, NOW_SEC), *wrong_key = token_for("gw1", K3, LATER),
                            *other = token_for("gw2", K3, LATER);
        DpsClient *c;

        c = connect_as(s, 1, "gw1", good);
        free(do_register(c, NULL));
        c = connect_as(s, 1, "gw1", secondary);
        free(do_register(c, ""));

        c = connect_as(s, 1, "gw1", expired);
        expect_register_error(c, 401, 401002, "SAS token expired");
        c = connect_as(s, 1, "gw1", wrong_key);
        expect_register_error(c, 401, 401002, "signature does not match");
        c = connect_as(s, 1, "gw1", other); /* gw2's valid token */
        expect_register_error(c, 401, 401002, "another resource");
        c = connect_as(s, 1, "gw1", NULL);
        expect_register_error(c, 401, 401002, "no SAS token");
        c = connect_as(s, 1, "gw1", "");
        expect_register_error(c, 401, 401002, "no SAS token");
        c = connect_as(s, 1, "gw1", "SharedAccessSignature garbage");
        expect_register_error(c, 401, 401002, "malformed");
        c = connect_as(s, 1, "gw1", "password");
        expect_register_error(c, 401, 401002, "malformed");

        /* a token that expires while connected */
        _cleanup_free_ char *short_lived = token_for("gw1", K1, NOW_SEC + 10);
        c = connect_as(s, 1, "gw1", short_lived);
        free(do_register(c, NULL));
        fake_now_usec += 10 * UINT64_C(1000000);
        expect_register_error(c, 401, 401002, "expired");
}

/* The verbatim sr of other SDKs: unencoded (Node), uppercase %2F (.NET, Python), no skn (Python). */
static void test_sas_encodings(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service();
        static const char *const srs[] = {
                SCOPE "/registrations/gw1", SCOPE "%2Fregistrations%2Fgw1", SCOPE "%2fregistrations%2fgw1",
                "0NE00000a0a%2Fregistrations%2FGW1",
        };
        _cleanup_free_ uint8_t *key = NULL;
        size_t key_len = 0;

        assert_int_equal(base64_decode(K1, strlen(K1), &key, &key_len), 0);
        for (size_t i = 0; i < ELEMENTSOF(srs); i++) {
                _cleanup_free_ char *sts = NULL, *b64 = NULL, *sig = NULL, *tok = NULL;
                uint8_t mac[32];
                assert_true(asprintf(&sts, "%s\n%" PRIu64, srs[i], LATER) > 0);
                assert_int_equal(hmac_sha256(key, key_len, sts, strlen(sts), mac), 0);
                assert_int_equal(base64_encode(mac, sizeof(mac), &b64), 0);
                assert_int_equal(url_encode(b64, false, &sig), 0);
                /* field order as Node sends it, and without skn */
                assert_true(asprintf(&tok, "SharedAccessSignature sr=%s&sig=%s&se=%" PRIu64 "%s", srs[i], sig, LATER,
                                     i % 2 ? "" : "&skn=registration") > 0);
                DpsClient *c = connect_as(s, 1, "gw1", tok);
                free(do_register(c, NULL));
        }
}

static void test_group(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service();
        _cleanup_json_ struct json_object *o = NULL;

        /* the documented test vector, verbatim */
        DpsClient *c = connect_as(s, 1, DOC_REG_ID, DOC_TOKEN);
        o = register_and_poll(c, "{\"registrationId\":\"" DOC_REG_ID "\",\"payload\":null}", "assigned");
        struct json_object *st = get(o, "registrationState");
        assert_string_equal(json_object_get_string(get(st, "registrationId")), DOC_REG_ID);
        assert_string_equal(json_object_get_string(get(st, "deviceId")), DOC_REG_ID);
        assert_string_equal(json_object_get_string(get(get(st, "symmetricKey"), "enrollmentGroupId")), "sensors");
        assert_false(has(st, "payload"));

        /* the secondary group key works too */
        _cleanup_free_ char *t2 = group_token_for("sensor-2", K2, LATER);
        c = connect_as(s, 2, "sensor-2", t2);
        json_object_put(register_and_poll(c, NULL, "assigned"));

        /* a disabled group */
        _cleanup_free_ char *t3 = group_token_for("sensor-3", K3, LATER);
        c = connect_as(s, 3, "sensor-3", t3);
        json_object_put(register_and_poll(c, NULL, "disabled"));

        /* the group key itself is not a device key */
        _cleanup_free_ char *t4 = token_for("sensor-4", GROUP_KEY, LATER);
        c = connect_as(s, 4, "sensor-4", t4);
        expect_register_error(c, 401, 401002, "matches no enrollment group");

        /* expired group token */
        _cleanup_free_ char *t5 = group_token_for("sensor-5", GROUP_KEY, NOW_SEC - 1);
        c = connect_as(s, 5, "sensor-5", t5);
        expect_register_error(c, 401, 401002, "expired");

        /* another device's derived key */
        _cleanup_free_ char *t6 = NULL, *dk = NULL;
        assert_int_equal(sas_derive_device_key(GROUP_KEY, "sensor-7", &dk), 0);
        t6 = token_for("sensor-6", dk, LATER);
        c = connect_as(s, 6, "sensor-6", t6);
        expect_register_error(c, 401, 401002, NULL);
}

static void test_individual_beats_group(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service();
        _cleanup_free_ char *group = group_token_for("both", GROUP_KEY, LATER), *own = token_for("both", K5, LATER);

        DpsClient *c = connect_as(s, 1, "both", group);
        expect_register_error(c, 401, 401002, "signature does not match");

        c = connect_as(s, 1, "both", own);
        _cleanup_json_ struct json_object *o = register_and_poll(c, NULL, "assigned");
        assert_false(has(get(o, "registrationState"), "symmetricKey"));
}

static void test_not_enrolled(void **state) {
        /* no groups at all: 404201 */
        _cleanup_(dps_service_freep) DpsService *s = new_service_with(
                "{\"idScope\":\"" SCOPE "\",\"linkedHubs\":[{\"name\":\"h.example.net\"}],"
                "\"individualEnrollments\":[{\"registrationId\":\"gw1\",\"attestation\":" SK(K1, K2) "}]}");
        _cleanup_free_ char *tok = token_for("stranger", K1, LATER);

        DpsClient *c = connect_as(s, 1, "stranger", tok);
        expect_register_error(c, 404, 404201, "No enrollment found for registration id 'stranger'");

        _cleanup_free_ char *topic = NULL;
        _cleanup_(dps_reply_done) DpsReply r = {};
        assert_int_equal(dps_poll_topic_format("p", "4.0.x", &topic), 0);
        request(c, topic, NULL, &r);
        assert_error(&r, 404, 404201, NULL);

        /* a registration id is case-insensitive */
        _cleanup_free_ char *upper = token_for("GW1", K1, LATER);
        c = connect_as(s, 2, "GW1", upper);
        free(do_register(c, NULL));
}

static void test_unsupported_attestation(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service();
        _cleanup_free_ char *tok = token_for("tpm1", K1, LATER);
        DpsClient *c = connect_as(s, 1, "tpm1", tok);
        /* TPM enrollments are served by src/dps/attest-tpm.c (tests/unit/test-attest-tpm.c): a
         * password that no TPM challenge issued is refused */
        expect_register_error(c, 401, 401002, "no TPM challenge is outstanding");
}

/* ---- the register / poll flow -------------------------------------------------------------------- */

static void assert_timestamp(struct json_object *v) {
        const char *s = json_object_get_string(v);
        /* 2020-09-13T12:26:40.0000000Z */
        assert_int_equal(strlen(s), 28);
        assert_int_equal(s[4], '-');
        assert_int_equal(s[10], 'T');
        assert_int_equal(s[19], '.');
        assert_int_equal(s[27], 'Z');
}

static void test_register_poll(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service();
        _cleanup_free_ char *tok = token_for("gw1", K1, LATER);
        DpsClient *c = connect_as(s, 1, "gw1", tok);

        _cleanup_json_ struct json_object *o =
                register_and_poll(c, "{\"registrationId\":\"gw1\",\"payload\":{\"modelId\":\"m1\",\"n\":[1,2]}}",
                                  "assigned");
        struct json_object *st = get(o, "registrationState");
        static const char *const keys[] = {
                "registrationId", "createdDateTimeUtc", "assignedHub", "deviceId", "status", "substatus",
                "lastUpdatedDateTimeUtc", "etag", "payload",
        };
        size_t i = 0;
        json_object_object_foreach(st, key, val) {
                (void) val;
                assert_true(i < ELEMENTSOF(keys));
                assert_string_equal(key, keys[i++]);
        }
        assert_int_equal(i, ELEMENTSOF(keys));
        assert_string_equal(json_object_get_string(get(st, "registrationId")), "gw1");
        assert_string_equal(json_object_get_string(get(st, "assignedHub")), "hub1.example.net");
        assert_string_equal(json_object_get_string(get(st, "deviceId")), "gw1-device");
        assert_string_equal(json_object_get_string(get(st, "status")), "assigned");
        assert_string_equal(json_object_get_string(get(st, "substatus")), "initialAssignment");
        assert_string_equal(json_object_get_string(get(st, "createdDateTimeUtc")), "2020-09-13T12:26:40.0000000Z");
        assert_timestamp(get(st, "lastUpdatedDateTimeUtc"));
        assert_true(strlen(json_object_get_string(get(st, "etag"))) > 10);
        assert_string_equal(json_object_to_json_string_ext(get(st, "payload"), JSON_C_TO_STRING_PLAIN),
                            "{\"modelId\":\"m1\",\"n\":[1,2]}");

        /* polled again: the same answer; a second register keeps createdDateTimeUtc */
        fake_now_usec += 5 * UINT64_C(1000000);
        _cleanup_json_ struct json_object *o2 = register_and_poll(c, NULL, "assigned");
        struct json_object *st2 = get(o2, "registrationState");
        assert_string_equal(json_object_get_string(get(st2, "createdDateTimeUtc")), "2020-09-13T12:26:40.0000000Z");
        assert_string_equal(json_object_get_string(get(st2, "lastUpdatedDateTimeUtc")),
                            "2020-09-13T12:26:45.0000000Z");
        assert_false(has(st2, "payload"));

        /* Python's URL-quoted operation id and rids of every shape */
        _cleanup_free_ char *op = do_register(c, NULL);
        _cleanup_free_ char *topic = NULL;
        _cleanup_(dps_reply_done) DpsReply r = {};
        assert_true(asprintf(&topic,
                             DPS_POLL_TOPIC_PREFIX "$rid=8f6e0b6b-6e4c-4fd4-9b4b-1e0f2b7f2c11&operationId=%s", op) > 0);
        request(c, topic, "", &r);
        assert_string_equal(r.topic, "$dps/registrations/res/200/?$rid=8f6e0b6b-6e4c-4fd4-9b4b-1e0f2b7f2c11");
}

static void test_device_id_and_hubs(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service();
        _cleanup_free_ char *t1 = token_for("pinned", K1, LATER), *t2 = token_for("nohub", K1, LATER),
                            *t3 = token_for("gw2", K3, LATER);

        DpsClient *c = connect_as(s, 1, "pinned", t1);
        _cleanup_json_ struct json_object *o = register_and_poll(c, NULL, "assigned");
        struct json_object *st = get(o, "registrationState");
        /* iotHubHostName wins, even over applyAllocationPolicy=false */
        assert_string_equal(json_object_get_string(get(st, "assignedHub")), "pinned.example.net");
        /* no deviceId in the enrollment: the registration id */
        assert_string_equal(json_object_get_string(get(st, "deviceId")), "pinned");

        /* an empty iotHubs list means "all linked hubs" */
        c = connect_as(s, 2, "nohub", t2);
        json_object_put(register_and_poll(c, NULL, "assigned"));

        c = connect_as(s, 3, "gw2", t3);
        _cleanup_json_ struct json_object *o3 = register_and_poll(c, NULL, "assigned");
        const char *hub = json_object_get_string(get(get(o3, "registrationState"), "assignedHub"));
        assert_true(streq(hub, "hub1.example.net") || streq(hub, "hub2.example.net") || streq(hub, "hub3.example.net"));
}

static void test_no_hub(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service_with(
                "{\"idScope\":\"" SCOPE "\",\"linkedHubs\":[{\"name\":\"h.example.net\",\"applyAllocationPolicy\":false}],"
                "\"individualEnrollments\":[{\"registrationId\":\"gw1\",\"attestation\":" SK(K1, K2) "}]}");
        _cleanup_free_ char *tok = token_for("gw1", K1, LATER);
        DpsClient *c = connect_as(s, 1, "gw1", tok);
        _cleanup_json_ struct json_object *o = register_and_poll(c, NULL, "failed");
        struct json_object *st = get(o, "registrationState");
        assert_string_equal(json_object_get_string(get(st, "status")), "failed");
        assert_int_equal(json_object_get_int64(get(st, "errorCode")), 400208);
        assert_false(has(st, "assignedHub"));
}

static void test_poll_other_registration(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service();
        _cleanup_free_ char *t1 = token_for("gw1", K1, LATER), *t2 = token_for("gw2", K3, LATER);
        DpsClient *c1 = connect_as(s, 1, "gw1", t1), *c2 = connect_as(s, 2, "gw2", t2);

        _cleanup_free_ char *op = do_register(c1, NULL);
        _cleanup_(dps_reply_done) DpsReply r = {}, r2 = {}, r3 = {};
        do_poll(c2, op, &r);
        assert_error(&r, 404, 404203, "Operation not found");

        /* unknown ids look the same */
        do_poll(c2, "4.0000000000000000.00000000-0000-0000-0000-000000000000", &r2);
        assert_error(&r2, 404, 404203, "Operation not found");
        assert_string_equal(strstr(r.body, "\"message\""), strstr(r2.body, "\"message\"") ?: "");

        /* still fine for its owner, also on a new connection */
        DpsClient *c1b = connect_as(s, 3, "gw1", t1);
        do_poll(c1b, op, &r3);
        assert_int_equal(r3.status, 200);
}

static void test_disabled(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service();
        _cleanup_free_ char *tok = token_for("off", K4, LATER), *bad = token_for("off", K1, LATER);

        DpsClient *c = connect_as(s, 1, "off", tok);
        _cleanup_json_ struct json_object *o = register_and_poll(c, NULL, "disabled");
        struct json_object *st = get(o, "registrationState");
        assert_string_equal(json_object_get_string(get(st, "registrationId")), "off");
        assert_string_equal(json_object_get_string(get(st, "status")), "disabled");
        assert_int_equal(json_object_get_int64(get(st, "errorCode")), 403001);
        assert_string_equal(json_object_get_string(get(st, "errorMessage")), "Enrollment is disabled");
        assert_false(has(st, "assignedHub"));
        assert_false(has(st, "deviceId"));

        /* a disabled enrollment still needs a valid token */
        c = connect_as(s, 1, "off", bad);
        expect_register_error(c, 401, 401002, NULL);
}

/* ---- malformed input ------------------------------------------------------------------------------ */

static void test_malformed(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service();
        _cleanup_free_ char *tok = token_for("gw1", K1, LATER);
        DpsClient *c = connect_as(s, 1, "gw1", tok);

        static const char *const bad_bodies[] = {
                "{", "garbage", "[1,2]", "\"gw1\"", "42", "{\"registrationId\":5}", "{\"registrationId\":\"gw1\"} x",
                "{\"registrationId\":\"gw1\",\"tpm\":\"no\"}", "{\"payload\":1,}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad_bodies); i++) {
                _cleanup_(dps_reply_done) DpsReply r = {};
                request(c, DPS_REGISTER_TOPIC_PREFIX "$rid=7", bad_bodies[i], &r);
                assert_string_equal(r.topic, "$dps/registrations/res/400/?$rid=7");
                assert_error(&r, 400, 400002, "Malformed register request");
        }

        /* deep nesting */
        char deep[2 * 200 + 1];
        memset(deep, '[', 200);
        memset(deep + 200, ']', 200);
        deep[400] = 0;
        _cleanup_free_ char *deep_body = NULL;
        assert_true(asprintf(&deep_body, "{\"payload\":%s}", deep) > 0);
        _cleanup_(dps_reply_done) DpsReply r1 = {};
        request(c, DPS_REGISTER_TOPIC_PREFIX "$rid=7", deep_body, &r1);
        assert_error(&r1, 400, 400002, NULL);

        /* huge */
        size_t n = DPS_BODY_MAX + 100;
        _cleanup_free_ char *huge = malloc(n + 1);
        assert_non_null(huge);
        memset(huge, ' ', n);
        huge[n] = 0;
        memcpy(huge, "{\"payload\":\"", 12);
        huge[n - 2] = '"';
        huge[n - 1] = '}';
        _cleanup_(dps_reply_done) DpsReply r2 = {};
        request(c, DPS_REGISTER_TOPIC_PREFIX "$rid=8", huge, &r2);
        assert_error(&r2, 413, 413001, NULL);
        _cleanup_(dps_reply_done) DpsReply r2b = {};
        request(c, DPS_POLL_TOPIC_PREFIX "$rid=8&operationId=x", huge, &r2b);
        assert_error(&r2b, 413, 413001, NULL);

        /* registration id mismatch (case does not count) */
        _cleanup_(dps_reply_done) DpsReply r3 = {};
        request(c, DPS_REGISTER_TOPIC_PREFIX "$rid=9", "{\"registrationId\":\"gw2\"}", &r3);
        assert_error(&r3, 400, 400003, "does not match");
        free(do_register(c, "{\"registrationId\":\"GW1\"}"));

        /* NUL bytes in the body */
        _cleanup_(dps_reply_done) DpsReply r4 = {};
        assert_int_equal(dps_client_handle_request(c, DPS_REGISTER_TOPIC_PREFIX "$rid=10", "{}\0{}", 5, &r4), 0);
        assert_error(&r4, 400, 400002, NULL);

        /* bad topics: 400, with the rid echoed when it can be */
        static const struct {
                const char *topic;
                const char *reply_topic;
        } topics[] = {
                { "$dps/registrations/PUT/iotdps-register/?$rid=", "$dps/registrations/res/400/?$rid=" },
                { "$dps/registrations/PUT/iotdps-register/", "$dps/registrations/res/400/?$rid=" },
                { "$dps/registrations/PUT/iotdps-register/?$rid=1&$rid=2", "$dps/registrations/res/400/?$rid=1" },
                { "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=5", "$dps/registrations/res/400/?$rid=5" },
                { "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=5&operationId=%zz",
                  "$dps/registrations/res/400/?$rid=5" },
                { "$dps/registrations/PUT/other/?$rid=6", "$dps/registrations/res/400/?$rid=6" },
                { "$dps/registrations/res/200/?$rid=6", "$dps/registrations/res/400/?$rid=6" },
                { "$dps/x", "$dps/registrations/res/400/?$rid=" },
                { "", "$dps/registrations/res/400/?$rid=" },
                { "$dps/registrations/PUT/iotdps-register/?$rid=a b", "$dps/registrations/res/400/?$rid=" },
                { "$dps/registrations/PUT/iotdps-register/?$rid=a$b%", "$dps/registrations/res/202/?$rid=a$b%" },
        };
        for (size_t i = 0; i < ELEMENTSOF(topics); i++) {
                _cleanup_(dps_reply_done) DpsReply r = {};
                request(c, topics[i].topic, NULL, &r);
                if (!startswith(r.topic, topics[i].reply_topic))
                        fail_msg("%s → %s, expected %s", topics[i].topic, r.topic, topics[i].reply_topic);
                if (r.status == 400)
                        assert_error(&r, 400, 400001, "Malformed request topic");
        }
        _cleanup_(dps_reply_done) DpsReply r5 = {};
        request(c, NULL, NULL, &r5);
        assert_error(&r5, 400, 400001, NULL);
}

/* ---- limits ---------------------------------------------------------------------------------------- */

static void test_limits(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service();
        _cleanup_free_ char *t1 = token_for("gw1", K1, LATER), *t2 = token_for("gw2", K3, LATER);
        DpsServiceLimits l = DPS_LIMITS_DEFAULT;
        l.max_operations_per_registration = 2;
        l.max_operations = 3;
        l.operation_lifetime_usec = 60 * UINT64_C(1000000);
        dps_service_set_limits(s, &l);
        assert_int_equal(dps_service_set_retry_after(s, 7), 0);
        assert_int_equal(dps_service_set_retry_after(s, 0), -EINVAL);
        assert_int_equal(dps_service_set_retry_after(s, 3), 0);

        DpsClient *c1 = connect_as(s, 1, "gw1", t1), *c2 = connect_as(s, 2, "gw2", t2);
        _cleanup_free_ char *a = do_register(c1, NULL), *b = do_register(c1, NULL), *c = do_register(c1, NULL);
        assert_int_equal(dps_service_n_operations(s), 2);

        /* the oldest of gw1's operations made room */
        _cleanup_(dps_reply_done) DpsReply r1 = {}, r2 = {}, r3 = {}, r4 = {}, r5 = {};
        do_poll(c1, a, &r1);
        assert_error(&r1, 404, 404203, NULL);
        do_poll(c1, b, &r2);
        assert_int_equal(r2.status, 200);

        /* the global limit: 429 with retry-after */
        _cleanup_free_ char *d = do_register(c2, NULL);
        request(c2, DPS_REGISTER_TOPIC_PREFIX "$rid=z", NULL, &r3);
        assert_string_equal(r3.topic, "$dps/registrations/res/429/?$rid=z&retry-after=3");
        assert_error(&r3, 429, 429001, NULL);

        /* operations expire */
        fake_now_usec += 61 * UINT64_C(1000000);
        do_poll(c1, c, &r4);
        assert_error(&r4, 404, 404203, NULL);
        assert_int_equal(dps_service_n_operations(s), 0);
        _cleanup_free_ char *e = do_register(c2, NULL);
        do_poll(c2, e, &r5);
        assert_int_equal(r5.status, 200);

        /* registrations */
        l.max_registrations = 2;
        dps_service_set_limits(s, &l);
        _cleanup_free_ char *t3 = token_for("pinned", K1, LATER);
        DpsClient *c3 = connect_as(s, 3, "pinned", t3);
        expect_register_error(c3, 429, 429001, "Too many registrations");
}

/* ---- hashed allocation -------------------------------------------------------------------------------- */

static void test_allocation(void **state) {
        _cleanup_(dps_data_freep) DpsData *d = parse_data(
                "{\"idScope\":\"" SCOPE "\",\"linkedHubs\":["
                "{\"name\":\"a.example.net\",\"allocationWeight\":1},"
                "{\"name\":\"b.example.net\",\"allocationWeight\":2},"
                "{\"name\":\"c.example.net\",\"allocationWeight\":3},"
                "{\"name\":\"never.example.net\",\"allocationWeight\":1000,\"applyAllocationPolicy\":false}],"
                "\"enrollmentGroups\":[{\"enrollmentGroupId\":\"g\",\"attestation\":" SK(K1, K2) "},"
                "{\"enrollmentGroupId\":\"sub\",\"attestation\":" SK(K1, K2)
                ",\"iotHubs\":[\"a.example.net\",\"never.example.net\"]}]}");
        _cleanup_(dps_data_freep) DpsData *d4 = parse_data(
                "{\"idScope\":\"" SCOPE "\",\"linkedHubs\":["
                "{\"name\":\"a.example.net\",\"allocationWeight\":1},"
                "{\"name\":\"b.example.net\",\"allocationWeight\":2},"
                "{\"name\":\"c.example.net\",\"allocationWeight\":3},"
                "{\"name\":\"d.example.net\",\"allocationWeight\":6}],"
                "\"enrollmentGroups\":[{\"enrollmentGroupId\":\"g\",\"attestation\":" SK(K1, K2) "}]}");
        const DpsEnrollment *g = dps_data_find_group(d, "g"), *sub = dps_data_find_group(d, "sub"),
                            *g4 = dps_data_find_group(d4, "g");
        unsigned counts[3] = {}, sub_counts[2] = {}, moved = 0, moved_wrong = 0;
        const unsigned N = 3000;

        assert_non_null(g);
        for (unsigned i = 0; i < N; i++) {
                char id[32];
                const char *hub = NULL, *again = NULL, *upper = NULL, *hub4 = NULL;
                snprintf(id, sizeof(id), "device-%u", i);
                assert_int_equal(dps_allocate_hub(d, g, id, &hub), 0);
                assert_int_equal(dps_allocate_hub(d, g, id, &again), 0);
                assert_string_equal(hub, again); /* stable */
                char up[32];
                snprintf(up, sizeof(up), "DEVICE-%u", i);
                assert_int_equal(dps_allocate_hub(d, g, up, &upper), 0);
                assert_string_equal(hub, upper); /* registration ids are case-insensitive */

                assert_true(hub[1] == '.');
                assert_true(hub[0] >= 'a' && hub[0] <= 'c');
                counts[hub[0] - 'a']++;

                /* adding a hub only moves ids to the new hub */
                assert_int_equal(dps_allocate_hub(d4, g4, id, &hub4), 0);
                if (!streq(hub, hub4)) {
                        moved++;
                        if (!streq(hub4, "d.example.net"))
                                moved_wrong++;
                }

                const char *h = NULL;
                assert_int_equal(dps_allocate_hub(d, sub, id, &h), 0);
                sub_counts[streq(h, "a.example.net") ? 0 : 1]++;
        }

        print_message("hashed allocation over %u ids, weights 1:2:3 → %u:%u:%u; with d (weight 6) added %u moved\n", N,
                      counts[0], counts[1], counts[2], moved);
        /* expected 500 / 1000 / 1500, binomial sd about 20 / 26 / 27 */
        assert_in_range(counts[0], 500 - 90, 500 + 90);
        assert_in_range(counts[1], 1000 - 110, 1000 + 110);
        assert_in_range(counts[2], 1500 - 110, 1500 + 110);
        /* d takes half of everything */
        assert_int_equal(moved_wrong, 0);
        assert_in_range(moved, 1500 - 120, 1500 + 120);
        /* iotHubs restricts the candidates; applyAllocationPolicy does not matter then (weights 1:1000) */
        assert_true(sub_counts[1] > sub_counts[0]);
        assert_true(sub_counts[0] > 0);
}

/* ---- the data file ------------------------------------------------------------------------------------ */

static void test_datafile_errors(void **state) {
        static const struct {
                const char *json;
                int error;
                const char *message;
        } cases[] = {
                { "", -EINVAL, "not valid JSON" },
                { "{", -EINVAL, "not valid JSON" },
                { "[]", -EINVAL, "top level must be a JSON object" },
                { "null", -EINVAL, "top level" },
                { "{}", -EINVAL, "idScope: missing" },
                { "{\"idScope\":5}", -EINVAL, "idScope: expected a string" },
                { "{\"idScope\":\"0ne/x\"}", -EINVAL, "not a valid ID scope" },
                { "{\"idScope\":\"0ne1\",\"bogus\":1}", -EINVAL, "bogus: unknown field" },
                { "{\"idScope\":\"0ne1\",\"allocationPolicy\":\"random\"}", -EINVAL, "unknown allocation policy" },
                { "{\"idScope\":\"0ne1\",\"allocationPolicy\":\"custom\"}", -EINVAL, "custom cannot be" },
                { "{\"idScope\":\"0ne1\",\"linkedHubs\":{}}", -EINVAL, "linkedHubs: expected an array" },
                { "{\"idScope\":\"0ne1\",\"linkedHubs\":[{\"name\":\"h\",\"allocationWeight\":0}]}", -EINVAL,
                  "linkedHubs[0].allocationWeight: must be 1..1000" },
                { "{\"idScope\":\"0ne1\",\"linkedHubs\":[{\"name\":\"h\",\"allocationWeight\":1.5}]}", -EINVAL,
                  "allocationWeight: expected an integer" },
                { "{\"idScope\":\"0ne1\",\"linkedHubs\":[{\"name\":\"h\",\"applyAllocationPolicy\":\"yes\"}]}",
                  -EINVAL, "applyAllocationPolicy: expected true or false" },
                { "{\"idScope\":\"0ne1\",\"linkedHubs\":[{\"name\":\"bad_host\"}]}", -EINVAL, "not a valid host name" },
                { "{\"idScope\":\"0ne1\",\"linkedHubs\":[{\"name\":\"h\"},{\"name\":\"H\"}]}", -EEXIST,
                  "linkedHubs[1]: hub 'H' listed twice" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\"}]}", -EINVAL,
                  "individualEnrollments[0] ('a').attestation: missing" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"-a\",\"attestation\":{}}]}",
                  -EINVAL, "not a valid registration id" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"attestation\":{}}]}", -EINVAL,
                  "individualEnrollments[0].registrationId: missing" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\",\"attestation\":"
                  "{\"type\":\"magic\"}}]}",
                  -EINVAL, "unknown attestation type 'magic'" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\",\"attestation\":"
                  "{\"type\":\"symmetricKey\"}}]}",
                  -EINVAL, "attestation.symmetricKey: missing" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\",\"attestation\":"
                  "{\"type\":\"symmetricKey\",\"symmetricKey\":{\"primaryKey\":\"not base64!\"}}}]}",
                  -EINVAL, "individualEnrollments[0] ('a').attestation.symmetricKey.primaryKey: not valid base64" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\",\"attestation\":"
                  "{\"type\":\"symmetricKey\",\"symmetricKey\":{\"primaryKey\":\"AAAA\"}}}]}",
                  -EINVAL, "a key must be 16 to 64 bytes" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\",\"attestation\":" SK(
                          K1, K2) ",\"iotHubs\":[\"nope.example.net\"]}]}",
                  -EINVAL, "iotHubs[0]: 'nope.example.net' is not a linked hub" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\",\"attestation\":" SK(
                          K1, K2) ",\"iotHubHostName\":\"nope.example.net\"}]}",
                  -EINVAL, "iotHubHostName: 'nope.example.net' is not a linked hub" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\",\"attestation\":" SK(
                          K1, K2) ",\"provisioningStatus\":\"maybe\"}]}",
                  -EINVAL, "provisioningStatus: must be 'enabled' or 'disabled'" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\",\"attestation\":" SK(
                          K1, K2) ",\"allocationPolicy\":\"custom\"}]}",
                  -EINVAL, "customAllocationDefinition: custom allocation needs an object with webhookUrl" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\",\"attestation\":" SK(
                          K1, K2) ",\"allocationPolicy\":\"static\"}]}",
                  -EINVAL, "static allocation needs exactly one hub" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\",\"attestation\":" SK(
                          K1, K2) ",\"deviceId\":\"a b\"}]}",
                  -EINVAL, "deviceId: not a valid device id" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\",\"attestation\":" SK(
                          K1, K2) ",\"deviceid\":\"x\"}]}",
                  -EINVAL, "('a').deviceid: unknown field" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\",\"attestation\":" SK(
                          K1, K2) ",\"capabilities\":{\"iotEdge\":1}}]}",
                  -EINVAL, "capabilities.iotEdge: expected true or false" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\",\"attestation\":" SK(
                          K1, K2) "},{\"registrationId\":\"A\",\"attestation\":" SK(K1, K2) "}]}",
                  -EEXIST, "enrolled twice" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[{\"registrationId\":\"a\\u0000b\",\"attestation\":"
                  "{}}]}",
                  -EINVAL, "registrationId: contains a NUL character" },
                { "{\"idScope\":\"0ne1\",\"individualEnrollments\":[\"a\"]}", -EINVAL,
                  "individualEnrollments[0]: expected an object" },
                { "{\"idScope\":\"0ne1\",\"enrollmentGroups\":[{\"enrollmentGroupId\":\"g\",\"registrationId\":\"x\","
                  "\"attestation\":" SK(K1, K2) "}]}",
                  -EINVAL, "enrollmentGroups[0] ('g').registrationId: unknown field" },
                { "{\"idScope\":\"0ne1\",\"enrollmentGroups\":[{\"enrollmentGroupId\":\"g\",\"attestation\":" SK(
                          K1, K2) "},{\"enrollmentGroupId\":\"G\",\"attestation\":" SK(K1, K2) "}]}",
                  -EEXIST, "enrollment group id listed twice" },
                { "{\"idScope\":\"0ne1\",\"enrollmentGroups\":[{\"enrollmentGroupId\":\"g\",\"attestation\":" SK(
                          K1, K2) ",\"initialTwin\":[]}]}",
                  -EINVAL, "initialTwin: expected an object" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *msg = NULL;
                DpsData *d = NULL;
                int r = dps_data_parse(cases[i].json, strlen(cases[i].json), &d, &msg);
                if (r != cases[i].error || !msg || !strstr(msg, cases[i].message))
                        fail_msg("case %zu: %s → %d '%s', expected %d '%s'", i, cases[i].json, r, strna(msg),
                                 cases[i].error, cases[i].message);
                assert_null(d);
        }

        /* nested deeper than the limit */
        _cleanup_free_ char *deep = NULL;
        char brackets[2 * 40 + 1];
        memset(brackets, '[', 40);
        memset(brackets + 40, ']', 40);
        brackets[80] = 0;
        assert_true(asprintf(&deep,
                             "{\"idScope\":\"0ne1\",\"enrollmentGroups\":[{\"enrollmentGroupId\":\"g\","
                             "\"attestation\":" SK(K1, K2) ",\"initialTwin\":{\"tags\":{\"x\":%s}}}]}",
                             brackets) > 0);
        _cleanup_free_ char *msg = NULL;
        DpsData *d = NULL;
        assert_int_equal(dps_data_parse(deep, strlen(deep), &d, &msg), -EINVAL);

        /* too large */
        size_t n = DPS_DATAFILE_MAX + 1;
        _cleanup_free_ char *big = malloc(n);
        assert_non_null(big);
        memset(big, ' ', n);
        _cleanup_free_ char *msg2 = NULL;
        assert_int_equal(dps_data_parse(big, n, &d, &msg2), -E2BIG);
        assert_non_null(strstr(msg2, "larger than"));
}

static void test_datafile_roundtrip(void **state) {
        char dir[] = "/tmp/test-dps-service.XXXXXX", path[64], path2[80];
        _cleanup_(dps_data_freep) DpsData *d = parse_data(data_json), *d2 = NULL;
        _cleanup_free_ char *msg = NULL, *a = NULL, *b = NULL;
        struct stat st;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/data.json", dir);
        snprintf(path2, sizeof(path2), "%s/missing.json", dir);

        assert_int_equal(dps_data_save(d, path), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0640);
        assert_int_equal(dps_data_load(path, &d2, &msg), 0);
        assert_int_equal(dps_data_format(d, &a), 0);
        assert_int_equal(dps_data_format(d2, &b), 0);
        assert_string_equal(a, b);
        assert_int_equal(d2->n_individual, 7);
        assert_int_equal(d2->n_groups, 3);
        assert_int_equal(d2->n_hubs, 4);
        const DpsEnrollment *e = dps_data_find_individual(d2, "GW1");
        assert_non_null(e);
        assert_string_equal(e->device_id, "gw1-device");
        assert_true(e->iot_edge);
        assert_non_null(strstr(a, "\"initialTwin\"")); /* kept though not interpreted */

        DpsData *none = NULL;
        assert_int_equal(dps_data_load(path2, &none, &msg), -ENOENT);
        assert_non_null(strstr(msg, "missing.json"));

        /* edits validate and leave the data alone on failure */
        _cleanup_free_ char *m1 = NULL, *m2 = NULL, *m3 = NULL;
        assert_int_equal(dps_data_add_hub(d2, "HUB1.example.net", 1, true, &m1), -EEXIST);
        assert_int_equal(dps_data_add_hub(d2, "new.example.net", 5000, true, &m2), -EINVAL);
        assert_non_null(strstr(m2, "must be 1..1000"));
        assert_int_equal(d2->n_hubs, 4);
        assert_int_equal(dps_data_add_hub(d2, "new.example.net", 5, false, NULL), 0);
        assert_int_equal(d2->n_hubs, 5);

        struct json_object *en = json_tokener_parse("{\"registrationId\":\"new1\",\"attestation\":" SK(K1, K2)
                                                    ",\"iotHubs\":[\"missing.example.net\"]}");
        assert_int_equal(dps_data_add_individual(d2, en, &m3), -EINVAL);
        assert_non_null(strstr(m3, "individualEnrollments[7] ('new1').iotHubs[0]: 'missing.example.net' is not a linked hub"));
        assert_int_equal(d2->n_individual, 7);
        en = json_tokener_parse("{\"registrationId\":\"new1\",\"attestation\":" SK(K1, K2) "}");
        assert_int_equal(dps_data_add_individual(d2, en, NULL), 0);
        assert_non_null(dps_data_find_individual(d2, "new1"));
        en = json_tokener_parse("{\"registrationId\":\"NEW1\",\"attestation\":" SK(K1, K2) "}");
        assert_int_equal(dps_data_add_individual(d2, en, NULL), -EEXIST);
        assert_int_equal(dps_data_remove_individual(d2, "new1", NULL), 0);
        assert_int_equal(dps_data_remove_individual(d2, "new1", NULL), -ENOENT);
        assert_null(dps_data_find_individual(d2, "new1"));
        assert_int_equal(dps_data_remove_group(d2, "sensors", NULL), 0);
        assert_int_equal(d2->n_groups, 2);
        assert_int_equal(dps_data_set_id_scope(d2, "0ne00000B0B", NULL), 0);
        assert_string_equal(d2->id_scope, "0ne00000B0B");
        assert_int_equal(dps_data_set_id_scope(d2, "bad scope", NULL), -EINVAL);
        /* a hub still in use cannot go */
        assert_int_equal(dps_data_remove_hub(d2, "hub1.example.net", NULL), -EINVAL);
        assert_int_equal(dps_data_remove_hub(d2, "new.example.net", NULL), 0);

        DpsData *fresh = NULL;
        assert_int_equal(dps_data_new("0ne00000C0C", &fresh), 0);
        assert_int_equal(fresh->n_individual, 0);
        dps_data_free(fresh);

        (void) unlink(path);
        (void) rmdir(dir);
}

/* The service reloads a changed file, and keeps the old data when the new file is broken. */
static void test_reload(void **state) {
        char dir[] = "/tmp/test-dps-service.XXXXXX", path[64];
        _cleanup_(dps_service_freep) DpsService *s = NULL;
        _cleanup_(dps_data_freep) DpsData *d = parse_data(data_json);
        _cleanup_free_ char *msg = NULL, *m2 = NULL, *tok = token_for("late", K1, LATER),
                            *tok1 = token_for("gw1", K1, LATER);

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/data.json", dir);
        assert_int_equal(dps_data_save(d, path), 0);

        assert_int_equal(dps_service_new(&s), 0);
        fake_now_usec = NOW_SEC * UINT64_C(1000000);
        dps_service_set_clock(s, fake_clock, NULL);
        assert_int_equal(dps_service_load(s, path, &msg), 0);

        DpsClient *c1 = connect_as(s, 1, "gw1", tok1);
        DpsClient *c = connect_as(s, 2, "late", tok);
        expect_register_error(c, 401, 401002, NULL); /* not enrolled individually, groups exist */

        struct json_object *en = json_tokener_parse("{\"registrationId\":\"late\",\"attestation\":" SK(K1, K2) "}");
        assert_int_equal(dps_data_add_individual(d, en, NULL), 0);
        assert_int_equal(dps_data_save(d, path), 0);

        /* checked at most once a second */
        fake_now_usec += 2 * UINT64_C(1000000);
        c = connect_as(s, 2, "late", tok);
        free(do_register(c, NULL));
        /* the existing connection is re-checked against the new data */
        free(do_register(c1, NULL));

        /* broken file: the previous data stays */
        assert_int_equal(write_file_atomic(path, "{ broken", 8, 0640), 0);
        fake_now_usec += 2 * UINT64_C(1000000);
        assert_int_equal(dps_service_reload_if_changed(s, false, &m2), -EINVAL);
        assert_non_null(strstr(m2, "not valid JSON"));
        assert_int_equal(dps_service_reload_if_changed(s, false, NULL), 0); /* reported once */
        c = connect_as(s, 2, "late", tok);
        free(do_register(c, NULL));

        (void) unlink(path);
        (void) rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_username_variants),
                cmocka_unit_test(test_client_id_and_scope),
                cmocka_unit_test(test_sas),
                cmocka_unit_test(test_sas_encodings),
                cmocka_unit_test(test_group),
                cmocka_unit_test(test_individual_beats_group),
                cmocka_unit_test(test_not_enrolled),
                cmocka_unit_test(test_unsupported_attestation),
                cmocka_unit_test(test_register_poll),
                cmocka_unit_test(test_device_id_and_hubs),
                cmocka_unit_test(test_no_hub),
                cmocka_unit_test(test_poll_other_registration),
                cmocka_unit_test(test_disabled),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_limits),
                cmocka_unit_test(test_allocation),
                cmocka_unit_test(test_datafile_errors),
                cmocka_unit_test(test_datafile_roundtrip),
                cmocka_unit_test(test_reload),
        };

        log_set_max_level(LOG_WARNING);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
