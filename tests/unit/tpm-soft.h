/* SPDX-License-Identifier: MIT */
/* Test helper (header-only, cmocka): a TPM played in software for the blob tests. */
#pragma once

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "edgeprov/codec.h"
#include "edgeprov/tpm-blob.h"

/* Two RSA-2048 keys standing in for a TPM's EK and SRK: the test plays the TPM in software
 * (ActivateCredential + Import) to check that a blob opens and yields the issued key, and
 * that every tampered field is caught by the check a TPM would make. */
static EVP_PKEY *ek_key, *srk_key;
static uint8_t ek_pub[TPM2B_PUBLIC_MAX], srk_pub[TPM2B_PUBLIC_MAX];
static size_t ek_pub_len, srk_pub_len;

static const uint8_t ek_policy[32] = {
        0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
        0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
};

static void put16(uint8_t *p, size_t *o, uint16_t v) {
        p[(*o)++] = v >> 8;
        p[(*o)++] = v & 0xff;
}
static void put32(uint8_t *p, size_t *o, uint32_t v) {
        put16(p, o, v >> 16);
        put16(p, o, v & 0xffff);
}

/* marshals a TPM2B_PUBLIC of an RSA storage key with the given modulus */
static size_t make_rsa_public(uint8_t *out, uint32_t attrs, const uint8_t *policy, size_t policy_len,
                              const uint8_t *modulus, size_t modulus_len) {
        size_t o = 2;
        put16(out, &o, TPM_ALG_RSA);
        put16(out, &o, TPM_ALG_SHA256);
        put32(out, &o, attrs);
        put16(out, &o, policy_len);
        if (policy_len > 0)
                memcpy(out + o, policy, policy_len);
        o += policy_len;
        put16(out, &o, TPM_ALG_AES);
        put16(out, &o, 128);
        put16(out, &o, TPM_ALG_CFB);
        put16(out, &o, TPM_ALG_NULL);
        put16(out, &o, modulus_len * 8);
        put32(out, &o, 0);
        put16(out, &o, modulus_len);
        memcpy(out + o, modulus, modulus_len);
        o += modulus_len;
        out[0] = (o - 2) >> 8;
        out[1] = (o - 2) & 0xff;
        return o;
}

static size_t key_to_public(EVP_PKEY *k, uint32_t attrs, const uint8_t *policy, size_t policy_len, uint8_t *out) {
        BIGNUM *n = NULL;
        uint8_t mod[256];
        assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n), 1);
        assert_int_equal(BN_bn2binpad(n, mod, sizeof(mod)), 256);
        BN_free(n);
        return make_rsa_public(out, attrs, policy, policy_len, mod, sizeof(mod));
}

static int tpm_soft_setup(void **state) {
        ek_key = EVP_RSA_gen(2048);
        srk_key = EVP_RSA_gen(2048);
        if (!ek_key || !srk_key)
                return -1;
        return 0;
}

static int tpm_soft_teardown(void **state) {
        EVP_PKEY_free(ek_key);
        EVP_PKEY_free(srk_key);
        return 0;
}

static int tpm_soft_keys_setup(void **state) {
        ek_pub_len = key_to_public(ek_key, 0x000300B2, ek_policy, sizeof(ek_policy), ek_pub);
        srk_pub_len = key_to_public(srk_key, 0x00030472, NULL, 0, srk_pub);
        return 0;
}

static int oaep_decrypt(EVP_PKEY *k, const char *label, const uint8_t *in, size_t len, uint8_t *out, size_t *out_len) {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
        char *l = OPENSSL_strdup(label);
        int r = -1;
        if (EVP_PKEY_decrypt_init(c) == 1 && EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) == 1 &&
            EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha256()) == 1 && EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha256()) == 1 &&
            EVP_PKEY_CTX_set0_rsa_oaep_label(c, l, strlen(label) + 1) == 1) {
                l = NULL;
                if (EVP_PKEY_decrypt(c, out, out_len, in, len) == 1)
                        r = 0;
        }
        OPENSSL_free(l);
        EVP_PKEY_CTX_free(c);
        return r;
}

static uint16_t get16(const uint8_t *p) {
        return p[0] << 8 | p[1];
}

/* What TPM2_ActivateCredential + TPM2_Import check; returns which step failed (0: all good,
 * the key in key/key_len). */
enum { OPEN_OK, OPEN_SECRET, OPEN_CRED_HMAC, OPEN_CRED_SIZE, OPEN_SEED, OPEN_OUTER_HMAC, OPEN_INNER, OPEN_BINDING };
static int soft_open(const uint8_t *blob, size_t len, uint8_t *key, size_t *key_len) {
        TpmBlobFields f;
        uint8_t seed[512], srk_name[34], obj_name[34], sym[16], hk[32], mac[32], ident[18], inner_key[16];
        uint8_t buf[2048], dec[2048];
        size_t seed_len = sizeof(seed);
        TpmRsaPublic srk;

        assert_int_equal(tpm_blob_split(blob, len, &f), 0);
        assert_int_equal(tpm_rsa_public_parse(srk_pub, srk_pub_len, &srk), 0);
        assert_int_equal(tpm_public_name(&srk, srk_name), 0);

        /* ActivateCredential */
        if (oaep_decrypt(ek_key, "IDENTITY", f.secret.data + 2, f.secret.len - 2, seed, &seed_len) < 0)
                return OPEN_SECRET;
        const uint8_t *cb = f.credential_blob.data + 2;
        size_t cb_len = f.credential_blob.len - 2;
        assert_int_equal(get16(cb), 32);
        const uint8_t *enc_ident = cb + 34;
        size_t enc_ident_len = cb_len - 34;
        assert_int_equal(tpm_kdfa_sha256(seed, seed_len, "INTEGRITY", NULL, 0, NULL, 0, 256, hk), 0);
        memcpy(buf, enc_ident, enc_ident_len);
        memcpy(buf + enc_ident_len, srk_name, 34);
        assert_int_equal(hmac_sha256(hk, 32, buf, enc_ident_len + 34, mac), 0);
        if (memcmp(mac, cb + 2, 32) != 0)
                return OPEN_CRED_HMAC;
        assert_int_equal(tpm_kdfa_sha256(seed, seed_len, "STORAGE", srk_name, 34, NULL, 0, 128, sym), 0);
        if (enc_ident_len != sizeof(ident))
                return OPEN_CRED_SIZE;
        assert_int_equal(tpm_aes128_cfb(sym, false, enc_ident, enc_ident_len, ident), 0);
        if (get16(ident) != 16)
                return OPEN_CRED_SIZE;
        memcpy(inner_key, ident + 2, 16);

        /* Import */
        const uint8_t *pub = f.object_public.data + 2;
        size_t pub_len = f.object_public.len - 2;
        obj_name[0] = 0;
        obj_name[1] = 0x0b;
        assert_non_null(EVP_Digest(pub, pub_len, obj_name + 2, NULL, EVP_sha256(), NULL));
        seed_len = sizeof(seed);
        if (oaep_decrypt(srk_key, "DUPLICATE", f.sym_seed.data + 2, f.sym_seed.len - 2, seed, &seed_len) < 0)
                return OPEN_SEED;
        const uint8_t *dup = f.duplicate.data + 2;
        size_t dup_len = f.duplicate.len - 2;
        assert_int_equal(get16(dup), 32);
        const uint8_t *dup_sens = dup + 34;
        size_t dup_sens_len = dup_len - 34;
        assert_int_equal(tpm_kdfa_sha256(seed, seed_len, "INTEGRITY", NULL, 0, NULL, 0, 256, hk), 0);
        memcpy(buf, dup_sens, dup_sens_len);
        memcpy(buf + dup_sens_len, obj_name, 34);
        assert_int_equal(hmac_sha256(hk, 32, buf, dup_sens_len + 34, mac), 0);
        if (memcmp(mac, dup + 2, 32) != 0)
                return OPEN_OUTER_HMAC;
        assert_int_equal(tpm_kdfa_sha256(seed, seed_len, "STORAGE", obj_name, 34, NULL, 0, 128, sym), 0);
        assert_int_equal(tpm_aes128_cfb(sym, false, dup_sens, dup_sens_len, buf), 0);
        assert_int_equal(tpm_aes128_cfb(inner_key, false, buf, dup_sens_len, dec), 0);
        /* TPM2B(innerIntegrity) || sens2b */
        if (get16(dec) != 32)
                return OPEN_INNER;
        const uint8_t *sens2b = dec + 34;
        size_t sens2b_len = dup_sens_len - 34;
        memcpy(buf, sens2b, sens2b_len);
        memcpy(buf + sens2b_len, obj_name, 34);
        assert_non_null(EVP_Digest(buf, sens2b_len + 34, mac, NULL, EVP_sha256(), NULL));
        if (memcmp(mac, dec + 2, 32) != 0)
                return OPEN_INNER;
        /* TPMT_SENSITIVE: type, auth(0), seed(32), key */
        const uint8_t *t = sens2b + 2;
        assert_int_equal(get16(t), TPM_ALG_KEYEDHASH);
        assert_int_equal(get16(t + 2), 0);
        assert_int_equal(get16(t + 4), 32);
        const uint8_t *sv = t + 6;
        size_t kl = get16(t + 38);
        /* binding: unique = SHA-256(seedValue || key) is the last field of the public area */
        memcpy(buf, sv, 32);
        memcpy(buf + 32, t + 40, kl);
        assert_non_null(EVP_Digest(buf, 32 + kl, mac, NULL, EVP_sha256(), NULL));
        if (memcmp(mac, pub + pub_len - 32, 32) != 0)
                return OPEN_BINDING;
        memcpy(key, t + 40, kl);
        *key_len = kl;
        return OPEN_OK;
}

