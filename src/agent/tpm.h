/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The gateway's TPM through tpm2-tss ESYS (dps-protocol.md §6, platform-notes.md A/B).
 *
 * There is no resource manager in front of swtpm, and swtpm serves one client at a time, so
 * this code is its own resource manager: a Tpm is opened for one short job and closed right
 * after (never kept open while idle); every session and transient object it creates is
 * flushed on every path; transients left behind by a crashed run are flushed on open.
 * Persistent objects (EK, SRK, key slots) are never flushed, only closed; an EK or SRK that
 * exists is never evicted.
 *
 * Errors are logged with Tss2_RC_Decode and mapped to:
 *   -ECONNREFUSED  the TPM cannot be reached (TCTI I/O, nothing listening)
 *   -EBADMSG       the TPM refused a blob (integrity, binding, size, value): the service's
 *                  blob does not fit this TPM
 *   -EIO           any other TPM failure */

#define TPM_EK_HANDLE 0x81010001u
#define TPM_SRK_HANDLE 0x81000001u
#define TPM_SLOT_A_DEFAULT 0x81000100u
#define TPM_SLOT_B_DEFAULT 0x81000101u
#define TPM_EK_CERT_NV_INDEX 0x01c00002u
#define TPM_EK_CERT_ECC_NV_INDEX 0x01c0000au
#define TPM_TCTI_DEFAULT "device:/dev/tpmrm0"

typedef struct Tpm Tpm;

/* Connects (Tss2_TctiLdr_Initialize), Esys_Startup(CLEAR), flushes leftover transient objects
 * and sessions.  Hierarchy passwords may be NULL (empty). */
int tpm_open(const char *tcti, const char *endorsement_auth, const char *owner_auth, Tpm **ret);
Tpm *tpm_close(Tpm *t);
static inline void tpm_closep(Tpm **t) {
        if (*t)
                tpm_close(*t);
}

/* The marshaled TPM2B_PUBLIC of the EK / SRK, read from their persistent handles or, when
 * absent, created from the TCG templates (EK L-1 with 256 zero bytes of unique; SRK) and
 * persisted. */
int tpm_get_ek(Tpm *t, uint8_t **ret_pub, size_t *ret_len);
int tpm_get_srk(Tpm *t, uint8_t **ret_pub, size_t *ret_len);

/* Reads the RSA EK certificate from NV 0x01c00002 and checks that its public key is the EK's
 * (ek_pub as from tpm_get_ek); with ca_file also verifies it against that bundle.
 * Returns 1 matched (and verified), 0 no certificate in NV, -EKEYREJECTED mismatch or not
 * verified; *ret_message (optional) describes the outcome. */
int tpm_check_ek_cert(Tpm *t, const uint8_t *ek_pub, size_t ek_len, const char *ca_file, char **ret_message);

/* registrationId = lowercase base32 (no padding) of SHA-256(marshaled TPM2B_PUBLIC EK). */
int tpm_registration_id_from_ek(const uint8_t *ek_pub, size_t len, char **ret);

/* Activates an authenticationKey blob (decoded): PolicySecret(endorsement) session,
 * ActivateCredential(SRK, EK), Import and Load under the SRK, and persists the HMAC key at
 * slot (evicting what was there first).  Nothing else is touched. */
int tpm_activate_blob(Tpm *t, const void *blob, size_t len, uint32_t slot);

/* HMAC-SHA256 inside the TPM with the key persisted at slot (data ≤ 1024 bytes). */
int tpm_hmac(Tpm *t, uint32_t slot, const void *data, size_t len, uint8_t ret[32]);

/* 1 when a persistent object exists at handle, 0 when not. */
int tpm_handle_exists(Tpm *t, uint32_t handle);
/* Evicts the persistent object at slot; 0 also when there was none. */
int tpm_evict(Tpm *t, uint32_t slot);

/* The downstream group key (issue 5): TPM2_Create of a keyedhash HMAC-SHA256 object under the
 * SRK with the key as its sensitive data, sent parameter-encrypted in a session salted with the
 * SRK; fixedTPM|fixedParent (never duplicable), empty auth, noDA.  Returns the marshaled
 * TPM2B_PUBLIC followed by the TPM2B_PRIVATE (encrypted by the SRK; loadable in this TPM only).
 * The SRK must exist (tpm_get_srk). */
int tpm_seal_hmac_key(Tpm *t, const void *key, size_t len, uint8_t **ret_blob, size_t *ret_len);
/* Loads such a blob under the SRK, computes HMAC-SHA256(key, data[i]) for each of the n strings
 * (each ≤ 1024 bytes) and flushes it: one Load, n HMACs, one FlushContext. */
int tpm_hmac_with_blob(Tpm *t, const void *blob, size_t blob_len, const char *const *data, size_t n,
                       uint8_t (*ret)[32]);

/* Read only (nothing is created): the marshaled TPM2B_PUBLIC at a persistent handle, and the
 * whole content of an NV index (at most max bytes).  -ENOENT when absent. */
int tpm_read_public(Tpm *t, uint32_t handle, uint8_t **ret_pub, size_t *ret_len);
int tpm_nv_read_all(Tpm *t, uint32_t index, size_t max, uint8_t **ret, size_t *ret_len);
