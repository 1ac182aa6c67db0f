/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "dps/datafile.h"

/* X.509 attestation of the local provisioning service (issue 6, dps-protocol.md §5).
 *
 * CA certificates (§5.4): added (PEM or DER) as "Unverified", a verification code (random,
 * single use, DPS_CA_CODE_LIFETIME_USEC) is issued, and a verification certificate whose
 * subject CN is that code, signed by the CA's key and valid now, makes it "Verified".  At most
 * DPS_CA_MAX certificates (the Azure limit).  Kept in memory and, with a database, in its table
 * "ca_certificates" (own connection to the registration database, WAL); a change committed by
 * another process is picked up on the next use (PRAGMA data_version).
 *
 * Enrollments (attestation.x509 in the data file, service.json X509Attestation):
 *   group:      "caReferences": {"primary": NAME[, "secondary": NAME]}   a CA of this store
 *               "signingCertificates": {"primary": {"certificate": PEM}}  a root or intermediate
 *   individual: "clientCertificates": {"primary": {"certificate": PEM} |
 *                                                  {"info": {"sha1Thumbprint"|"sha256Thumbprint": HEX}}}
 *
 * Authentication of a presented chain (leaf first):
 *   1. the leaf CN is a valid registration id and equals the connection's registration id;
 *   2. the leaf is valid now, not a CA, keyUsage (if present) has digitalSignature, EKU (if
 *      present) has clientAuth;
 *   3. an X.509 individual enrollment for the id: the leaf must be its certificate (DER equal,
 *      or the thumbprint); enabled → OK;
 *   4. otherwise the chain (presented intermediates + the store's certificates as untrusted
 *      helpers) must lead to a *verified* CA of the store (X509_verify_cert, partial chains
 *      allowed so an intermediate can be the verified anchor, purpose sslclient, time = now);
 *      walking it from the leaf's issuer upwards, the first certificate that an enrollment group
 *      names (caReferences or signingCertificates) selects the group (most specific first,
 *      §5.3); a disabled group refuses.
 * Every refusal is -EACCES with a message meant for the device (401 / 401002). */

#define DPS_CA_MAX 25
#define DPS_CA_NAME_MAX 64
#define DPS_CA_CODE_LIFETIME_USEC (60 * 60 * UINT64_C(1000000))
#define DPS_CA_CODE_BYTES 24 /* 48 upper-case hex characters, like Azure's codes */

typedef struct DpsCaStore DpsCaStore;

typedef struct DpsCaInfo {
        const char *name;
        bool verified;
        const char *subject;       /* "CN=..., O=..." */
        const char *thumbprint;    /* SHA-1, upper-case hex (Azure's "thumbprint") */
        const char *sha256;
        const char *not_before, *not_after; /* "YYYY-MM-DDTHH:MM:SSZ" */
        uint64_t created_usec, updated_usec;
        bool code_pending;         /* a verification code is outstanding */
        X509 *cert;                /* borrowed */
} DpsCaInfo;

int dps_ca_store_new(DpsCaStore **ret);
DpsCaStore *dps_ca_store_free(DpsCaStore *cas);
/* Opens (creates) the table in the SQLite database at path and loads it. */
int dps_ca_store_open_db(DpsCaStore *cas, const char *path, char **reterr);
/* For tests: the clock (µs since the epoch); NULL: the real one. */
void dps_ca_store_set_clock(DpsCaStore *cas, uint64_t (*clock)(void *), void *userdata);

/* 0 or -errno with a message: -EEXIST (name taken or the same certificate under another name),
 * -E2BIG (DPS_CA_MAX), -EINVAL (not a certificate, not a CA, bad name), -EIO (database). */
int dps_ca_add(DpsCaStore *cas, const char *name, const void *cert, size_t len, bool verified, char **reterr);
int dps_ca_delete(DpsCaStore *cas, const char *name); /* -ENOENT */
size_t dps_ca_count(DpsCaStore *cas);
int dps_ca_get(DpsCaStore *cas, size_t i, DpsCaInfo *ret); /* -ENOENT beyond the end */
int dps_ca_find(DpsCaStore *cas, const char *name, DpsCaInfo *ret); /* -ENOENT */
/* A new code (replacing an outstanding one): ret_code gets DPS_CA_CODE_BYTES*2+1 chars. */
int dps_ca_generate_code(DpsCaStore *cas, const char *name, char ret_code[static 2 * DPS_CA_CODE_BYTES + 1],
                         uint64_t *ret_expiry_usec);
/* Checks the proof-of-possession certificate; the code is used up by every attempt.
 * -ENOENT no such CA, -ENOKEY no outstanding code, -EKEYEXPIRED code expired,
 * -EACCES refused (message: CN is not the code, not signed by the CA's key, not valid now). */
int dps_ca_verify(DpsCaStore *cas, const char *name, const void *cert, size_t len, char **reterr);

/* The chain as the TLS layer saw it, leaf first.  See above.  ret_not_after_sec: the leaf's
 * notAfter (the authentication ends then).  cas may be NULL (no CA: groups cannot match). */
int dps_x509_authenticate(DpsCaStore *cas, const DpsData *d, const char *registration_id, STACK_OF(X509) *chain,
                          uint64_t now_usec, const DpsEnrollment **ret_enrollment, uint64_t *ret_not_after_sec,
                          char **ret_message);

/* The same for a front end holding DER blobs (the HTTPS front: gnutls_certificate_get_peers()):
 * der[i]/der_len[i], i < n (1..X509_CHAIN_MAX), leaf first. */
int dps_x509_authenticate_der(DpsCaStore *cas, const DpsData *d, const char *registration_id,
                              const uint8_t *const *der, const size_t *der_len, size_t n, uint64_t now_usec,
                              const DpsEnrollment **ret_enrollment, uint64_t *ret_not_after_sec, char **ret_message);

/* Builds a chain from DER blobs (for front ends). */
int dps_x509_chain_from_der(const uint8_t *const *der, const size_t *der_len, size_t n, STACK_OF(X509) **ret);
