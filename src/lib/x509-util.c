/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "edgeprov/fileio.h"
#include "edgeprov/macro.h"
#include "edgeprov/x509-util.h"

static bool is_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int x509_fail(char **reterr, int r, const char *fmt, ...) {
        va_list ap;
        if (reterr) {
                char *m = NULL;
                va_start(ap, fmt);
                if (vasprintf(&m, fmt, ap) < 0)
                        m = NULL;
                va_end(ap);
                free(*reterr);
                *reterr = m;
        }
        return r;
}

bool x509_cn_is_valid_registration_id(const char *cn, const char **ret_reason) {
        const char *reason = NULL;
        size_t n = cn ? strlen(cn) : 0;

        if (n == 0)
                reason = "it is empty";
        else if (n > X509_CN_REGISTRATION_ID_MAX)
                reason = "it is longer than 64 characters (the CN limit)";
        else if (!is_alnum(cn[0]))
                reason = "it must start with a letter or digit";
        else if (!is_alnum(cn[n - 1]) && cn[n - 1] != '-')
                reason = "it must end with a letter, digit or '-'";
        else
                for (size_t i = 0; i < n; i++)
                        if (!is_alnum(cn[i]) && !strchr(".:_-", cn[i])) {
                                reason = "only letters, digits and . : _ - are allowed";
                                break;
                        }
        if (ret_reason)
                *ret_reason = reason;
        return !reason;
}

int x509_get_subject_cn(X509 *x, char **ret) {
        X509_NAME *name = x ? X509_get_subject_name(x) : NULL;
        int idx = -1, last = -1;

        if (!name)
                return -EINVAL;
        while ((idx = X509_NAME_get_index_by_NID(name, NID_commonName, idx)) >= 0)
                last = idx;
        if (last < 0)
                return -ENOENT;
        ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, last));
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, s);
        if (len < 0)
                return -EINVAL;
        if (len > X509_CN_REGISTRATION_ID_MAX * 4 || memchr(utf8, 0, (size_t) len)) {
                OPENSSL_free(utf8);
                return -EINVAL;
        }
        char *c = strndup((const char *) utf8, (size_t) len);
        OPENSSL_free(utf8);
        if (!c)
                return -ENOMEM;
        *ret = c;
        return 0;
}

static int thumbprint(X509 *x, const EVP_MD *md, char ret[static 65]) {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned n = 0;

        if (!x || X509_digest(x, md, d, &n) != 1 || n * 2 > 64)
                return -EINVAL;
        for (unsigned i = 0; i < n; i++)
                snprintf(ret + 2 * i, 3, "%02X", d[i]);
        ret[2 * n] = 0;
        return 0;
}

int x509_thumbprint_sha1(X509 *x, char ret[static 65]) {
        return thumbprint(x, EVP_sha1(), ret);
}

int x509_thumbprint_sha256(X509 *x, char ret[static 65]) {
        return thumbprint(x, EVP_sha256(), ret);
}

int x509_from_der(const uint8_t *der, size_t len, X509 **ret) {
        const unsigned char *p = der;

        if (!der || len == 0 || len > X509_DER_MAX)
                return len > X509_DER_MAX ? -E2BIG : -EINVAL;
        X509 *x = d2i_X509(NULL, &p, (long) len);
        if (!x)
                return -EINVAL;
        if (p != der + len) {
                X509_free(x);
                return -EINVAL; /* trailing garbage */
        }
        *ret = x;
        return 0;
}

int x509_stack_push_der(STACK_OF(X509) *sk, const uint8_t *der, size_t len) {
        X509 *x = NULL;
        int r = x509_from_der(der, len, &x);
        if (r < 0) {
                ERR_clear_error();
                return r;
        }
        if (!sk_X509_push(sk, x)) {
                X509_free(x);
                return -ENOMEM;
        }
        return 0;
}

int x509_parse_certs(const void *buf, size_t len, STACK_OF(X509) **ret) {
        _cleanup_x509_stack_ STACK_OF(X509) *sk = NULL;

        if (!buf || len == 0)
                return -EINVAL;
        if (len > X509_INPUT_MAX)
                return -E2BIG;
        sk = sk_X509_new_null();
        if (!sk)
                return -ENOMEM;

        if (memmem(buf, len, "-----BEGIN", 10)) {
                BIO *bio = BIO_new_mem_buf(buf, (int) len);
                if (!bio)
                        return -ENOMEM;
                for (;;) {
                        X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
                        if (!x)
                                break;
                        if (sk_X509_num(sk) >= X509_CHAIN_MAX || !sk_X509_push(sk, x)) {
                                X509_free(x);
                                BIO_free(bio);
                                ERR_clear_error();
                                return sk_X509_num(sk) >= X509_CHAIN_MAX ? -E2BIG : -ENOMEM;
                        }
                }
                BIO_free(bio);
                ERR_clear_error();
        } else {
                int r = x509_stack_push_der(sk, buf, len);
                if (r < 0)
                        return r;
        }
        if (sk_X509_num(sk) == 0)
                return -EINVAL;
        *ret = TAKE_PTR(sk);
        return 0;
}

/* A certificate or key file of at most X509_INPUT_MAX bytes; -E2BIG beyond. */
static int read_input(const char *path, char **ret, size_t *ret_len) {
        int r = read_file_full(path, X509_INPUT_MAX, ret, ret_len);
        return r == -EFBIG ? -E2BIG : r;
}

int x509_load_certs(const char *path, STACK_OF(X509) **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r;

        r = read_input(path, &buf, &len);
        if (r < 0)
                return r;
        return x509_parse_certs(buf, len, ret);
}

int x509_parse_cert(const void *buf, size_t len, X509 **ret) {
        _cleanup_x509_stack_ STACK_OF(X509) *sk = NULL;
        int r = x509_parse_certs(buf, len, &sk);
        if (r < 0)
                return r;
        *ret = sk_X509_shift(sk);
        return 0;
}

int x509_load_private_key(const char *path, EVP_PKEY **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r;

        r = read_input(path, &buf, &len);
        if (r < 0)
                return r;
        BIO *bio = BIO_new_mem_buf(buf, (int) len);
        if (!bio) {
                explicit_bzero(buf, len);
                return -ENOMEM;
        }
        EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *) "");
        BIO_free(bio);
        explicit_bzero(buf, len);
        ERR_clear_error();
        if (!k)
                return -EINVAL;
        *ret = k;
        return 0;
}

int x509_to_pem(X509 *x, char **ret) {
        BIO *bio = BIO_new(BIO_s_mem());
        char *data = NULL;

        if (!bio)
                return -ENOMEM;
        if (PEM_write_bio_X509(bio, x) != 1) {
                BIO_free(bio);
                return -EINVAL;
        }
        long n = BIO_get_mem_data(bio, &data);
        char *s = n >= 0 ? strndup(data, (size_t) n) : NULL;
        BIO_free(bio);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int x509_to_der(X509 *x, uint8_t **ret, size_t *ret_len) {
        unsigned char *der = NULL;
        int n = i2d_X509(x, &der);
        if (n <= 0)
                return -EINVAL;
        uint8_t *c = malloc((size_t) n);
        if (!c) {
                OPENSSL_free(der);
                return -ENOMEM;
        }
        memcpy(c, der, (size_t) n);
        OPENSSL_free(der);
        *ret = c;
        *ret_len = (size_t) n;
        return 0;
}

int x509_check_validity(X509 *x, uint64_t now_usec) {
        time_t t = (time_t) (now_usec / 1000000);

        if (X509_cmp_time(X509_get0_notBefore(x), &t) > 0)
                return 1;
        if (X509_cmp_time(X509_get0_notAfter(x), &t) < 0)
                return 2;
        return 0;
}

int x509_not_after(X509 *x, uint64_t *ret_sec) {
        struct tm tm = {};

        if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
                return -EINVAL;
        time_t t = timegm(&tm);
        if (t < 0)
                return -EINVAL;
        *ret_sec = (uint64_t) t;
        return 0;
}

int x509_format_time(const ASN1_TIME *a, char ret[static 32]) {
        struct tm tm = {};

        if (!a || ASN1_TIME_to_tm(a, &tm) != 1 || strftime(ret, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                return -EINVAL;
        return 0;
}
