/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/attest.h"
#include "agent/tpm.h"
#include "edgeprov/codec.h"
#include "edgeprov/fileio.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/sas.h"
#include "edgeprov/time-util.h"
#include "edgeprov/tpm-blob.h"


struct TpmAttestation {
        char *tcti;
        char *endorsement_auth, *owner_auth; /* secrets */
        char *ek_ca_file;
        uint32_t slots[2];
        uint32_t active, pending;            /* 0: none */
        char *ek_b64, *srk_b64, *registration_id;
        uint64_t tpm_usec;
};


int tpm_attestation_new(const Config *c, TpmAttestation **ret) {
        TpmAttestation *a = calloc(1, sizeof(*a));
        int r;

        if (!a)
                return -ENOMEM;
        a->tcti = strdup(c->tpm_tcti ?: TPM_TCTI_DEFAULT);
        a->ek_ca_file = c->tpm_ek_ca_file ? strdup(c->tpm_ek_ca_file) : NULL;
        a->slots[0] = TPM_SLOT_A_DEFAULT;
        a->slots[1] = TPM_SLOT_B_DEFAULT;
        if (!a->tcti || (c->tpm_ek_ca_file && !a->ek_ca_file)) {
                tpm_attestation_free(a);
                return -ENOMEM;
        }
        if ((c->tpm_slot_a && conf_parse_tpm_slot(c->tpm_slot_a, &a->slots[0]) < 0) ||
            (c->tpm_slot_b && conf_parse_tpm_slot(c->tpm_slot_b, &a->slots[1]) < 0)) {
                tpm_attestation_free(a);
                return -EINVAL; /* validated by conf.c */
        }
        r = tpm_read_auth_file(c, c->tpm_endorsement_auth_file, &a->endorsement_auth);
        if (r >= 0)
                r = tpm_read_auth_file(c, c->tpm_owner_auth_file, &a->owner_auth);
        if (r < 0) {
                tpm_attestation_free(a);
                return r;
        }
        *ret = a;
        return 0;
}

TpmAttestation *tpm_attestation_free(TpmAttestation *a) {
        if (!a)
                return NULL;
        free(a->tcti);
        erase_and_free(a->endorsement_auth);
        erase_and_free(a->owner_auth);
        free(a->ek_ca_file);
        free(a->ek_b64);
        free(a->srk_b64);
        free(a->registration_id);
        free(a);
        return NULL;
}

static int open_tpm(TpmAttestation *a, Tpm **ret) {
        return tpm_open(a->tcti, a->endorsement_auth, a->owner_auth, ret);
}

int tpm_attestation_load_identity(TpmAttestation *a) {
        _cleanup_(tpm_closep) Tpm *t = NULL;
        _cleanup_free_ uint8_t *ek = NULL, *srk = NULL;
        _cleanup_free_ char *msg = NULL;
        size_t ek_len, srk_len;
        uint64_t start = clock_now_usec(CLOCK_MONOTONIC);
        int r;

        r = open_tpm(a, &t);
        if (r < 0)
                return log_error_errno(r, "Cannot open the TPM (%s): %m", a->tcti);
        r = tpm_get_ek(t, &ek, &ek_len);
        if (r < 0)
                return log_error_errno(r, "Cannot read or create the endorsement key: %m");
        r = tpm_get_srk(t, &srk, &srk_len);
        if (r < 0)
                return log_error_errno(r, "Cannot read or create the storage root key: %m");
        r = tpm_check_ek_cert(t, ek, ek_len, a->ek_ca_file, &msg);
        if (r < 0 && r != -EKEYREJECTED)
                return r;
        if (r == -EKEYREJECTED)
                /* reported, not fatal: the service decides by the enrolled EK */
                log_warning("TPM: %s.", strna(msg));
        else
                log_info("TPM: %s.", strna(msg));
        t = tpm_close(t);
        a->tpm_usec += clock_now_usec(CLOCK_MONOTONIC) - start;

        free(a->ek_b64);
        free(a->srk_b64);
        free(a->registration_id);
        a->ek_b64 = a->srk_b64 = a->registration_id = NULL;
        r = base64_encode(ek, ek_len, &a->ek_b64);
        if (r >= 0)
                r = base64_encode(srk, srk_len, &a->srk_b64);
        if (r >= 0)
                r = tpm_registration_id_from_ek(ek, ek_len, &a->registration_id);
        return r;
}

const char *tpm_attestation_ek_b64(const TpmAttestation *a) {
        return a->ek_b64;
}
const char *tpm_attestation_srk_b64(const TpmAttestation *a) {
        return a->srk_b64;
}
const char *tpm_attestation_registration_id(const TpmAttestation *a) {
        return a->registration_id;
}

int tpm_attestation_set_active_slot(TpmAttestation *a, const char *slot) {
        uint32_t h;
        if (!slot) {
                a->active = 0;
                return 0;
        }
        if (conf_parse_tpm_slot(slot, &h) < 0 || (h != a->slots[0] && h != a->slots[1]))
                return log_warning_errno(EINVAL, "State names TPM key slot '%s', which is not configured; ignoring it.",
                                         slot);
        a->active = h;
        return 0;
}

int tpm_attestation_activate(TpmAttestation *a, const char *authentication_key_b64) {
        _cleanup_(tpm_closep) Tpm *t = NULL;
        _cleanup_free_ uint8_t *blob = NULL;
        size_t len;
        uint32_t slot = a->active == a->slots[0] ? a->slots[1] : a->slots[0];
        uint64_t start = clock_now_usec(CLOCK_MONOTONIC);
        int r;

        a->pending = 0;
        if (strlen(authentication_key_b64) > 2 * TPM_BLOB_MAX)
                return log_error_errno(E2BIG, "The authenticationKey is larger than %d bytes.", TPM_BLOB_MAX);
        r = base64_decode(authentication_key_b64, strlen(authentication_key_b64), &blob, &len);
        if (r < 0)
                return log_error_errno(r == -ENOMEM ? ENOMEM : EBADMSG, "The authenticationKey is not base64.");
        r = open_tpm(a, &t);
        if (r < 0)
                return log_error_errno(r, "Cannot open the TPM (%s): %m", a->tcti);
        r = tpm_activate_blob(t, blob, len, slot);
        a->tpm_usec += clock_now_usec(CLOCK_MONOTONIC) - start;
        if (r < 0)
                return log_error_errno(r, "Cannot activate the authenticationKey in the TPM (slot 0x%08x): %m", slot);
        a->pending = slot;
        log_info("TPM: challenge activated, HMAC key persisted at 0x%08x (active key %s).", slot,
                 a->active ? "kept in its slot" : "none yet");
        return 0;
}

int tpm_attestation_sign(TpmAttestation *a, const char *resource, uint64_t expiry, char **ret_token) {
        _cleanup_(tpm_closep) Tpm *t = NULL;
        _cleanup_free_ char *sr = NULL, *sts = NULL;
        uint32_t slot = a->pending ?: a->active;
        uint8_t sig[32];
        uint64_t start = clock_now_usec(CLOCK_MONOTONIC);
        int r;

        if (!slot)
                return -ENOKEY;
        r = sas_string_to_sign(resource, expiry, &sr, &sts);
        if (r < 0)
                return r;
        r = open_tpm(a, &t);
        if (r < 0)
                return log_error_errno(r, "Cannot open the TPM (%s): %m", a->tcti);
        r = tpm_hmac(t, slot, sts, strlen(sts), sig);
        a->tpm_usec += clock_now_usec(CLOCK_MONOTONIC) - start;
        if (r < 0)
                return log_error_errno(r, "Cannot sign the SAS token in the TPM (slot 0x%08x): %m", slot);
        r = sas_token_format(sr, sig, expiry, SAS_DEFAULT_KEY_NAME, ret_token);
        explicit_bzero(sig, sizeof(sig));
        return r;
}

char *tpm_attestation_pending_slot_string(const TpmAttestation *a) {
        char *s = NULL;
        if (!a->pending)
                return NULL;
        if (asprintf(&s, "0x%08x", a->pending) < 0)
                return NULL;
        return s;
}

void tpm_attestation_commit(TpmAttestation *a) {
        if (a->pending)
                a->active = a->pending;
        a->pending = 0;
}

void tpm_attestation_abort(TpmAttestation *a) {
        a->pending = 0;
}

uint64_t tpm_attestation_take_tpm_usec(TpmAttestation *a) {
        uint64_t u = a->tpm_usec;
        a->tpm_usec = 0;
        return u;
}
