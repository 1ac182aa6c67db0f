/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

/* One DPS registration transaction over MQTT/TLS, driven by an sd-event loop:
 * connect → subscribe → register → poll (honouring retry-after) → result.
 * The callback is invoked exactly once, from a deferred event source (never from inside a
 * libmosquitto callback), after which the client may be freed. */

typedef struct DpsClient DpsClient;

typedef struct DpsClientParams {
        const char *host;
        int port;
        const char *ca_file;          /* NULL: system trust store */
        const char *id_scope;
        const char *registration_id;
        const char *api_version;
        const char *password;         /* SAS token (secret: copied, wiped on free) */
        const char *payload_json;     /* custom payload or NULL */
        const char *tpm_ek_b64;       /* TPM attestation: sent as tpm.endorsementKey/storageRootKey, or NULL */
        const char *tpm_srk_b64;
        uint64_t request_timeout_usec;
} DpsClientParams;

typedef enum DpsOutcome {
        DPS_OUTCOME_ASSIGNED,
        DPS_OUTCOME_TRANSIENT,  /* network, TLS, timeout, 429, 5xx: try again later */
        DPS_OUTCOME_REJECTED,   /* 4xx, failed, disabled: the service said no */
        _DPS_OUTCOME_MAX,
} DpsOutcome;

const char *dps_outcome_to_string(DpsOutcome o);

typedef struct DpsResult {
        DpsOutcome outcome;
        unsigned status;            /* last response status, 0 if none */
        int retry_after;            /* seconds, -1 if none */
        const char *operation_id;
        const char *registration_id;
        const char *assigned_hub;
        const char *device_id;
        const char *substatus;
        const char *dps_status;     /* "assigned", "failed", "disabled", ... */
        int64_t error_code;
        const char *error_message;  /* human readable, always set unless assigned */
        const char *tracking_id;
        const char *authentication_key; /* TPM challenge (401 with authenticationKey), base64, or NULL */
} DpsResult;

typedef void (*DpsClientCallback)(DpsClient *c, const DpsResult *result, void *userdata);

int dps_client_new(sd_event *e, const DpsClientParams *p, DpsClientCallback cb, void *userdata, DpsClient **ret);
int dps_client_start(DpsClient *c);
DpsClient *dps_client_free(DpsClient *c);
