/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <limits.h>
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

static void test_base64_rfc4648(void **state) {
        /* RFC 4648 §10 */
        static const struct {
                const char *in, *out;
        } v[] = {
                { "", "" },           { "f", "Zg==" },         { "fo", "Zm8=" },         { "foo", "Zm9v" },
                { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
        };

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                _cleanup_free_ char *e = NULL;
                _cleanup_free_ uint8_t *d = NULL;
                size_t l = 99;

                assert_int_equal(base64_encode(v[i].in, strlen(v[i].in), &e), 0);
                assert_string_equal(e, v[i].out);

                assert_int_equal(base64_decode(v[i].out, strlen(v[i].out), &d, &l), 0);
                assert_int_equal(l, strlen(v[i].in));
                assert_memory_equal(d, v[i].in, l);
        }
}

static void test_base64_binary(void **state) {
        uint8_t all[256];
        for (size_t i = 0; i < sizeof(all); i++)
                all[i] = (uint8_t) i;

        for (size_t n = 0; n <= sizeof(all); n++) {
                _cleanup_free_ char *e = NULL;
                _cleanup_free_ uint8_t *d = NULL;
                size_t l = 0;

                assert_int_equal(base64_encode(all + sizeof(all) - n, n, &e), 0);
                assert_int_equal(strlen(e), (n + 2) / 3 * 4);
                assert_int_equal(base64_decode(e, strlen(e), &d, &l), 0);
                assert_int_equal(l, n);
                if (n > 0)
                        assert_memory_equal(d, all + sizeof(all) - n, n);
        }

        /* '+' and '/' of the standard alphabet */
        _cleanup_free_ char *e = NULL;
        assert_int_equal(base64_encode((const uint8_t[]) { 0xfb, 0xff }, 2, &e), 0);
        assert_string_equal(e, "+/8=");
}

static void test_base64_strict(void **state) {
        static const char *const bad[] = {
                "Zg=",       /* length */
                "Zg",        /* missing padding */
                "Zm9v\n",    /* whitespace */
                "Zm 9v",     " Zm9v",
                "Zm9v====",  /* too much padding */
                "Z===",      "Zg==Zg==", /* padding in the middle */
                "Zm=v",      "Zh==",     /* non-zero trailing bits */
                "Zm9=",      /* non-zero trailing bits with one '=' */
                "Zm9v-_8=",  /* url-safe alphabet */
                "Zm9v\x80\x80\x80\x80",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                uint8_t *d = (uint8_t *) 0x1;
                size_t l = 77;
                int r = base64_decode(bad[i], strlen(bad[i]), &d, &l);
                if (r != -EINVAL)
                        fail_msg("case %zu '%s': %d", i, bad[i], r);
                assert_ptr_equal(d, (uint8_t *) 0x1);
                assert_int_equal(l, 77);
        }

        /* len limits what is looked at */
        _cleanup_free_ uint8_t *d = NULL;
        size_t l = 0;
        assert_int_equal(base64_decode("Zm9vGARBAGE", 4, &d, &l), 0);
        assert_int_equal(l, 3);
        assert_memory_equal(d, "foo", 3);

        /* embedded NUL */
        uint8_t *x = NULL;
        assert_int_equal(base64_decode("Zm\0v", 4, &x, &l), -EINVAL);

        /* size limit */
        char *big = malloc(BASE64_MAX_INPUT + 4);
        assert_non_null(big);
        memset(big, 'A', BASE64_MAX_INPUT + 4);
        assert_int_equal(base64_decode(big, BASE64_MAX_INPUT + 4, &x, &l), -E2BIG);
        char *e = NULL;
        assert_int_equal(base64_encode(big, BASE64_MAX_INPUT + 1, &e), -E2BIG);
        assert_null(e);
        free(big);
}

static void test_base32(void **state) {
        /* RFC 4648 §10, lowercased, padding stripped */
        static const struct {
                const char *in, *out;
        } v[] = {
                { "", "" },
                { "f", "my" },
                { "fo", "mzxq" },
                { "foo", "mzxw6" },
                { "foob", "mzxw6yq" },
                { "fooba", "mzxw6ytb" },
                { "foobar", "mzxw6ytboi" },
        };

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                _cleanup_free_ char *e = NULL;
                assert_int_equal(base32_encode_lower_nopad(v[i].in, strlen(v[i].in), &e), 0);
                assert_string_equal(e, v[i].out);
        }

        /* a SHA-256 sized input gives the 52 characters of a TPM registration id */
        uint8_t h[32];
        memset(h, 0xff, sizeof(h));
        _cleanup_free_ char *e = NULL;
        assert_int_equal(base32_encode_lower_nopad(h, sizeof(h), &e), 0);
        assert_int_equal(strlen(e), 52);
        assert_string_equal(e, "777777777777777777777777777777777777777777777777777q");
}

static void test_url_encode(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;

        assert_int_equal(url_encode("0ne00000A0A/registrations/dev-1", true, &a), 0);
        assert_string_equal(a, "0ne00000A0A%2fregistrations%2fdev-1");
        assert_int_equal(url_encode("0ne00000A0A/registrations/dev-1", false, &b), 0);
        assert_string_equal(b, "0ne00000A0A%2Fregistrations%2Fdev-1");

        /* unreserved set kept, everything else encoded (incl. !'()* that encodeURIComponent keeps) */
        assert_int_equal(url_encode("aZ09-._~ +=&%!'()*\xc3\xa9", false, &c), 0);
        assert_string_equal(c, "aZ09-._~%20%2B%3D%26%25%21%27%28%29%2A%C3%A9");

        assert_int_equal(url_encode("", false, &d), 0);
        assert_string_equal(d, "");

        assert_int_equal(url_encode("d0v1ROtrJfDl1lL+6Gm6mCyZUBsvFsT3HgNEOWfYmE0=", false, &e), 0);
        assert_string_equal(e, "d0v1ROtrJfDl1lL%2B6Gm6mCyZUBsvFsT3HgNEOWfYmE0%3D");
}

static void test_url_decode(void **state) {
        static const struct {
                const char *in, *out;
        } good[] = {
                { "", "" },
                { "abc", "abc" },
                { "a%2fb%2Fc", "a/b/c" },
                { "a+b", "a+b" }, /* '+' is literal */
                { "%C3%a9", "\xc3\xa9" },
                { "%25", "%" },
                { "%2525", "%25" }, /* decoded once */
                { "azure-iot-device-provisioning-py%2F2.14.0%283.11.2%3BLinux%206.1.0%3Bx86_64%29",
                  "azure-iot-device-provisioning-py/2.14.0(3.11.2;Linux 6.1.0;x86_64)" },
        };
        static const char *const bad[] = {
                "%", "%2", "a%2", "%zz", "%2g", "%g2", "%00", "a%00b", "%%41",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_free_ char *d = NULL;
                assert_int_equal(url_decode(good[i].in, strlen(good[i].in), &d), 0);
                assert_string_equal(d, good[i].out);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *d = (char *) 0x1;
                int r = url_decode(bad[i], strlen(bad[i]), &d);
                if (r != -EINVAL)
                        fail_msg("case %zu '%s': %d", i, bad[i], r);
                assert_ptr_equal(d, (char *) 0x1);
        }

        /* length-bounded and NUL-checked */
        _cleanup_free_ char *d = NULL;
        assert_int_equal(url_decode("ab%41zz", 5, &d), 0);
        assert_string_equal(d, "abA");
        char *x = NULL;
        assert_int_equal(url_decode("ab\0cd", 5, &x), -EINVAL);
        assert_int_equal(url_decode("ab%4", 3, &x), -EINVAL);

        /* round trip of every byte */
        char all[256];
        for (int i = 1; i < 256; i++)
                all[i - 1] = (char) i;
        all[255] = 0;
        _cleanup_free_ char *enc = NULL, *dec = NULL;
        assert_int_equal(url_encode(all, true, &enc), 0);
        assert_int_equal(url_decode(enc, strlen(enc), &dec), 0);
        assert_string_equal(dec, all);
}

static void test_memeq_consttime(void **state) {
        assert_true(memeq_consttime("abcd", "abcd", 4));
        assert_false(memeq_consttime("abcd", "abce", 4));
        assert_false(memeq_consttime("xbcd", "abcd", 4));
        assert_true(memeq_consttime("abcd", "abce", 3));
        assert_true(memeq_consttime("a", "b", 0));
}

static void test_hmac_sha256(void **state) {
        uint8_t mac[32];
        _cleanup_free_ char *hex = NULL, *hex2 = NULL, *hex3 = NULL;

        /* RFC 4231 test case 2 */
        assert_int_equal(hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac), 0);
        assert_int_equal(hex_encode(mac, sizeof(mac), &hex), 0);
        assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

        /* RFC 4231 test case 1 */
        uint8_t key[20];
        memset(key, 0x0b, sizeof(key));
        assert_int_equal(hmac_sha256(key, sizeof(key), "Hi There", 8, mac), 0);
        assert_int_equal(hex_encode(mac, sizeof(mac), &hex2), 0);
        assert_string_equal(hex2, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

        /* empty message */
        assert_int_equal(hmac_sha256("key", 3, NULL, 0, mac), 0);
        assert_int_equal(hex_encode(mac, sizeof(mac), &hex3), 0);
        assert_string_equal(hex3, "5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0");

        assert_int_equal(hmac_sha256(NULL, 3, "x", 1, mac), -EINVAL);
        assert_int_equal(hmac_sha256("k", 1, NULL, 1, mac), -EINVAL);
}

static void test_hex_encode(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL;

        assert_int_equal(hex_encode((const uint8_t[]) { 0x00, 0x01, 0xab, 0xff }, 4, &a), 0);
        assert_string_equal(a, "0001abff");
        assert_int_equal(hex_encode(NULL, 0, &b), 0);
        assert_string_equal(b, "");
}

static void test_random_bytes(void **state) {
        uint8_t a[32] = {}, b[32] = {}, zero[32] = {};

        assert_int_equal(random_bytes(a, sizeof(a)), 0);
        assert_int_equal(random_bytes(b, sizeof(b)), 0);
        /* 2^-256 chance of a false failure */
        assert_memory_not_equal(a, zero, sizeof(a));
        assert_memory_not_equal(a, b, sizeof(a));
        assert_int_equal(random_bytes(NULL, 0), 0);
        assert_int_equal(random_bytes(NULL, 1), -EINVAL);
}

static void test_parse_uint_range(void **state) {
        unsigned v = 7;
        assert_int_equal(parse_uint_range("0", 0, 10, &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(parse_uint_range("10", 1, 10, &v), 0);
        assert_int_equal(v, 10);
        v = 7;
        assert_int_equal(parse_uint_range("11", 1, 10, &v), -EINVAL);
        assert_int_equal(parse_uint_range("0", 1, 10, &v), -EINVAL);
        assert_int_equal(parse_uint_range("-1", 0, 10, &v), -EINVAL);
        assert_int_equal(parse_uint_range("+1", 0, 10, &v), -EINVAL);
        assert_int_equal(parse_uint_range(" 1", 0, 10, &v), -EINVAL);
        assert_int_equal(parse_uint_range("1x", 0, 10, &v), -EINVAL);
        assert_int_equal(parse_uint_range("", 0, 10, &v), -EINVAL);
        assert_int_equal(parse_uint_range(NULL, 0, 10, &v), -EINVAL);
        assert_int_equal(parse_uint_range("99999999999999999999", 0, UINT_MAX, &v), -EINVAL);
        assert_int_equal(v, 7);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_base64_rfc4648), cmocka_unit_test(test_base64_binary),
                cmocka_unit_test(test_base64_strict),  cmocka_unit_test(test_base32),
                cmocka_unit_test(test_url_encode),     cmocka_unit_test(test_url_decode),
                cmocka_unit_test(test_memeq_consttime), cmocka_unit_test(test_hmac_sha256),
                cmocka_unit_test(test_hex_encode),     cmocka_unit_test(test_random_bytes),
                cmocka_unit_test(test_parse_uint_range),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
