/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* Certificates for X.509 attestation (issue 6; replaces the Azure SDK's certGen.sh), OpenSSL 3
 * API only:
 *   root CA          self-signed, basicConstraints critical CA:TRUE (pathlen as given),
 *                    keyUsage critical keyCertSign+cRLSign, SKI
 *   intermediate CA  signed by a CA, same extensions + AKI
 *   verification     CN = the verification code, signed by the CA's key (proof of possession),
 *                    CA:FALSE, keyUsage digitalSignature, EKU clientAuth, SKI/AKI
 *   device           CN = registration id (validated per dps-protocol.md §1.2), CA:FALSE,
 *                    keyUsage critical digitalSignature(+keyAgreement for EC /
 *                    keyEncipherment for RSA), EKU clientAuth, SKI/AKI
 * Serials are 159 random bits from the CSPRNG (positive, at most 20 octets). */

typedef enum CertKeyType {
        CERT_KEY_EC_P256,
        CERT_KEY_RSA_2048,
        CERT_KEY_RSA_3072,
        _CERT_KEY_TYPE_MAX,
        _CERT_KEY_TYPE_INVALID = -EINVAL,
} CertKeyType;

typedef enum CertKind {
        CERT_ROOT,
        CERT_INTERMEDIATE,
        CERT_VERIFICATION,
        CERT_DEVICE,
        _CERT_KIND_MAX,
} CertKind;

#define CERT_DAYS_MAX 36500
#define CERT_SUBJECT_MAX 64

/* "ec" / "p256", "rsa2048", "rsa3072". */
CertKeyType cert_key_type_from_string(const char *s);

int cert_generate_key(CertKeyType t, EVP_PKEY **ret);

typedef struct CertRequest {
        CertKind kind;
        const char *common_name;  /* required */
        const char *organization; /* optional O= */
        unsigned days;            /* 1..CERT_DAYS_MAX */
        int pathlen;              /* CAs: -1 = no limit */
        int64_t not_before_offset_sec; /* for tests: shifts notBefore (and notAfter) from now */
        EVP_PKEY *key;            /* the subject's key (public part used) */
        X509 *issuer_cert;        /* NULL for a root */
        EVP_PKEY *issuer_key;     /* NULL for a root: signed with key */
} CertRequest;

/* -EINVAL with a message in *reterr (static or allocated? allocated) for a bad request:
 * a CN that is not a valid registration id (device), an issuer that is not a CA, an issuer key
 * that does not match the issuer certificate, days out of range. */
int cert_create(const CertRequest *req, X509 **ret, char **reterr);

/* Does key belong to cert?  1 yes, 0 no. */
int cert_key_matches(X509 *cert, EVP_PKEY *key);

/* PEM of a private key (PKCS#8, unencrypted), allocated and to be erased by the caller. */
int cert_key_to_pem(EVP_PKEY *key, char **ret, size_t *ret_len);
