/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <systemd/sd-event.h>

/* One DPS registration transaction over MQTT/TLS, driven by an sd-event loop:
 * connect → subscribe → register → poll (honouring retry-after) → result.
 * The callback is invoked exactly once, from a deferred event source (never from inside a
 * libmosquitto callback), after which the client may be freed. */

typedef struct DpsClient DpsClient;

/* The wire: MQTT (this file) or HTTPS REST (dps-http.c, issue 9).  Everything above the
 * client (manager, downstream) is the same for both. */
typedef enum DpsTransport {
        DPS_TRANSPORT_MQTT,
        DPS_TRANSPORT_HTTPS,
        _DPS_TRANSPORT_MAX,
        _DPS_TRANSPORT_INVALID = -EINVAL,
} DpsTransport;

const char *dps_transport_to_string(DpsTransport t);
DpsTransport dps_transport_from_string(const char *s);

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
        void *ssl_ctx;                /* X.509 (issue 6): an SSL_CTX with the client certificate chain and
                                       * key, handed to libmosquitto (MOSQ_OPT_SSL_CTX); NULL: none */
        const char *operation_id;     /* resume: poll this operation first instead of registering;
                                       * if the service no longer knows it (4xx), register anew */
        uint64_t request_timeout_usec;
        DpsTransport transport;       /* 0: MQTT */
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

/* Seconds until a poll for a 202's retry-after (< 0: none given): 2 s by default, clamped to
 * 1..300 s.  Both transports' timers and the downstream scheduler use it. */
int dps_poll_delay_sec(int retry_after);

int dps_client_new(sd_event *e, const DpsClientParams *p, DpsClientCallback cb, void *userdata, DpsClient **ret);
/* Called (with the same userdata) as soon as the service accepts a registration (202 with a
 * new operationId), before the first poll, so that the caller can persist it and resume polling
 * after a crash instead of registering again.  Runs inside libmosquitto's message callback:
 * it must not free the client.  The same operation resumed is not reported again.  retry_after:
 * the service's retry-after in seconds (the first poll is due then), -1 if none. */
typedef void (*DpsClientAcceptedCallback)(DpsClient *c, const char *operation_id, int retry_after, void *userdata);
void dps_client_set_accepted_callback(DpsClient *c, DpsClientAcceptedCallback cb);
int dps_client_start(DpsClient *c);
DpsClient *dps_client_free(DpsClient *c);
