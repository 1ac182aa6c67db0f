/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "edgeprov/codec.h"
#include "edgeprov/macro.h"
#include "edgeprov/sas.h"

/* dps-protocol.md §4.1–4.3 */
#define GROUP_KEY "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
#define REG_ID "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
#define DEVICE_KEY "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
#define SCOPE "0ne00000A0A"
#define RESOURCE SCOPE "/registrations/" REG_ID
#define SR_LOWER SCOPE "%2fregistrations%2f" REG_ID
#define SR_UPPER SCOPE "%2Fregistrations%2F" REG_ID
#define EXPIRY 1700000000
#define SIG_LOWER "d0v1ROtrJfDl1lL+6Gm6mCyZUBsvFsT3HgNEOWfYmE0="
#define SIG_UPPER "t6/8JHWQuQgM9mXdYf/uIqa3dKECOEk9Rr4WrFV19q0="
#define TOKEN                                                                                                  \
        "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000" \
        "&skn=registration"
#define HUB_RESOURCE "myhub.azure-devices.net/devices/" REG_ID
#define HUB_SIG "iAl/y6W9a2RRhQlcx61OnA21/9c+R9J1K37WXAZDktE="

static uint8_t device_key[32];
static size_t device_key_len;

static int setup(void **state) {
        _cleanup_free_ uint8_t *k = NULL;
        size_t l = 0;
        if (base64_decode(DEVICE_KEY, strlen(DEVICE_KEY), &k, &l) < 0 || l != sizeof(device_key))
                return -1;
        memcpy(device_key, k, l);
        device_key_len = l;
        return 0;
}

/* base64(HMAC(device key, sts)) */
static char *sign_b64(const char *sts) {
        uint8_t mac[32];
        char *b64 = NULL;
        assert_int_equal(hmac_sha256(device_key, device_key_len, sts, strlen(sts), mac), 0);
        assert_int_equal(base64_encode(mac, sizeof(mac), &b64), 0);
        return b64;
}

/* url-encoded base64(HMAC(device key, sr "\n" se)) */
static char *sign_enc(const char *sr, const char *se) {
        _cleanup_free_ char *sts = NULL, *b64 = NULL;
        char *enc = NULL;
        assert_true(asprintf(&sts, "%s\n%s", sr, se) > 0);
        b64 = sign_b64(sts);
        assert_int_equal(url_encode(b64, false, &enc), 0);
        return enc;
}

static void test_derive_device_key(void **state) {
        _cleanup_free_ char *k = NULL;

        assert_int_equal(sas_derive_device_key(GROUP_KEY, REG_ID, &k), 0);
        assert_string_equal(k, DEVICE_KEY);

        _cleanup_free_ char *k2 = NULL;
        assert_int_equal(sas_derive_device_key(GROUP_KEY, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f7", &k2), 0);
        assert_string_not_equal(k2, DEVICE_KEY);

        char *x = (char *) 0x1;
        assert_int_equal(sas_derive_device_key("not base64!", REG_ID, &x), -EINVAL);
        assert_int_equal(sas_derive_device_key(GROUP_KEY, "", &x), -EINVAL);
        assert_int_equal(sas_derive_device_key("", REG_ID, &x), -EINVAL);
        assert_ptr_equal(x, (char *) 0x1);
}

static void test_string_to_sign(void **state) {
        _cleanup_free_ char *sr = NULL, *sts = NULL, *b64 = NULL;

        assert_int_equal(sas_string_to_sign(RESOURCE, EXPIRY, &sr, &sts), 0);
        assert_string_equal(sr, SR_LOWER);
        assert_string_equal(sts, SR_LOWER "\n1700000000");

        b64 = sign_b64(sts);
        assert_string_equal(b64, SIG_LOWER);
}

static void test_uppercase_signature(void **state) {
        _cleanup_free_ char *b64 = sign_b64(SR_UPPER "\n1700000000");
        assert_string_equal(b64, SIG_UPPER);
}

static void test_token_build_exact(void **state) {
        _cleanup_free_ char *t1 = NULL, *t2 = NULL, *t3 = NULL;

        assert_int_equal(sas_token_build_b64(DEVICE_KEY, RESOURCE, EXPIRY, SAS_DEFAULT_KEY_NAME, &t1), 0);
        assert_string_equal(t1, TOKEN);

        assert_int_equal(sas_token_build(device_key, device_key_len, RESOURCE, EXPIRY, "registration", &t2), 0);
        assert_string_equal(t2, TOKEN);

        /* the same via the pieces */
        _cleanup_free_ uint8_t *sig = NULL;
        size_t sig_len = 0;
        assert_int_equal(base64_decode(SIG_LOWER, strlen(SIG_LOWER), &sig, &sig_len), 0);
        assert_int_equal(sig_len, 32);
        assert_int_equal(sas_token_format(SR_LOWER, sig, EXPIRY, "registration", &t3), 0);
        assert_string_equal(t3, TOKEN);

        char *x = (char *) 0x1;
        assert_int_equal(sas_token_build_b64("Jsm0ly!!", RESOURCE, EXPIRY, NULL, &x), -EINVAL);
        assert_int_equal(sas_token_build_b64(DEVICE_KEY, "", EXPIRY, NULL, &x), -EINVAL);
        assert_int_equal(sas_token_build(device_key, 0, RESOURCE, EXPIRY, NULL, &x), -EINVAL);
        assert_ptr_equal(x, (char *) 0x1);
}

static void test_hub_token(void **state) {
        _cleanup_free_ char *t = NULL;

        assert_int_equal(sas_token_build_b64(DEVICE_KEY, HUB_RESOURCE, EXPIRY, NULL, &t), 0);
        assert_string_equal(t, "SharedAccessSignature sr=myhub.azure-devices.net%2fdevices%2f" REG_ID
                               "&sig=iAl%2Fy6W9a2RRhQlcx61OnA21%2F9c%2BR9J1K37WXAZDktE%3D&se=1700000000");

        _cleanup_free_ char *b64 = sign_b64("myhub.azure-devices.net%2fdevices%2f" REG_ID "\n1700000000");
        assert_string_equal(b64, HUB_SIG);

        _cleanup_(sas_token_done) SasToken tok = {};
        assert_int_equal(sas_token_parse(t, strlen(t), &tok), 0);
        assert_null(tok.skn);
        assert_int_equal(sas_token_verify(&tok, device_key, device_key_len, HUB_RESOURCE, EXPIRY - 1), 0);
}

static void test_parse_exact_token(void **state) {
        _cleanup_(sas_token_done) SasToken t = {};
        _cleanup_free_ uint8_t *sig = NULL;
        size_t sig_len = 0;

        assert_int_equal(sas_token_parse(TOKEN, strlen(TOKEN), &t), 0);
        assert_string_equal(t.sr_raw, SR_LOWER);
        assert_string_equal(t.resource, RESOURCE);
        assert_string_equal(t.se_raw, "1700000000");
        assert_string_equal(t.skn, "registration");
        assert_true(t.expiry == UINT64_C(1700000000));
        assert_int_equal(base64_decode(SIG_LOWER, strlen(SIG_LOWER), &sig, &sig_len), 0);
        assert_memory_equal(t.sig, sig, 32);

        /* len bounds the parse: a shorter len cuts the skn */
        _cleanup_(sas_token_done) SasToken t2 = {};
        assert_int_equal(sas_token_parse(TOKEN, strlen(TOKEN) - strlen("&skn=registration"), &t2), 0);
        assert_null(t2.skn);
}

static void test_verify(void **state) {
        _cleanup_(sas_token_done) SasToken t = {};

        assert_int_equal(sas_token_parse(TOKEN, strlen(TOKEN), &t), 0);

        /* good, case-insensitive resource match */
        assert_int_equal(sas_token_verify(&t, device_key, device_key_len, RESOURCE, EXPIRY - 1), 0);
        assert_int_equal(sas_token_verify(&t, device_key, device_key_len,
                                          "0NE00000a0a/REGISTRATIONS/SN-007-888-abc-mac-a1-b2-c3-d4-e5-f6", 0),
                         0);

        /* expired: se <= now */
        assert_int_equal(sas_token_verify(&t, device_key, device_key_len, RESOURCE, EXPIRY), -EKEYEXPIRED);
        assert_int_equal(sas_token_verify(&t, device_key, device_key_len, RESOURCE, EXPIRY + 3600), -EKEYEXPIRED);

        /* wrong resource */
        assert_int_equal(sas_token_verify(&t, device_key, device_key_len, SCOPE "/registrations/other", 0), -EBADR);
        assert_int_equal(sas_token_verify(&t, device_key, device_key_len, "0ne00000A0B/registrations/" REG_ID, 0),
                         -EBADR);
        assert_int_equal(sas_token_verify(&t, device_key, device_key_len, RESOURCE "x", 0), -EBADR);

        /* wrong key */
        uint8_t other[32];
        memcpy(other, device_key, sizeof(other));
        other[0] ^= 1;
        assert_int_equal(sas_token_verify(&t, other, sizeof(other), RESOURCE, 0), -EKEYREJECTED);
        assert_int_equal(sas_token_verify(&t, device_key, device_key_len - 1, RESOURCE, 0), -EKEYREJECTED);

        /* bad arguments */
        assert_int_equal(sas_token_verify(&t, device_key, 0, RESOURCE, 0), -EINVAL);
        assert_int_equal(sas_token_verify(&t, NULL, 32, RESOURCE, 0), -EINVAL);
        assert_int_equal(sas_token_verify(&t, device_key, device_key_len, NULL, 0), -EINVAL);
        SasToken empty = {};
        assert_int_equal(sas_token_verify(&empty, device_key, device_key_len, RESOURCE, 0), -EINVAL);
}

static void test_tampered(void **state) {
        /* flipped signature bit: 'd0v1' → 'd0v2' */
        static const char sig_tampered[] = "SharedAccessSignature sr=" SR_LOWER
                                           "&sig=d0v2ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000&skn=registration";
        /* expiry moved, signature kept */
        static const char se_tampered[] = "SharedAccessSignature sr=" SR_LOWER
                                          "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1800000000&skn=registration";
        /* resource re-encoded uppercase, signature kept (the HMAC is over sr as sent) */
        static const char sr_tampered[] = "SharedAccessSignature sr=" SR_UPPER
                                          "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000&skn=registration";
        /* same expiry with a leading zero: still the number, but not the string signed */
        static const char se_zero[] = "SharedAccessSignature sr=" SR_LOWER
                                      "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=01700000000&skn=registration";
        const char *cases[] = { sig_tampered, se_tampered, sr_tampered, se_zero };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(sas_token_done) SasToken t = {};
                assert_int_equal(sas_token_parse(cases[i], strlen(cases[i]), &t), 0);
                assert_int_equal(sas_token_verify(&t, device_key, device_key_len, RESOURCE, 0), -EKEYREJECTED);
        }
}

static void test_uppercase_sr_token(void **state) {
        /* .NET / Python / Node TPM: uppercase %2F, signed as such */
        static const char tok[] = "SharedAccessSignature sr=" SR_UPPER
                                  "&sig=t6%2F8JHWQuQgM9mXdYf%2FuIqa3dKECOEk9Rr4WrFV19q0%3D&se=1700000000&skn=registration";

        _cleanup_(sas_token_done) SasToken t = {};
        assert_int_equal(sas_token_parse(tok, strlen(tok), &t), 0);
        assert_string_equal(t.sr_raw, SR_UPPER);
        assert_string_equal(t.resource, RESOURCE);
        assert_int_equal(sas_token_verify(&t, device_key, device_key_len, RESOURCE, EXPIRY - 100), 0);
}

static void test_node_unencoded_sr(void **state) {
        /* Node symmetric key: sr not encoded at all, order sr, sig, skn, se */
        _cleanup_free_ char *sig = sign_enc(RESOURCE, "1700000000"), *tok = NULL;
        assert_true(asprintf(&tok, "SharedAccessSignature sr=%s&sig=%s&skn=registration&se=1700000000", RESOURCE, sig) >
                    0);

        _cleanup_(sas_token_done) SasToken t = {};
        assert_int_equal(sas_token_parse(tok, strlen(tok), &t), 0);
        assert_string_equal(t.sr_raw, RESOURCE);
        assert_string_equal(t.resource, RESOURCE);
        assert_string_equal(t.skn, "registration");
        assert_int_equal(sas_token_verify(&t, device_key, device_key_len, RESOURCE, EXPIRY - 1), 0);
        assert_int_equal(sas_token_verify(&t, device_key, device_key_len, RESOURCE, EXPIRY), -EKEYEXPIRED);
}

static void test_python_no_skn(void **state) {
        /* Python: quote(uri, safe="") uppercase, no skn */
        _cleanup_free_ char *sig = sign_enc(SR_UPPER, "1700000000"), *tok = NULL;
        assert_true(asprintf(&tok, "SharedAccessSignature sr=%s&sig=%s&se=1700000000", SR_UPPER, sig) > 0);

        _cleanup_(sas_token_done) SasToken t = {};
        assert_int_equal(sas_token_parse(tok, strlen(tok), &t), 0);
        assert_null(t.skn);
        assert_int_equal(sas_token_verify(&t, device_key, device_key_len, RESOURCE, EXPIRY - 1), 0);
}

static void test_field_orders(void **state) {
        static const char *const orders[] = {
                "SharedAccessSignature se=1700000000&skn=registration&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&sr=" SR_LOWER,
                "SharedAccessSignature sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&sr=" SR_LOWER "&se=1700000000",
                "SharedAccessSignature skn=registration&sr=" SR_LOWER "&se=1700000000&sig=d0v1ROtrJfDl1lL%2b6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3d",
                /* unencoded '+' in sig is a literal '+' */
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL+6Gm6mCyZUBsvFsT3HgNEOWfYmE0=&se=1700000000",
                /* unknown fields are ignored */
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL+6Gm6mCyZUBsvFsT3HgNEOWfYmE0=&se=1700000000&foo=bar",
                /* a key name other than "registration" is for the caller to judge */
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL+6Gm6mCyZUBsvFsT3HgNEOWfYmE0=&se=1700000000&skn=my%20key",
        };

        for (size_t i = 0; i < ELEMENTSOF(orders); i++) {
                _cleanup_(sas_token_done) SasToken t = {};
                assert_int_equal(sas_token_parse(orders[i], strlen(orders[i]), &t), 0);
                assert_string_equal(t.sr_raw, SR_LOWER);
                assert_int_equal(sas_token_verify(&t, device_key, device_key_len, RESOURCE, 0), 0);
                if (i == 5)
                        assert_string_equal(t.skn, "my key");
        }
}

static void test_duplicates(void **state) {
        static const char *const bad[] = {
                TOKEN "&sr=" SR_LOWER,
                TOKEN "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D",
                TOKEN "&se=1700000000",
                TOKEN "&skn=registration",
                TOKEN "&skn=other",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                SasToken t = { .sr_raw = (char *) 0x1 };
                assert_int_equal(sas_token_parse(bad[i], strlen(bad[i]), &t), -EINVAL);
                assert_ptr_equal(t.sr_raw, (char *) 0x1); /* untouched on failure */
        }
}

static void test_garbage(void **state) {
        static const char *const bad[] = {
                "",
                "SharedAccessSignature",
                "SharedAccessSignature ",
                "sharedaccesssignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000",
                "SharedAccessSignature  sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000",
                "sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000",
                /* missing fields */
                "SharedAccessSignature sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000",
                "SharedAccessSignature sr=" SR_LOWER "&se=1700000000",
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D",
                /* empty values */
                "SharedAccessSignature sr=&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000",
                "SharedAccessSignature sr=" SR_LOWER "&sig=&se=1700000000",
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=",
                /* bad expiry */
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=-1",
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=+1700000000",
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000.5",
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=18446744073709551616",
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000 ",
                /* bad signatures */
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE%3D&se=1700000000",
                "SharedAccessSignature sr=" SR_LOWER "&sig=AAAA&se=1700000000",
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D%3D&se=1700000000",
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3&se=1700000000",
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL 6Gm6mCyZUBsvFsT3HgNEOWfYmE0=&se=1700000000",
                /* bad escapes in sr, %00 */
                "SharedAccessSignature sr=0ne00000A0A%2gregistrations&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000",
                "SharedAccessSignature sr=0ne00000A0A%00&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000",
                "SharedAccessSignature sr=0ne00000A0A%&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000",
                /* structure */
                TOKEN "&",
                "SharedAccessSignature &" SR_LOWER,
                "SharedAccessSignature sr=" SR_LOWER "&&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000",
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000&skn",
                "SharedAccessSignature sr=" SR_LOWER "&sig=d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D&se=1700000000&=x",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                SasToken t = {};
                int r = sas_token_parse(bad[i], strlen(bad[i]), &t);
                if (r != -EINVAL)
                        fail_msg("case %zu '%s': %d", i, bad[i], r);
                assert_null(t.sr_raw);
        }

        /* embedded NUL */
        char nul[] = TOKEN;
        nul[30] = 0;
        SasToken t = {};
        assert_int_equal(sas_token_parse(nul, sizeof(nul) - 1, &t), -EINVAL);

        /* too long */
        _cleanup_free_ char *big = malloc(SAS_TOKEN_MAX + 2);
        assert_non_null(big);
        memset(big, 'a', SAS_TOKEN_MAX + 1);
        memcpy(big, TOKEN "&foo=", strlen(TOKEN "&foo="));
        big[SAS_TOKEN_MAX + 1] = 0;
        assert_int_equal(sas_token_parse(big, SAS_TOKEN_MAX + 1, &t), -E2BIG);
        /* exactly at the limit is fine (the unknown field is ignored) */
        big[SAS_TOKEN_MAX] = 0;
        assert_int_equal(sas_token_parse(big, SAS_TOKEN_MAX, &t), 0);
        assert_string_equal(t.skn, "registration");
        sas_token_done(&t);
        assert_null(t.sr_raw);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_derive_device_key),
                cmocka_unit_test(test_string_to_sign),
                cmocka_unit_test(test_uppercase_signature),
                cmocka_unit_test(test_token_build_exact),
                cmocka_unit_test(test_hub_token),
                cmocka_unit_test(test_parse_exact_token),
                cmocka_unit_test(test_verify),
                cmocka_unit_test(test_tampered),
                cmocka_unit_test(test_uppercase_sr_token),
                cmocka_unit_test(test_node_unencoded_sr),
                cmocka_unit_test(test_python_no_skn),
                cmocka_unit_test(test_field_orders),
                cmocka_unit_test(test_duplicates),
                cmocka_unit_test(test_garbage),
        };
        return cmocka_run_group_tests(tests, setup, NULL);
}
