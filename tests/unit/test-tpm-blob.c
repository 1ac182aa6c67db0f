/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "edgeprov/codec.h"
#include "edgeprov/macro.h"
#include "edgeprov/tpm-blob.h"

#include "tpm-soft.h"

static void test_kdfa_known_answer(void **state) {
        /* expected values from OpenSSL's independent SP 800-108 KBKDF (counter mode, HMAC-SHA256):
         *   openssl kdf -keylen 16 -kdfopt digest:SHA256 -kdfopt mac:HMAC -kdfopt hexkey:0001..1f
         *               -kdfopt salt:STORAGE -kdfopt hexinfo:000b00112233 KBKDF */
        uint8_t key[32], out[40];
        static const uint8_t ctx[] = { 0x00, 0x0b, 0x00, 0x11, 0x22, 0x33 };
        static const uint8_t exp16[16] = { 0x5C, 0x91, 0xBF, 0x77, 0xBA, 0xAC, 0x0A, 0x14,
                                           0x23, 0xBC, 0xF7, 0x47, 0xDC, 0x82, 0x77, 0x69 };
        static const uint8_t exp40[40] = { 0x5D, 0x66, 0x7F, 0x96, 0x85, 0x5D, 0xF2, 0x60, 0x8A, 0x69,
                                           0x8B, 0xFB, 0x88, 0x24, 0xB1, 0x26, 0x87, 0x23, 0xB3, 0xE1,
                                           0x0F, 0x4D, 0xD1, 0x4C, 0xED, 0x38, 0x99, 0xB1, 0x62, 0xE3,
                                           0xE9, 0x39, 0xC5, 0xD5, 0xFC, 0x37, 0x5E, 0x5A, 0x91, 0x6F };
        for (size_t i = 0; i < 32; i++)
                key[i] = i;
        assert_int_equal(tpm_kdfa_sha256(key, 32, "STORAGE", ctx, sizeof(ctx), NULL, 0, 128, out), 0);
        assert_memory_equal(out, exp16, 16);
        /* context split over U and V is the same bytes */
        assert_int_equal(tpm_kdfa_sha256(key, 32, "STORAGE", ctx, 2, ctx + 2, 4, 128, out), 0);
        assert_memory_equal(out, exp16, 16);
        /* two HMAC rounds, truncated */
        assert_int_equal(tpm_kdfa_sha256(key, 32, "INTEGRITY", NULL, 0, NULL, 0, 320, out), 0);
        assert_memory_equal(out, exp40, 40);
        assert_int_equal(tpm_kdfa_sha256(key, 32, NULL, NULL, 0, NULL, 0, 128, out), -EINVAL);
        assert_int_equal(tpm_kdfa_sha256(key, 32, "X", NULL, 0, NULL, 0, 0, out), -EINVAL);
}

static void test_hmac_public_known_answer(void **state) {
        /* step A with seedValue = 0x00.., key = 0x11..: 80 bytes (§6.8 says 78, but its own field 5 is 2+80), the constant header and
         * unique = SHA-256(seed || key) */
        uint8_t seed[32] = {}, key[32], pub[128], exp_unique[32], buf[64];
        size_t len;
        static const uint8_t head[] = { 0x00, 0x08, 0x00, 0x0b, 0x00, 0x04, 0x04, 0x40, 0x00, 0x20, 0xbe, 0xf5 };
        memset(key, 0x11, sizeof(key));
        assert_int_equal(tpm_hmac_key_public(seed, key, sizeof(key), pub, &len), 0);
        assert_int_equal(len, 80);
        assert_memory_equal(pub, head, sizeof(head));
        assert_int_equal(pub[42], 0x00);
        assert_int_equal(pub[43], 0x05); /* HMAC */
        memcpy(buf, seed, 32);
        memcpy(buf + 32, key, 32);
        assert_non_null(EVP_Digest(buf, 64, exp_unique, NULL, EVP_sha256(), NULL));
        assert_memory_equal(pub + 48, exp_unique, 32);
        assert_int_equal(tpm_hmac_key_public(seed, key, 0, pub, &len), -EINVAL);
        assert_int_equal(tpm_hmac_key_public(seed, key, 65, pub, &len), -EINVAL);
}

static void test_public_parse(void **state) {
        TpmRsaPublic p, q;
        uint8_t buf[TPM2B_PUBLIC_MAX + 8], name[34], exp_name[34];

        assert_int_equal(tpm_rsa_public_parse(ek_pub, ek_pub_len, &p), 0);
        assert_int_equal(ek_pub_len, 2 + 314); /* the TCG EK template size (platform-notes B: 316 bytes) */
        assert_int_equal(p.key_bits, 2048);
        assert_int_equal(p.exponent, 65537);
        assert_int_equal(p.attributes, 0x000300B2);
        assert_int_equal(p.modulus_len, 256);
        assert_int_equal(tpm_public_name(&p, name), 0);
        exp_name[0] = 0;
        exp_name[1] = 0x0b;
        assert_non_null(EVP_Digest(ek_pub + 2, ek_pub_len - 2, exp_name + 2, NULL, EVP_sha256(), NULL));
        assert_memory_equal(name, exp_name, 34);

        assert_int_equal(tpm_rsa_public_parse(srk_pub, srk_pub_len, &q), 0);
        assert_false(tpm_rsa_public_same_key(&p, &q));
        assert_true(tpm_rsa_public_same_key(&p, &p));

        /* the same key with other attributes is the same key */
        memcpy(buf, ek_pub, ek_pub_len);
        buf[7] ^= 0x40; /* userWithAuth */
        assert_int_equal(tpm_rsa_public_parse(buf, ek_pub_len, &q), 0);
        assert_true(tpm_rsa_public_same_key(&p, &q));

        /* truncated at every length, trailing byte, size header lies */
        for (size_t l = 0; l < ek_pub_len; l++)
                assert_int_equal(tpm_rsa_public_parse(ek_pub, l, &q), -EINVAL);
        memcpy(buf, ek_pub, ek_pub_len);
        buf[ek_pub_len] = 0;
        assert_int_equal(tpm_rsa_public_parse(buf, ek_pub_len + 1, &q), -EINVAL);
        assert_int_equal(tpm_rsa_public_parse(buf, TPM2B_PUBLIC_MAX + 1, &q), -E2BIG);
        buf[1]++;
        assert_int_equal(tpm_rsa_public_parse(buf, ek_pub_len, &q), -EINVAL);

        /* not a restricted decryption key; not RSA; wrong nameAlg; wrong symmetric */
        memcpy(buf, ek_pub, ek_pub_len);
        buf[5] = 0x04; /* attributes byte 2: drop decrypt (0x00020000) */
        assert_int_equal(tpm_rsa_public_parse(buf, ek_pub_len, &q), -EOPNOTSUPP);
        memcpy(buf, ek_pub, ek_pub_len);
        buf[3] = 0x23; /* ECC */
        assert_int_equal(tpm_rsa_public_parse(buf, ek_pub_len, &q), -EOPNOTSUPP);
        memcpy(buf, ek_pub, ek_pub_len);
        buf[5] = 0x04;
        buf[5] = 0x03;
        buf[4 + 1] = 0x0c; /* nameAlg SHA-384 */
        assert_int_equal(tpm_rsa_public_parse(buf, ek_pub_len, &q), -EOPNOTSUPP);
        memcpy(buf, ek_pub, ek_pub_len);
        buf[2 + 8 + 2 + 32 + 3] = 0x00; /* keyBits of AES 128 -> 0x0000 */
        buf[2 + 8 + 2 + 32 + 2] = 0x01; /* 256 */
        assert_int_equal(tpm_rsa_public_parse(buf, ek_pub_len, &q), -EOPNOTSUPP);
        /* a modulus larger than the limit */
        assert_int_equal(tpm_rsa_public_parse(NULL, 0, &q), -EINVAL);
}

static void test_blob_roundtrip(void **state) {
        TpmRsaPublic ek, srk;
        uint8_t key[64], got[64];
        size_t got_len = 0;

        assert_int_equal(tpm_rsa_public_parse(ek_pub, ek_pub_len, &ek), 0);
        assert_int_equal(tpm_rsa_public_parse(srk_pub, srk_pub_len, &srk), 0);
        for (size_t kl = 1; kl <= 64; kl += 31) {
                _cleanup_free_ uint8_t *blob = NULL;
                size_t len;
                assert_int_equal(random_bytes(key, kl), 0);
                assert_int_equal(tpm_blob_make(&ek, &srk, key, kl, NULL, &blob, &len), 0);
                if (kl == 32)
                        assert_int_equal(len, 798); /* dps-protocol.md §6.9 */
                assert_int_equal(soft_open(blob, len, got, &got_len), OPEN_OK);
                assert_int_equal(got_len, kl);
                assert_memory_equal(got, key, kl);
        }
        assert_int_equal(tpm_blob_make(&ek, &srk, key, 0, NULL, &(uint8_t *) { NULL }, &got_len), -EINVAL);
        assert_int_equal(tpm_blob_make(&ek, &srk, key, 65, NULL, &(uint8_t *) { NULL }, &got_len), -EINVAL);
}

static void test_blob_seeds_deterministic(void **state) {
        /* with fixed seeds the symmetric parts (fields 1, 3, 5) repeat; OAEP (2, 4) does not */
        TpmRsaPublic ek, srk;
        TpmBlobSeeds s;
        uint8_t key[32];
        _cleanup_free_ uint8_t *a = NULL, *b = NULL;
        size_t al, bl;
        TpmBlobFields fa, fb;

        memset(&s, 0x5a, sizeof(s));
        memset(key, 0xa5, sizeof(key));
        assert_int_equal(tpm_rsa_public_parse(ek_pub, ek_pub_len, &ek), 0);
        assert_int_equal(tpm_rsa_public_parse(srk_pub, srk_pub_len, &srk), 0);
        assert_int_equal(tpm_blob_make(&ek, &srk, key, 32, &s, &a, &al), 0);
        assert_int_equal(tpm_blob_make(&ek, &srk, key, 32, &s, &b, &bl), 0);
        assert_int_equal(al, bl);
        assert_int_equal(tpm_blob_split(a, al, &fa), 0);
        assert_int_equal(tpm_blob_split(b, bl, &fb), 0);
        assert_memory_equal(fa.credential_blob.data, fb.credential_blob.data, fa.credential_blob.len);
        assert_memory_equal(fa.duplicate.data, fb.duplicate.data, fa.duplicate.len);
        assert_memory_equal(fa.object_public.data, fb.object_public.data, fa.object_public.len);
        assert_memory_not_equal(fa.secret.data, fb.secret.data, fa.secret.len);
        assert_int_equal(fa.credential_blob.len, 2 + 52);
        assert_int_equal(fa.secret.len, 2 + 256);
        assert_int_equal(fa.duplicate.len, 2 + 142);
        assert_int_equal(fa.sym_seed.len, 2 + 256);
        assert_int_equal(fa.object_public.len, 2 + 80);
        assert_int_equal(fa.uri_data.len, 2);
}

static void test_blob_tampered(void **state) {
        TpmRsaPublic ek, srk;
        uint8_t key[32], got[64];
        size_t len, got_len;
        _cleanup_free_ uint8_t *blob = NULL;
        TpmBlobFields f;

        assert_int_equal(tpm_rsa_public_parse(ek_pub, ek_pub_len, &ek), 0);
        assert_int_equal(tpm_rsa_public_parse(srk_pub, srk_pub_len, &srk), 0);
        memset(key, 7, sizeof(key));
        assert_int_equal(tpm_blob_make(&ek, &srk, key, 32, NULL, &blob, &len), 0);
        assert_int_equal(tpm_blob_split(blob, len, &f), 0);

        struct {
                const TpmBlobSlice *field;
                size_t off;
                int expect;
        } cases[] = {
                { &f.credential_blob, 10, OPEN_CRED_HMAC }, /* integrity HMAC */
                { &f.credential_blob, 40, OPEN_CRED_HMAC }, /* encIdentity */
                { &f.secret, 100, OPEN_SECRET },
                { &f.duplicate, 10, OPEN_OUTER_HMAC },
                { &f.duplicate, 100, OPEN_OUTER_HMAC },
                { &f.sym_seed, 100, OPEN_SEED },
                { &f.object_public, 60, OPEN_OUTER_HMAC }, /* changes the object's Name */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                size_t at = cases[i].field->data - blob + cases[i].off;
                blob[at] ^= 0x01;
                assert_int_equal(soft_open(blob, len, got, &got_len), cases[i].expect);
                blob[at] ^= 0x01;
        }
        assert_int_equal(soft_open(blob, len, got, &got_len), OPEN_OK);

        /* a credential bound to another SRK name cannot be activated */
        uint8_t other[TPM2B_PUBLIC_MAX];
        size_t other_len = key_to_public(ek_key, 0x00030472, NULL, 0, other);
        TpmRsaPublic wrong;
        _cleanup_free_ uint8_t *blob2 = NULL;
        assert_int_equal(tpm_rsa_public_parse(other, other_len, &wrong), 0);
        assert_int_equal(tpm_blob_make(&ek, &wrong, key, 32, NULL, &blob2, &len), 0);
        assert_int_equal(soft_open(blob2, len, got, &got_len), OPEN_CRED_HMAC);
}

static void test_blob_split(void **state) {
        TpmRsaPublic ek, srk;
        uint8_t key[32] = { 1 };
        _cleanup_free_ uint8_t *blob = NULL;
        uint8_t big[TPM_BLOB_MAX + 1] = {};
        size_t len;
        TpmBlobFields f;

        assert_int_equal(tpm_rsa_public_parse(ek_pub, ek_pub_len, &ek), 0);
        assert_int_equal(tpm_rsa_public_parse(srk_pub, srk_pub_len, &srk), 0);
        assert_int_equal(tpm_blob_make(&ek, &srk, key, 32, NULL, &blob, &len), 0);
        for (size_t l = 0; l < len; l++)
                assert_int_equal(tpm_blob_split(blob, l, &f), -EINVAL);
        memcpy(big, blob, len);
        assert_int_equal(tpm_blob_split(big, len + 1, &f), -EINVAL);     /* trailing byte */
        assert_int_equal(tpm_blob_split(big, sizeof(big), &f), -E2BIG);
        /* an empty required field; an oversized field */
        big[0] = big[1] = 0;
        assert_int_equal(tpm_blob_split(big, len, &f), -EINVAL);
        big[0] = 0x02;
        big[1] = 0x00; /* 512 > TPM2B_ID_OBJECT's 132 */
        assert_int_equal(tpm_blob_split(big, len, &f), -E2BIG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_kdfa_known_answer),
                cmocka_unit_test(test_hmac_public_known_answer),
                cmocka_unit_test_setup(test_public_parse, tpm_soft_keys_setup),
                cmocka_unit_test_setup(test_blob_roundtrip, tpm_soft_keys_setup),
                cmocka_unit_test_setup(test_blob_seeds_deterministic, tpm_soft_keys_setup),
                cmocka_unit_test_setup(test_blob_tampered, tpm_soft_keys_setup),
                cmocka_unit_test_setup(test_blob_split, tpm_soft_keys_setup),
        };
        return cmocka_run_group_tests(tests, tpm_soft_setup, tpm_soft_teardown);
}
