/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "dps/certgen.h"
#include "edgeprov/macro.h"
#include "edgeprov/x509-util.h"

CertKeyType cert_key_type_from_string(const char *s) {
        if (!s)
                return _CERT_KEY_TYPE_INVALID;
        if (streq(s, "ec") || streq(s, "p256") || streq(s, "ec-p256"))
                return CERT_KEY_EC_P256;
        if (streq(s, "rsa2048") || streq(s, "rsa-2048"))
                return CERT_KEY_RSA_2048;
        if (streq(s, "rsa3072") || streq(s, "rsa-3072"))
                return CERT_KEY_RSA_3072;
        return _CERT_KEY_TYPE_INVALID;
}

int cert_generate_key(CertKeyType t, EVP_PKEY **ret) {
        EVP_PKEY *k = NULL;

        switch (t) {
        case CERT_KEY_EC_P256:
                k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
                break;
        case CERT_KEY_RSA_2048:
                k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
                break;
        case CERT_KEY_RSA_3072:
                k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 3072);
                break;
        default:
                return -EINVAL;
        }
        if (!k)
                return -EIO;
        *ret = k;
        return 0;
}

_printf_(2, 3) static int fail(char **reterr, const char *fmt, ...) {
        va_list ap;
        char *m = NULL;

        if (reterr) {
                va_start(ap, fmt);
                if (vasprintf(&m, fmt, ap) < 0)
                        m = NULL;
                va_end(ap);
                *reterr = m;
        }
        return -EINVAL;
}

int cert_key_matches(X509 *cert, EVP_PKEY *key) {
        EVP_PKEY *pub = X509_get0_pubkey(cert);
        int r = pub && key ? EVP_PKEY_eq(pub, key) : 0;
        ERR_clear_error();
        return r == 1;
}

/* 159 random bits: positive and at most 20 octets (RFC 5280 §4.1.2.2). */
static int random_serial(X509 *x) {
        uint8_t b[20];
        BIGNUM *bn;

        if (RAND_bytes(b, sizeof(b)) != 1)
                return -EIO;
        b[0] &= 0x7f;
        b[0] |= 0x40; /* exactly 159 bits, never a short serial */
        bn = BN_bin2bn(b, sizeof(b), NULL);
        if (!bn)
                return -ENOMEM;
        ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
        BN_free(bn);
        if (!ai)
                return -ENOMEM;
        int ok = X509_set_serialNumber(x, ai);
        ASN1_INTEGER_free(ai);
        return ok == 1 ? 0 : -ENOMEM;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
        if (!e)
                return -EINVAL;
        int ok = X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
        return ok == 1 ? 0 : -ENOMEM;
}

static bool is_ca(X509 *x) {
        return X509_check_ca(x) >= 1 && (X509_get_extension_flags(x) & EXFLAG_CA);
}

int cert_create(const CertRequest *req, X509 **ret, char **reterr) {
        _cleanup_x509_ X509 *x = NULL;
        const char *why = NULL;
        char buf[64];
        int r;

        if (!req || !req->key || !req->common_name)
                return fail(reterr, "incomplete certificate request");
        if (req->days < 1 || req->days > CERT_DAYS_MAX)
                return fail(reterr, "validity must be 1..%d days, not %u", CERT_DAYS_MAX, req->days);
        if (isempty(req->common_name) || strlen(req->common_name) > CERT_SUBJECT_MAX)
                return fail(reterr, "the common name must be 1..%d characters", CERT_SUBJECT_MAX);
        if (req->organization && strlen(req->organization) > CERT_SUBJECT_MAX)
                return fail(reterr, "the organization must be at most %d characters", CERT_SUBJECT_MAX);
        if (req->kind == CERT_DEVICE && !x509_cn_is_valid_registration_id(req->common_name, &why))
                return fail(reterr, "'%s' cannot be a device certificate's CN (= registration id): %s",
                            req->common_name, why);
        if (req->kind == CERT_VERIFICATION) {
                for (const char *p = req->common_name; *p; p++)
                        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
                                return fail(reterr, "'%s' does not look like a verification code "
                                            "(letters and digits only)", req->common_name);
        }
        if (req->kind == CERT_ROOT) {
                if (req->issuer_cert || req->issuer_key)
                        return fail(reterr, "a root CA is self-signed; no issuer expected");
        } else {
                if (!req->issuer_cert || !req->issuer_key)
                        return fail(reterr, "an issuing CA certificate and its key are needed");
                if (!is_ca(req->issuer_cert))
                        return fail(reterr, "the issuer certificate is not a CA (basicConstraints CA:TRUE)");
                if (!cert_key_matches(req->issuer_cert, req->issuer_key))
                        return fail(reterr, "the CA key does not belong to the CA certificate");
                if (X509_get_pathlen(req->issuer_cert) == 0 && req->kind == CERT_INTERMEDIATE)
                        return fail(reterr, "the issuer's pathlen is 0: it cannot sign another CA");
        }

        x = X509_new();
        if (!x || X509_set_version(x, 2) != 1)
                return -ENOMEM;
        r = random_serial(x);
        if (r < 0)
                return r;
        if (!X509_gmtime_adj(X509_getm_notBefore(x), (long) req->not_before_offset_sec - 60) ||
            !X509_gmtime_adj(X509_getm_notAfter(x),
                             (long) req->not_before_offset_sec + (long) req->days * 24 * 3600))
                return -ENOMEM;

        X509_NAME *n = X509_get_subject_name(x);
        if ((req->organization &&
             X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *) req->organization, -1, -1, 0) !=
                     1) ||
            X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *) req->common_name, -1, -1, 0) !=
                    1)
                return fail(reterr, "the subject name cannot be encoded");
        if (X509_set_issuer_name(x, req->issuer_cert ? X509_get_subject_name(req->issuer_cert) : n) != 1 ||
            X509_set_pubkey(x, req->key) != 1)
                return -ENOMEM;

        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, req->issuer_cert ?: x, x, NULL, NULL, 0);

        bool ca = req->kind == CERT_ROOT || req->kind == CERT_INTERMEDIATE;
        bool ec = EVP_PKEY_is_a(req->key, "EC");
        if (ca) {
                if (req->pathlen >= 0)
                        snprintf(buf, sizeof(buf), "critical,CA:TRUE,pathlen:%d", req->pathlen);
                else
                        snprintf(buf, sizeof(buf), "critical,CA:TRUE");
                r = add_ext(x, &ctx, NID_basic_constraints, buf);
                if (r >= 0)
                        r = add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
        } else {
                r = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE");
                if (r >= 0)
                        r = add_ext(x, &ctx, NID_key_usage,
                                    ec ? "critical,digitalSignature,keyAgreement"
                                       : "critical,digitalSignature,keyEncipherment");
                if (r >= 0)
                        r = add_ext(x, &ctx, NID_ext_key_usage, "clientAuth");
        }
        if (r >= 0)
                r = add_ext(x, &ctx, NID_subject_key_identifier, "hash");
        if (r >= 0 && req->kind != CERT_ROOT)
                r = add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
        if (r < 0) {
                ERR_clear_error();
                return fail(reterr, "cannot add the certificate extensions");
        }

        if (X509_sign(x, req->issuer_key ?: req->key, EVP_sha256()) <= 0) {
                ERR_clear_error();
                return fail(reterr, "signing the certificate failed");
        }
        *ret = TAKE_PTR(x);
        return 0;
}

int cert_key_to_pem(EVP_PKEY *key, char **ret, size_t *ret_len) {
        BIO *bio = BIO_new(BIO_s_secmem());
        char *data = NULL;

        if (!bio)
                return -ENOMEM;
        if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
                BIO_free(bio);
                return -EINVAL;
        }
        long n = BIO_get_mem_data(bio, &data);
        char *s = n > 0 ? malloc((size_t) n + 1) : NULL;
        if (s) {
                memcpy(s, data, (size_t) n);
                s[n] = 0;
        }
        BIO_free(bio); /* secure memory is cleared on free */
        if (!s)
                return -ENOMEM;
        *ret = s;
        *ret_len = (size_t) n;
        return 0;
}
