/* SPDX-License-Identifier: MIT */
/* TPM attestation in the local provisioning service (src/dps/attest-tpm.c + the hook in
 * service.c), with the TPM played in software (tpm-soft.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "dps/attest-tpm.h"
#include "dps/datafile.h"
#include "dps/service.h"
#include "edgeprov/dps.h"
#include "edgeprov/macro.h"
#include "edgeprov/sas.h"
#include "tpm-soft.h"

#define SCOPE "0ne00000A0A"
#define NOW_SEC UINT64_C(1600000000)
#define LATER (NOW_SEC + 3600)

static uint64_t fake_now_usec;
static uint64_t fake_clock(void *userdata) {
        return fake_now_usec;
}

static char *ek_b64, *srk_b64;
static int conn_id[16];

static int keys_b64_setup(void **state) {
        tpm_soft_keys_setup(state);
        free(ek_b64);
        free(srk_b64);
        assert_int_equal(base64_encode(ek_pub, ek_pub_len, &ek_b64), 0);
        assert_int_equal(base64_encode(srk_pub, srk_pub_len, &srk_b64), 0);
        return 0;
}

static DpsService *new_service(const char *enrolled_ek_b64) {
        _cleanup_free_ char *json = NULL, *msg = NULL;
        DpsService *s = NULL;
        DpsData *d = NULL;
        assert_true(asprintf(&json,
                             "{\"idScope\":\"" SCOPE "\",\"linkedHubs\":[{\"name\":\"hub1.example.net\"}],"
                             "\"individualEnrollments\":[{\"registrationId\":\"gw-tpm\",\"deviceId\":\"dev-tpm\","
                             "\"attestation\":{\"type\":\"tpm\",\"tpm\":{\"endorsementKey\":\"%s\"}}}]}",
                             enrolled_ek_b64) > 0);
        assert_int_equal(dps_data_parse(json, strlen(json), &d, &msg), 0);
        assert_int_equal(dps_service_new(&s), 0);
        dps_service_set_data(s, d);
        fake_now_usec = NOW_SEC * UINT64_C(1000000);
        dps_service_set_clock(s, fake_clock, NULL);
        return s;
}

static DpsClient *connect_as(DpsService *s, unsigned conn, const char *token) {
        DpsClient *c = NULL;
        assert_int_equal(dps_service_connect(s, &conn_id[conn], "gw-tpm",
                                             SCOPE "/registrations/gw-tpm/api-version=2019-03-31", token,
                                             token ? strlen(token) : 0, &c),
                         DPS_CONNECT_ACCEPTED);
        return c;
}

/* register with the given tpm keys; returns the reply (status, parsed body) */
static unsigned do_register(DpsClient *c, const char *ek, const char *srk, DpsResponse *ret) {
        _cleanup_free_ char *body = NULL;
        _cleanup_(dps_reply_done) DpsReply r = {};
        assert_int_equal(dps_register_request_format("gw-tpm", NULL, ek, srk, &body), 0);
        assert_int_equal(dps_client_handle_request(c, DPS_REGISTER_TOPIC_PREFIX "$rid=1", body, strlen(body), &r), 0);
        *ret = (DpsResponse) {};
        assert_int_equal(dps_response_parse(r.body, r.body_len, ret), 0);
        return r.status;
}

static char *token_with_key(const uint8_t *key, size_t len, uint64_t expiry) {
        char *t = NULL;
        assert_int_equal(sas_token_build(key, len, SCOPE "/registrations/gw-tpm", expiry, "registration", &t), 0);
        return t;
}

/* the device side of the challenge: open the blob with the "TPM" and sign a token */
static char *answer_challenge(const DpsResponse *resp, uint64_t expiry) {
        _cleanup_free_ uint8_t *blob = NULL;
        uint8_t key[64];
        size_t len, key_len = 0;
        assert_non_null(resp->authentication_key);
        assert_string_equal(resp->key_name, "registration");
        assert_int_equal(base64_decode(resp->authentication_key, strlen(resp->authentication_key), &blob, &len), 0);
        assert_int_equal(soft_open(blob, len, key, &key_len), OPEN_OK);
        assert_int_equal(key_len, 32);
        return token_with_key(key, key_len, expiry);
}

static void test_flow(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service(ek_b64);
        _cleanup_(dps_response_done) DpsResponse ch = {}, reg = {}, replay = {};
        _cleanup_free_ char *tok = NULL, *poll_topic = NULL;
        _cleanup_(dps_reply_done) DpsReply pr = {};

        /* 1. no password, register with EK+SRK: 401 + authenticationKey */
        DpsClient *c = connect_as(s, 1, NULL);
        assert_int_equal(do_register(c, ek_b64, srk_b64, &ch), 401);
        assert_non_null(ch.message);
        tok = answer_challenge(&ch, LATER);

        /* 2. reconnect with the TPM-signed token: registered (without tpm in the body, as aziot) */
        c = connect_as(s, 1, tok);
        assert_int_equal(do_register(c, NULL, NULL, &reg), 202);
        assert_non_null(reg.operation_id);
        assert_true(asprintf(&poll_topic, DPS_POLL_TOPIC_PREFIX "$rid=2&operationId=%s", reg.operation_id) > 0);
        assert_int_equal(dps_client_handle_request(c, poll_topic, "", 0, &pr), 0);
        assert_int_equal(pr.status, 200);
        assert_non_null(strstr(pr.body, "\"assigned\""));
        assert_non_null(strstr(pr.body, "dev-tpm"));

        /* 3. the key answered one registration: the same token again is a replay */
        c = connect_as(s, 2, tok);
        assert_int_equal(do_register(c, NULL, NULL, &replay), 401);
        assert_int_equal(replay.error_code, 401002);
        assert_non_null(strstr(replay.message, "no TPM challenge is outstanding"));
        assert_int_equal(dps_tpm_keys_count(NULL), 0);
}

static void test_refusals(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service(ek_b64);
        uint8_t other_pub[TPM2B_PUBLIC_MAX], weird_srk[TPM2B_PUBLIC_MAX];
        _cleanup_free_ char *other_b64 = NULL, *weird_b64 = NULL, *forged = NULL, *old = NULL, *expired = NULL;
        DpsClient *c;

        /* an EK that is not the enrolled one (the SRK's key presented as EK) */
        size_t l = key_to_public(srk_key, 0x000300B2, ek_policy, sizeof(ek_policy), other_pub);
        assert_int_equal(base64_encode(other_pub, l, &other_b64), 0);
        c = connect_as(s, 1, NULL);
        {
                _cleanup_(dps_response_done) DpsResponse r = {};
                assert_int_equal(do_register(c, other_b64, srk_b64, &r), 401);
                assert_non_null(strstr(r.message, "not the enrolled one"));
                assert_null(r.authentication_key);
        }
        /* an SRK that is not a storage key (no restricted|decrypt) */
        uint8_t mod[256];
        memset(mod, 0xc3, sizeof(mod));
        l = make_rsa_public(weird_srk, 0x00040072, NULL, 0, mod, sizeof(mod));
        assert_int_equal(base64_encode(weird_srk, l, &weird_b64), 0);
        {
                _cleanup_(dps_response_done) DpsResponse r = {};
                assert_int_equal(do_register(c, ek_b64, weird_b64, &r), 401);
                assert_non_null(strstr(r.message, "storage root key is not an RSA restricted decryption key"));
        }
        /* garbage, missing SRK */
        {
                _cleanup_(dps_response_done) DpsResponse r = {}, r2 = {};
                assert_int_equal(do_register(c, "AAAA", srk_b64, &r), 401);
                assert_non_null(strstr(r.message, "not base64 of a TPM2B_PUBLIC"));
                assert_int_equal(do_register(c, ek_b64, NULL, &r2), 401);
                assert_non_null(strstr(r2.message, "needs tpm.endorsementKey and tpm.storageRootKey"));
        }
        /* a password before any challenge */
        {
                uint8_t k[32] = { 1 };
                _cleanup_(dps_response_done) DpsResponse r = {};
                forged = token_with_key(k, sizeof(k), LATER);
                c = connect_as(s, 2, forged);
                assert_int_equal(do_register(c, NULL, NULL, &r), 401);
                assert_non_null(strstr(r.message, "no TPM challenge is outstanding"));
        }
        /* a challenge is issued; a forged token (wrong key) is refused */
        {
                _cleanup_(dps_response_done) DpsResponse ch = {}, r = {};
                c = connect_as(s, 1, NULL);
                assert_int_equal(do_register(c, ek_b64, srk_b64, &ch), 401);
                old = answer_challenge(&ch, LATER);
                expired = answer_challenge(&ch, NOW_SEC - 1);
                c = connect_as(s, 2, forged);
                assert_int_equal(do_register(c, NULL, NULL, &r), 401);
                assert_non_null(strstr(r.message, "signature does not match"));
        }
        /* expired token */
        {
                _cleanup_(dps_response_done) DpsResponse r = {};
                c = connect_as(s, 2, expired);
                assert_int_equal(do_register(c, NULL, NULL, &r), 401);
                assert_non_null(strstr(r.message, "expired"));
        }
        /* a newer challenge replaces the older key */
        {
                _cleanup_(dps_response_done) DpsResponse ch = {}, r = {};
                c = connect_as(s, 1, NULL);
                assert_int_equal(do_register(c, ek_b64, srk_b64, &ch), 401);
                c = connect_as(s, 2, old);
                assert_int_equal(do_register(c, NULL, NULL, &r), 401);
                assert_non_null(strstr(r.message, "signature does not match"));
        }
        /* the challenge expires */
        {
                _cleanup_(dps_response_done) DpsResponse ch = {}, r = {};
                _cleanup_free_ char *t = NULL;
                c = connect_as(s, 1, NULL);
                assert_int_equal(do_register(c, ek_b64, srk_b64, &ch), 401);
                t = answer_challenge(&ch, LATER + 3600);
                fake_now_usec += DPS_TPM_KEY_LIFETIME_USEC;
                c = connect_as(s, 2, t);
                assert_int_equal(do_register(c, NULL, NULL, &r), 401);
                assert_non_null(strstr(r.message, "no TPM challenge is outstanding"));
        }
}

static void test_bad_enrollment(void **state) {
        /* an enrollment whose endorsementKey is unusable: 500, the device's fault it is not */
        _cleanup_(dps_service_freep) DpsService *s = new_service("AAAA");
        _cleanup_(dps_response_done) DpsResponse r = {};
        DpsClient *c = connect_as(s, 1, NULL);
        assert_int_equal(do_register(c, ek_b64, srk_b64, &r), 500);
        assert_non_null(strstr(r.message, "no usable attestation.tpm.endorsementKey"));
}

static void test_keys_limits(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = new_service(ek_b64);
        DpsTpmKeys *k = NULL;
        DpsData *d = NULL;
        _cleanup_free_ char *msg = NULL, *json = NULL;
        const char *m = NULL;

        assert_true(asprintf(&json,
                             "{\"idScope\":\"" SCOPE "\",\"individualEnrollments\":[{\"registrationId\":\"x\","
                             "\"attestation\":{\"type\":\"tpm\",\"tpm\":{\"endorsementKey\":\"%s\"}}}]}",
                             ek_b64) > 0);
        assert_int_equal(dps_data_parse(json, strlen(json), &d, &msg), 0);
        assert_int_equal(dps_tpm_keys_new(&k), 0);
        const DpsEnrollment *e = dps_data_find_individual(d, "x");
        assert_non_null(e);
        for (unsigned i = 0; i < DPS_TPM_KEYS_MAX + 3; i++) {
                char id[32], *body = NULL;
                snprintf(id, sizeof(id), "r%u", i);
                if (i % 512 != 0 && i < DPS_TPM_KEYS_MAX - 2)
                        continue; /* RSA is slow: fill only a few, then the edge */
                assert_int_equal(dps_tpm_challenge(k, e, id, ek_b64, srk_b64, 1, &body, &m), 0);
                free(body);
        }
        assert_true(dps_tpm_keys_count(k) <= DPS_TPM_KEYS_MAX);
        assert_int_equal(dps_tpm_verify(k, "never", "x", 1, "r", 1, NULL), -ENOKEY);
        assert_int_equal(dps_tpm_verify(k, "r0", "garbage", 7, SCOPE "/registrations/r0", 1, NULL), -EBADMSG);
        dps_tpm_forget(k, "r0");
        assert_int_equal(dps_tpm_verify(k, "r0", "garbage", 7, SCOPE "/registrations/r0", 1, NULL), -ENOKEY);
        dps_tpm_keys_free(k);
        dps_data_free(d);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_flow, keys_b64_setup),
                cmocka_unit_test_setup(test_refusals, keys_b64_setup),
                cmocka_unit_test_setup(test_bad_enrollment, keys_b64_setup),
                cmocka_unit_test_setup(test_keys_limits, keys_b64_setup),
        };
        int r = cmocka_run_group_tests(tests, tpm_soft_setup, tpm_soft_teardown);
        free(ek_b64);
        free(srk_b64);
        return r;
}
