/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

#include "agent/conf.h"

/* TPM attestation for the manager: the gateway's TPM identity, the challenge answer and SAS
 * tokens signed inside the TPM.  Each call opens the TPM for its job and closes it again
 * (swtpm serves one client at a time; nothing stays loaded).
 *
 * Key slots: the HMAC key of the assignment in use lives in the "active" slot (recorded in
 * the state file).  A new challenge is activated into the other slot ("pending"); it becomes
 * active only when the manager has committed the new assignment (tpm_attestation_commit), so
 * a failure half way never touches the key that works. */

typedef struct TpmAttestation TpmAttestation;

/* Reads one hierarchy password file (name: NULL → *ret = NULL; relative names resolve like
 * key_file).  The caller wipes it (erase_and_free). */
int tpm_read_auth_file(const Config *c, const char *name, char **ret);

/* Reads the hierarchy password files (relative names resolve like key_file). */
int tpm_attestation_new(const Config *c, TpmAttestation **ret);
TpmAttestation *tpm_attestation_free(TpmAttestation *a);

/* Reads (or creates and persists) EK and SRK, checks the EK certificate (logged), derives
 * the registration id. */
int tpm_attestation_load_identity(TpmAttestation *a);
const char *tpm_attestation_ek_b64(const TpmAttestation *a);
const char *tpm_attestation_srk_b64(const TpmAttestation *a);
const char *tpm_attestation_registration_id(const TpmAttestation *a);

/* The slot of the committed assignment ("0x81000100" from the state file; NULL: none). */
int tpm_attestation_set_active_slot(TpmAttestation *a, const char *slot);
/* Activates the challenge into the slot not in use; it becomes the pending slot. */
int tpm_attestation_activate(TpmAttestation *a, const char *authentication_key_b64);
/* A DPS SAS token for resource signed in the TPM with the pending key (or the active one). */
int tpm_attestation_sign(TpmAttestation *a, const char *resource, uint64_t expiry, char **ret_token);
/* "0x81000101": the pending slot, formatted for the state file; NULL when none. */
char *tpm_attestation_pending_slot_string(const TpmAttestation *a);
void tpm_attestation_commit(TpmAttestation *a);
/* Forgets a pending key (the next attempt starts with a new challenge). */
void tpm_attestation_abort(TpmAttestation *a);

/* Time spent talking to the TPM since the last reset, in µs (for the timing report). */
uint64_t tpm_attestation_take_tpm_usec(TpmAttestation *a);
