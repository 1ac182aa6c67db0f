/* SPDX-License-Identifier: MIT */
#pragma once

#include "agent/conf.h"

/* X.509 attestation for the agent (issue 6): the device certificate chain (leaf first, then
 * intermediates up to the verified CA; dps-protocol.md §5.2) and its private key, as an OpenSSL
 * SSL_CTX that dps-client.c hands to libmosquitto (MOSQ_OPT_SSL_CTX), since libmosquitto 2.0
 * cannot load provider keys itself.
 *
 * The key (provisioning.attestation.key_file) is either
 *   - a PEM private key file (PKCS#8 or traditional, unencrypted; refused when accessible to
 *     others; relative names resolve like the symmetric key file: $CREDENTIALS_DIRECTORY, else
 *     beside the configuration), or
 *   - an EC key held in the TPM, through the tpm2-openssl provider: "handle:0x81000003" (a
 *     persistent handle) or a TSS2 PEM key file ("-----BEGIN TSS2 PRIVATE KEY-----"); opened by
 *     x509-tpm-key.c, which gives the SSL_CTX a default-provider key that signs in the TPM; the
 *     private key never leaves the TPM.  TCTI: $TPM2OPENSSL_TCTI, else tpm.tcti.
 * The registration id is the leaf certificate's subject CN (validated per dps-protocol.md §1.2);
 * a configured provisioning.registration_id must equal it. */

typedef struct X509Identity X509Identity;

int x509_identity_load(const Config *c, X509Identity **ret, char **reterr_message);
X509Identity *x509_identity_free(X509Identity *x);

const char *x509_identity_registration_id(const X509Identity *x);
/* SHA-256 thumbprint of the leaf (upper-case hex): stands in for the key in the identity
 * fingerprint, so that a new certificate means a new registration. */
const char *x509_identity_thumbprint(const X509Identity *x);
/* The SSL_CTX (struct ssl_ctx_st *), owned by the identity; libmosquitto takes its own reference. */
void *x509_identity_ssl_ctx(const X509Identity *x);
/* "2027-11-28T06:00:00Z" */
const char *x509_identity_not_after(const X509Identity *x);
