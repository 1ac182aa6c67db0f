/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "edgeprov/codec.h"
#include "edgeprov/macro.h"
#include "edgeprov/tpm-blob.h"

/* Limits of the fields of a blob, from the TPM structure sizes (tss2_tpm2_types.h). */
#define TPM2B_ID_OBJECT_MAX 132
#define TPM2B_ENCRYPTED_SECRET_MAX 512
#define TPM2B_PRIVATE_MAX 1550
#define TPM2B_URI_DATA_MAX 1024

/* PolicyCommandCode(TPM_CC_Duplicate) (dps-protocol.md §6.8, step A) */
static const uint8_t policy_duplicate[32] = {
        0xbe, 0xf5, 0x6b, 0x8c, 0x1c, 0xc8, 0x4e, 0x11, 0xed, 0xd7, 0x17, 0x52, 0x8d, 0x2c, 0xd9, 0x93,
        0x56, 0xbd, 0x2b, 0xbf, 0x8f, 0x01, 0x52, 0x09, 0xc3, 0xf8, 0x4a, 0xee, 0xab, 0xa8, 0xe8, 0xa2,
};

/* ---- a tiny bounds-checked reader and writer ---- */
typedef struct Reader {
        const uint8_t *p;
        size_t left;
} Reader;

static int rd_u16(Reader *r, uint16_t *ret) {
        if (r->left < 2)
                return -EINVAL;
        *ret = (uint16_t) (r->p[0] << 8 | r->p[1]);
        r->p += 2;
        r->left -= 2;
        return 0;
}

static int rd_u32(Reader *r, uint32_t *ret) {
        if (r->left < 4)
                return -EINVAL;
        *ret = (uint32_t) r->p[0] << 24 | (uint32_t) r->p[1] << 16 | (uint32_t) r->p[2] << 8 | r->p[3];
        r->p += 4;
        r->left -= 4;
        return 0;
}

/* a TPM2B: returns the content */
static int rd_2b(Reader *r, size_t max, const uint8_t **ret, size_t *ret_len) {
        uint16_t n;
        int k;

        k = rd_u16(r, &n);
        if (k < 0)
                return k;
        if (n > max)
                return -E2BIG;
        if (r->left < n)
                return -EINVAL;
        *ret = r->p;
        *ret_len = n;
        r->p += n;
        r->left -= n;
        return 0;
}

typedef struct Writer {
        uint8_t *p;
        size_t len, cap;
} Writer;

static void wr_bytes(Writer *w, const void *d, size_t n) {
        /* callers size the buffers; an overflow is a programming error caught here */
        if (w->len + n > w->cap)
                abort();
        if (n > 0)
                memcpy(w->p + w->len, d, n);
        w->len += n;
}

static void wr_u16(Writer *w, uint16_t v) {
        uint8_t b[2] = { v >> 8, v & 0xff };
        wr_bytes(w, b, 2);
}

static void wr_u32(Writer *w, uint32_t v) {
        uint8_t b[4] = { v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff };
        wr_bytes(w, b, 4);
}

static void wr_2b(Writer *w, const void *d, size_t n) {
        wr_u16(w, (uint16_t) n);
        wr_bytes(w, d, n);
}

/* ---- TPM2B_PUBLIC (RSA) ---- */
int tpm_rsa_public_parse(const void *buf, size_t len, TpmRsaPublic *ret) {
        Reader r = { buf, len };
        const uint8_t *tpmt, *policy, *modulus;
        size_t tpmt_len, policy_len, modulus_len;
        uint16_t type, name_alg, sym_alg, sym_bits = 0, sym_mode = 0, scheme, key_bits;
        uint32_t attributes, exponent;
        int k;

        if (!buf || !ret)
                return -EINVAL;
        if (len > TPM2B_PUBLIC_MAX)
                return -E2BIG;

        k = rd_2b(&r, TPM2B_PUBLIC_MAX - 2, &tpmt, &tpmt_len);
        if (k < 0)
                return k;
        if (r.left != 0 || tpmt_len == 0)
                return -EINVAL;

        Reader t = { tpmt, tpmt_len };
        if (rd_u16(&t, &type) < 0 || rd_u16(&t, &name_alg) < 0 || rd_u32(&t, &attributes) < 0)
                return -EINVAL;
        k = rd_2b(&t, 64, &policy, &policy_len);
        if (k < 0)
                return k;
        if (type != TPM_ALG_RSA)
                return -EOPNOTSUPP;

        /* TPMS_RSA_PARMS: symmetric (TPMT_SYM_DEF_OBJECT), scheme, keyBits, exponent */
        if (rd_u16(&t, &sym_alg) < 0)
                return -EINVAL;
        if (sym_alg != TPM_ALG_NULL)
                if (rd_u16(&t, &sym_bits) < 0 || rd_u16(&t, &sym_mode) < 0)
                        return -EINVAL;
        if (rd_u16(&t, &scheme) < 0)
                return -EINVAL;
        if (scheme != TPM_ALG_NULL) {
                uint16_t scheme_hash;
                if (rd_u16(&t, &scheme_hash) < 0)
                        return -EINVAL;
        }
        if (rd_u16(&t, &key_bits) < 0 || rd_u32(&t, &exponent) < 0)
                return -EINVAL;
        k = rd_2b(&t, TPM_RSA_MODULUS_MAX, &modulus, &modulus_len);
        if (k < 0)
                return k;
        if (t.left != 0)
                return -EINVAL;

        if (name_alg != TPM_ALG_SHA256 ||
            (attributes & (TPM_ATTR_RESTRICTED | TPM_ATTR_DECRYPT)) !=
                    (TPM_ATTR_RESTRICTED | TPM_ATTR_DECRYPT) ||
            sym_alg != TPM_ALG_AES || sym_bits != 128 || sym_mode != TPM_ALG_CFB || scheme != TPM_ALG_NULL ||
            key_bits < 1024 || key_bits % 8 != 0 || modulus_len != key_bits / 8u || modulus_len == 0 ||
            !(modulus[0] & 0x80))
                return -EOPNOTSUPP;
        if (exponent == 0)
                exponent = 65537;
        if (exponent < 3 || !(exponent & 1))
                return -EOPNOTSUPP;

        *ret = (TpmRsaPublic) {
                .name_alg = name_alg,
                .attributes = attributes,
                .sym_alg = sym_alg,
                .sym_bits = sym_bits,
                .sym_mode = sym_mode,
                .key_bits = key_bits,
                .exponent = exponent,
                .modulus_len = modulus_len,
                .tpmt_len = tpmt_len,
        };
        memcpy(ret->modulus, modulus, modulus_len);
        memcpy(ret->tpmt, tpmt, tpmt_len);
        return 0;
}

bool tpm_rsa_public_same_key(const TpmRsaPublic *a, const TpmRsaPublic *b) {
        return a->exponent == b->exponent && a->modulus_len == b->modulus_len &&
                memcmp(a->modulus, b->modulus, a->modulus_len) == 0;
}

static int sha256_two(const void *a, size_t a_len, const void *b, size_t b_len, uint8_t ret[32]) {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        int r = -EIO;

        if (!c)
                return -ENOMEM;
        if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(c, a, a_len) == 1 &&
            EVP_DigestUpdate(c, b, b_len) == 1 && EVP_DigestFinal_ex(c, ret, NULL) == 1)
                r = 0;
        EVP_MD_CTX_free(c);
        return r;
}

static void name_of(const void *tpmt, size_t len, uint8_t ret[TPM_NAME_SHA256_SIZE]) {
        ret[0] = TPM_ALG_SHA256 >> 8;
        ret[1] = TPM_ALG_SHA256 & 0xff;
        SHA256(tpmt, len, ret + 2);
}

int tpm_public_name(const TpmRsaPublic *pub, uint8_t ret[TPM_NAME_SHA256_SIZE]) {
        if (pub->name_alg != TPM_ALG_SHA256)
                return -EOPNOTSUPP;
        name_of(pub->tpmt, pub->tpmt_len, ret);
        return 0;
}

/* ---- KDFa, AES-CFB ---- */
int tpm_kdfa_sha256(const void *key, size_t key_len, const char *label, const void *context_u, size_t u_len,
                    const void *context_v, size_t v_len, unsigned bits, uint8_t *ret) {
        size_t label_len, n = (bits + 7) / 8, done = 0;
        uint8_t *msg;
        int r = 0;

        if (!label || bits == 0 || bits > 8 * 1024 || u_len > 1024 || v_len > 1024)
                return -EINVAL;
        label_len = strlen(label) + 1;
        if (label_len > 256)
                return -EINVAL;

        Writer w = { .cap = 4 + label_len + u_len + v_len + 4 };
        w.p = msg = malloc(w.cap);
        if (!msg)
                return -ENOMEM;

        for (uint32_t i = 1; done < n; i++) {
                uint8_t out[32];

                w.len = 0;
                wr_u32(&w, i);
                wr_bytes(&w, label, label_len);
                wr_bytes(&w, context_u, u_len);
                wr_bytes(&w, context_v, v_len);
                wr_u32(&w, bits);
                r = hmac_sha256(key, key_len, w.p, w.len, out);
                if (r < 0)
                        break;
                memcpy(ret + done, out, MIN(sizeof(out), n - done));
                done += MIN(sizeof(out), n - done);
                explicit_bzero(out, sizeof(out));
        }
        explicit_bzero(msg, w.cap);
        free(msg);
        return r;
}

int tpm_aes128_cfb(const uint8_t key[16], bool encrypt, const void *in, size_t len, uint8_t *out) {
        static const uint8_t iv[16] = {};
        EVP_CIPHER_CTX *ctx;
        int outl = 0, finl = 0, r = -EIO;

        if (len > INT32_MAX)
                return -E2BIG;
        ctx = EVP_CIPHER_CTX_new();
        if (!ctx)
                return -ENOMEM;
        if (EVP_CipherInit_ex(ctx, EVP_aes_128_cfb128(), NULL, key, iv, encrypt ? 1 : 0) == 1 &&
            EVP_CipherUpdate(ctx, out, &outl, in, (int) len) == 1 &&
            EVP_CipherFinal_ex(ctx, out + outl, &finl) == 1 && (size_t) (outl + finl) == len)
                r = 0;
        EVP_CIPHER_CTX_free(ctx);
        return r;
}

/* ---- RSA-OAEP "secret sharing" to a TPM key ---- */
static int rsa_oaep_encrypt(const TpmRsaPublic *pub, const char *label, const uint8_t *seed, size_t seed_len,
                            uint8_t *ret, size_t *ret_len) {
        OSSL_PARAM_BLD *bld = NULL;
        OSSL_PARAM *params = NULL;
        BIGNUM *n = NULL, *e = NULL;
        EVP_PKEY_CTX *fctx = NULL, *ctx = NULL;
        EVP_PKEY *pkey = NULL;
        char *label_copy = NULL;
        size_t outlen = TPM_RSA_MODULUS_MAX;
        int r = -EIO;

        n = BN_bin2bn(pub->modulus, (int) pub->modulus_len, NULL);
        e = BN_new();
        bld = OSSL_PARAM_BLD_new();
        if (!n || !e || !bld || BN_set_word(e, pub->exponent) != 1) {
                r = -ENOMEM;
                goto finish;
        }
        if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1 || !(params = OSSL_PARAM_BLD_to_param(bld)))
                goto finish;
        fctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        if (!fctx || EVP_PKEY_fromdata_init(fctx) != 1 ||
            EVP_PKEY_fromdata(fctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
                goto finish;

        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (!ctx || EVP_PKEY_encrypt_init(ctx) != 1 || EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
            EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) != 1 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) != 1)
                goto finish;
        label_copy = OPENSSL_memdup(label, strlen(label) + 1); /* the label includes its NUL */
        if (!label_copy) {
                r = -ENOMEM;
                goto finish;
        }
        if (EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label_copy, (int) strlen(label) + 1) != 1) {
                OPENSSL_free(label_copy);
                goto finish;
        }
        if (EVP_PKEY_encrypt(ctx, ret, &outlen, seed, seed_len) != 1)
                goto finish;
        *ret_len = outlen;
        r = 0;
finish:
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(pkey);
        EVP_PKEY_CTX_free(fctx);
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        BN_free(n);
        BN_free(e);
        return r;
}

/* ---- step A: the HMAC key object ---- */
int tpm_hmac_key_public(const uint8_t seed_value[32], const void *hmac_key, size_t hmac_key_len,
                        uint8_t ret[128], size_t *ret_len) {
        uint8_t unique[32];
        int r;

        if (hmac_key_len == 0 || hmac_key_len > TPM_HMAC_KEY_MAX)
                return -EINVAL;

        r = sha256_two(seed_value, 32, hmac_key, hmac_key_len, unique);
        if (r < 0)
                return r;

        Writer w = { .p = ret, .cap = 128 };
        wr_u16(&w, TPM_ALG_KEYEDHASH);
        wr_u16(&w, TPM_ALG_SHA256);
        wr_u32(&w, 0x00040440); /* sign | userWithAuth | noDA */
        wr_2b(&w, policy_duplicate, sizeof(policy_duplicate));
        wr_u16(&w, TPM_ALG_HMAC);
        wr_u16(&w, TPM_ALG_SHA256);
        wr_2b(&w, unique, sizeof(unique));
        *ret_len = w.len;
        return 0;
}

/* ---- the blob ---- */
int tpm_blob_make(const TpmRsaPublic *ek, const TpmRsaPublic *srk, const void *hmac_key, size_t hmac_key_len,
                  const TpmBlobSeeds *seeds, uint8_t **ret, size_t *ret_len) {
        TpmBlobSeeds s;
        uint8_t pub[128], obj_name[TPM_NAME_SHA256_SIZE], srk_name[TPM_NAME_SHA256_SIZE];
        uint8_t sens[2 + 2 + 2 + 2 + 32 + 2 + TPM_HMAC_KEY_MAX]; /* TPM2B(TPMT_SENSITIVE) */
        uint8_t inner[2 + 32 + sizeof(sens)], enc_inner[sizeof(inner)];
        uint8_t sym_key[16], outer_hmac_key[32], outer_hmac[32];
        uint8_t c_sym[16], c_hmac[32], identity[2 + TPM_INNER_KEY_SIZE], enc_identity[sizeof(identity)];
        uint8_t integrity[32], in_sym_seed[TPM_RSA_MODULUS_MAX], secret[TPM_RSA_MODULUS_MAX];
        size_t pub_len, in_sym_seed_len, secret_len;
        uint8_t *buf = NULL;
        int r;

        if (!ek || !srk || !hmac_key || !ret || !ret_len)
                return -EINVAL;
        if (hmac_key_len == 0 || hmac_key_len > TPM_HMAC_KEY_MAX)
                return -EINVAL;
        if (ek->name_alg != TPM_ALG_SHA256 || srk->name_alg != TPM_ALG_SHA256 || ek->sym_bits != 128 ||
            srk->sym_bits != 128)
                return -EOPNOTSUPP;

        if (seeds)
                s = *seeds;
        else {
                r = random_bytes(&s, sizeof(s));
                if (r < 0)
                        return r;
        }

        /* A: the object */
        r = tpm_hmac_key_public(s.seed_value, hmac_key, hmac_key_len, pub, &pub_len);
        if (r < 0)
                goto finish;
        name_of(pub, pub_len, obj_name);

        Writer ws = { .p = sens, .cap = sizeof(sens) };
        wr_u16(&ws, (uint16_t) (2 + 2 + 2 + 32 + 2 + hmac_key_len));
        wr_u16(&ws, TPM_ALG_KEYEDHASH);
        wr_2b(&ws, NULL, 0); /* authValue */
        wr_2b(&ws, s.seed_value, 32);
        wr_2b(&ws, hmac_key, hmac_key_len);

        /* B: inner wrapper: CFB(innerKey, TPM2B(H(sens2b || name)) || sens2b) */
        r = sha256_two(sens, ws.len, obj_name, sizeof(obj_name), integrity);
        if (r < 0)
                goto finish;
        Writer wi = { .p = inner, .cap = sizeof(inner) };
        wr_2b(&wi, integrity, sizeof(integrity));
        wr_bytes(&wi, sens, ws.len);
        r = tpm_aes128_cfb(s.inner_key, true, inner, wi.len, enc_inner);
        if (r < 0)
                goto finish;

        /* C: outer wrapper to the SRK */
        r = rsa_oaep_encrypt(srk, "DUPLICATE", s.dup_seed, sizeof(s.dup_seed), in_sym_seed, &in_sym_seed_len);
        if (r < 0)
                goto finish;
        r = tpm_kdfa_sha256(s.dup_seed, sizeof(s.dup_seed), "STORAGE", obj_name, sizeof(obj_name), NULL, 0, 128,
                            sym_key);
        if (r < 0)
                goto finish;
        r = tpm_kdfa_sha256(s.dup_seed, sizeof(s.dup_seed), "INTEGRITY", NULL, 0, NULL, 0, 256, outer_hmac_key);
        if (r < 0)
                goto finish;
        r = tpm_aes128_cfb(sym_key, true, enc_inner, wi.len, inner); /* inner now holds dupSensitive */
        if (r < 0)
                goto finish;
        {
                uint8_t m[sizeof(inner) + sizeof(obj_name)];
                memcpy(m, inner, wi.len);
                memcpy(m + wi.len, obj_name, sizeof(obj_name));
                r = hmac_sha256(outer_hmac_key, sizeof(outer_hmac_key), m, wi.len + sizeof(obj_name), outer_hmac);
                explicit_bzero(m, sizeof(m));
                if (r < 0)
                        goto finish;
        }

        /* D: MakeCredential(EK, credential = innerKey, name = Name(SRK)) */
        r = tpm_public_name(srk, srk_name);
        if (r < 0)
                goto finish;
        r = rsa_oaep_encrypt(ek, "IDENTITY", s.cred_seed, sizeof(s.cred_seed), secret, &secret_len);
        if (r < 0)
                goto finish;
        r = tpm_kdfa_sha256(s.cred_seed, sizeof(s.cred_seed), "STORAGE", srk_name, sizeof(srk_name), NULL, 0, 128,
                            c_sym);
        if (r < 0)
                goto finish;
        r = tpm_kdfa_sha256(s.cred_seed, sizeof(s.cred_seed), "INTEGRITY", NULL, 0, NULL, 0, 256, c_hmac);
        if (r < 0)
                goto finish;
        identity[0] = 0;
        identity[1] = TPM_INNER_KEY_SIZE;
        memcpy(identity + 2, s.inner_key, TPM_INNER_KEY_SIZE);
        r = tpm_aes128_cfb(c_sym, true, identity, sizeof(identity), enc_identity);
        if (r < 0)
                goto finish;
        {
                uint8_t m[sizeof(enc_identity) + sizeof(srk_name)];
                memcpy(m, enc_identity, sizeof(enc_identity));
                memcpy(m + sizeof(enc_identity), srk_name, sizeof(srk_name));
                r = hmac_sha256(c_hmac, sizeof(c_hmac), m, sizeof(m), integrity);
                if (r < 0)
                        goto finish;
        }

        /* E: assemble */
        Writer w = { .cap = (2 + 2 + 32 + sizeof(enc_identity)) + (2 + secret_len) + (2 + 2 + 32 + wi.len) +
                             (2 + in_sym_seed_len) + (2 + pub_len) + 2 };
        w.p = buf = malloc(w.cap);
        if (!buf) {
                r = -ENOMEM;
                goto finish;
        }
        wr_u16(&w, 2 + 32 + sizeof(enc_identity));
        wr_2b(&w, integrity, 32);
        wr_bytes(&w, enc_identity, sizeof(enc_identity));
        wr_2b(&w, secret, secret_len);
        wr_u16(&w, (uint16_t) (2 + 32 + wi.len));
        wr_2b(&w, outer_hmac, 32);
        wr_bytes(&w, inner, wi.len);
        wr_2b(&w, in_sym_seed, in_sym_seed_len);
        wr_2b(&w, pub, pub_len);
        wr_u16(&w, 0);

        *ret = TAKE_PTR(buf);
        *ret_len = w.len;
        r = 0;
finish:
        explicit_bzero(&s, sizeof(s));
        explicit_bzero(sens, sizeof(sens));
        explicit_bzero(inner, sizeof(inner));
        explicit_bzero(enc_inner, sizeof(enc_inner));
        explicit_bzero(sym_key, sizeof(sym_key));
        explicit_bzero(outer_hmac_key, sizeof(outer_hmac_key));
        explicit_bzero(c_sym, sizeof(c_sym));
        explicit_bzero(c_hmac, sizeof(c_hmac));
        explicit_bzero(identity, sizeof(identity));
        return r;
}

int tpm_blob_split(const void *blob, size_t len, TpmBlobFields *ret) {
        static const struct {
                size_t max;
                bool may_be_empty;
        } limits[6] = {
                { TPM2B_ID_OBJECT_MAX, false },
                { TPM2B_ENCRYPTED_SECRET_MAX, false },
                { TPM2B_PRIVATE_MAX, false },
                { TPM2B_ENCRYPTED_SECRET_MAX, false },
                { TPM2B_PUBLIC_MAX - 2, false },
                { TPM2B_URI_DATA_MAX, true },
        };
        TpmBlobSlice s[6];
        Reader r = { blob, len };

        if (!blob || !ret)
                return -EINVAL;
        if (len > TPM_BLOB_MAX)
                return -E2BIG;

        for (size_t i = 0; i < 6; i++) {
                const uint8_t *start = r.p, *d;
                size_t n;
                int k;

                k = rd_2b(&r, limits[i].max, &d, &n);
                if (k < 0)
                        return k;
                if (n == 0 && !limits[i].may_be_empty)
                        return -EINVAL;
                s[i] = (TpmBlobSlice) { start, n + 2 };
        }
        if (r.left != 0)
                return -EINVAL;

        *ret = (TpmBlobFields) {
                .credential_blob = s[0],
                .secret = s[1],
                .duplicate = s[2],
                .sym_seed = s[3],
                .object_public = s[4],
                .uri_data = s[5],
        };
        return 0;
}
