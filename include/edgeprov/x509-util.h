/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

/* X.509 helpers shared by the agent, the service and edgeprov-dpsctl (issue 6, OpenSSL 3).
 * Every parser has size limits:
 *   - a PEM/DER input is at most X509_INPUT_MAX bytes, a chain at most X509_CHAIN_MAX
 *     certificates, a single DER certificate at most X509_DER_MAX bytes. */

#define X509_INPUT_MAX (256 * 1024)
#define X509_DER_MAX (16 * 1024)
#define X509_CHAIN_MAX 10
#define X509_CN_REGISTRATION_ID_MAX 64 /* dps-protocol.md §1.2, §5.1: the CN limit */

static inline void x509_freep(X509 **x) {
        if (*x)
                X509_free(*x);
}
#define _cleanup_x509_ __attribute__((cleanup(x509_freep)))
static inline void x509_stack_freep(STACK_OF(X509) **s) {
        if (*s)
                sk_X509_pop_free(*s, X509_free);
}
#define _cleanup_x509_stack_ __attribute__((cleanup(x509_stack_freep)))
static inline void evp_pkey_freep(EVP_PKEY **k) {
        if (*k)
                EVP_PKEY_free(*k);
}
#define _cleanup_evp_pkey_ __attribute__((cleanup(evp_pkey_freep)))

/* Replaces *reterr (when reterr is non-NULL; *reterr NULL or allocated) with the formatted
 * message and returns r: the error path of every X.509 loader and check. */
int x509_fail(char **reterr, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A registration id usable as a certificate CN: 1..64 of [A-Za-z0-9.:_-], alphanumeric first,
 * alphanumeric or '-' last (dps-protocol.md §1.2).  On failure *ret_reason (optional) names
 * the rule that was broken (static string). */
bool x509_cn_is_valid_registration_id(const char *cn, const char **ret_reason);

/* The subject's (last) commonName, UTF-8; -ENOENT without one, -EINVAL if it has a NUL or is
 * longer than 64 bytes. */
int x509_get_subject_cn(X509 *x, char **ret);

/* Upper-case hex of SHA-1 (40 chars) / SHA-256 (64 chars) of the DER; buffers of 65 bytes. */
int x509_thumbprint_sha1(X509 *x, char ret[static 65]);
int x509_thumbprint_sha256(X509 *x, char ret[static 65]);

/* Parses PEM (one or more CERTIFICATE blocks) or a single DER certificate ("CER") from a
 * buffer; the first certificate is the leaf.  -EINVAL when nothing parses, -E2BIG beyond the
 * limits. */
int x509_parse_certs(const void *buf, size_t len, STACK_OF(X509) **ret);
int x509_load_certs(const char *path, STACK_OF(X509) **ret);
/* The first certificate of a buffer/file. */
int x509_parse_cert(const void *buf, size_t len, X509 **ret);
int x509_from_der(const uint8_t *der, size_t len, X509 **ret);
/* Appends the DER certificate to sk (-EINVAL/-E2BIG as x509_from_der, -ENOMEM). */
int x509_stack_push_der(STACK_OF(X509) *sk, const uint8_t *der, size_t len);

/* A PEM private key file (PKCS#8/traditional, unencrypted), at most X509_INPUT_MAX bytes. */
int x509_load_private_key(const char *path, EVP_PKEY **ret);

/* PEM of one certificate (allocated, NUL-terminated). */
int x509_to_pem(X509 *x, char **ret);
/* DER of one certificate (allocated). */
int x509_to_der(X509 *x, uint8_t **ret, size_t *ret_len);

/* 1 if usec (µs since the epoch) is before notBefore, 2 if after notAfter, 0 if inside. */
int x509_check_validity(X509 *x, uint64_t now_usec);
/* notAfter in seconds since the epoch. */
int x509_not_after(X509 *x, uint64_t *ret_sec);
/* "2026-11-28T06:00:00Z" of notBefore/notAfter (buffers of 32 bytes). */
int x509_format_time(const ASN1_TIME *t, char ret[static 32]);
