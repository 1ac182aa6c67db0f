/* SPDX-License-Identifier: MIT */
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

/* The X.509 identity's private key held in the TPM (issue 6, docs/x509.md §4), through the
 * tpm2-openssl provider.
 *
 * URI is "handle:0x81……" (a persistent key) or the path of a TSS2 PEM key file; TCTI (NULL: the
 * provider's default, /dev/tpmrm0) is passed as $TPM2OPENSSL_TCTI unless that is set already.
 *
 * The key is opened in a library context of its own (providers tpm2 + default), and what is
 * returned is an EC key of the default library context whose public half is the certificate's and
 * whose ECDSA signatures are made by that TPM key (one TPM2_Sign per handshake).  So the SSL_CTXs
 * (libmosquitto's, libcurl's) stay entirely in the default provider: the transcript hashes, the
 * key exchange and the verification of the service's certificates never reach the TPM — which is
 * what failed with a property query on the SSL_CTX (OpenSSL 3.0 then hashes in the TPM and swtpm,
 * without a resource manager, runs out of object slots: TPM_RC_OBJECT_MEMORY).
 *
 * EC keys only (NIST P-256/P-384/P-521); an RSA key in the TPM is refused with a message.  The TPM
 * key is freed (its transient object flushed by the provider) with the last reference to the
 * returned key.  Returns 0, or -EINVAL/-ENOMEM with a message in *reterr_message. */
int x509_tpm_key_load(const char *uri, const char *tcti, X509 *leaf, EVP_PKEY **ret, char **reterr_message);
