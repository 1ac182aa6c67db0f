/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "dps/datafile.h"

/* TPM attestation for the local provisioning service (dps-protocol.md §3.2, §6.6–6.10).
 * Over MQTT this is an extension of ours: Azure DPS offers TPM attestation over HTTPS and
 * AMQP only (§2.11).
 *
 *   1. A device of a TPM individual enrollment connects without a password and registers with
 *      {"tpm": {"endorsementKey", "storageRootKey"}}.
 *   2. dps_tpm_challenge() checks the EK against the enrollment (same RSA key), builds the
 *      authenticationKey for a fresh 32-byte HMAC key in software and remembers that key for
 *      the registration id (a newer challenge replaces it): 401 {authenticationKey, keyName,
 *      message}.
 *   3. The device reconnects with a SAS token signed with that key inside its TPM;
 *      dps_tpm_verify() checks it.
 *   4. Once the registration is assigned, dps_tpm_forget() wipes the key: a token made with it
 *      is not accepted again (a replay gets "no TPM challenge outstanding").
 *
 * Issued keys live in memory only, are wiped when dropped and are never logged.  At most
 * DPS_TPM_KEYS_MAX are outstanding (the oldest is dropped); each expires after
 * DPS_TPM_KEY_LIFETIME_USEC. */

#define DPS_TPM_KEYS_MAX 4096
#define DPS_TPM_KEY_LIFETIME_USEC (10 * 60 * UINT64_C(1000000))
#define DPS_TPM_KEY_NAME "registration"

typedef struct DpsTpmKeys DpsTpmKeys;

int dps_tpm_keys_new(DpsTpmKeys **ret);
DpsTpmKeys *dps_tpm_keys_free(DpsTpmKeys *k);
size_t dps_tpm_keys_count(const DpsTpmKeys *k);

/* endorsement_key_b64 / storage_root_key_b64: from the register body (NULL when absent).
 * 0 with *ret_body (the 401 JSON body), or a refusal with *ret_message (static text):
 *   -ENOKEY        the request has no tpm.endorsementKey / storageRootKey
 *   -EBADMSG       EK or SRK is not base64 of a TPM2B_PUBLIC
 *   -EOPNOTSUPP    EK or SRK is not an RSA-2048.. restricted decryption key with SHA-256 and
 *                  AES-128-CFB (nothing a blob can be built for)
 *   -EKEYREJECTED  the EK is not the enrolled one
 *   -ENOTRECOVERABLE the enrollment's own endorsementKey is missing or unusable
 *   -ENOMEM, -EIO */
int dps_tpm_challenge(DpsTpmKeys *k, const DpsEnrollment *e, const char *registration_id,
                      const char *endorsement_key_b64, const char *storage_root_key_b64, uint64_t now_usec,
                      char **ret_body, const char **ret_message);

/* Checks a SAS token (the MQTT password) against the key issued to registration_id.
 * 0 good (*ret_expiry = se), -ENOKEY no key outstanding (never challenged, expired, replaced
 * or consumed), -EBADMSG malformed token, -EBADR another resource, -EKEYEXPIRED,
 * -EKEYREJECTED wrong signature. */
int dps_tpm_verify(DpsTpmKeys *k, const char *registration_id, const char *password, size_t password_len,
                   const char *resource, uint64_t now_usec, uint64_t *ret_expiry);

void dps_tpm_forget(DpsTpmKeys *k, const char *registration_id);
