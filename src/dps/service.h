/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dps/datafile.h"

/* The local provisioning service, independent of any transport: enrollments, symmetric-key
 * attestation, hub allocation, and the register / operation-status state machine of
 * dps-protocol.md §2.  A front end (the mosquitto plugin) reports connections and hands over
 * request messages; the service answers each with one reply addressed to the requester.
 *
 * Error replies (status / errorCode in ProvisioningServiceErrorDetails):
 *   400 / 400001  malformed request topic (unknown request, missing or bad $rid / operationId)
 *   400 / 400002  malformed register body (not JSON, not an object, wrong types, too deep)
 *   400 / 400003  registrationId in the body differs from the connection's
 *   401 / 401002  no, malformed, foreign, expired or wrongly signed SAS token; no matching
 *                 group key; attestation type not usable over MQTT (tpm, x509, none)
 *   404 / 404201  no enrollment for the registration id
 *   404 / 404202  status lookup of a device that never registered
 *   404 / 404203  unknown operation id (or one belonging to another registration, or expired)
 *   413 / 413001  body larger than DPS_BODY_MAX (96 KiB)
 *   429 / 429001  too many operations or registrations in flight, or more register requests
 *                 than limits.registrations_per_minute (retry-after: when the next one is allowed)
 *   503 / 503001  the registration record could not be stored (with retry-after)
 *   500 / 500001  internal error (out of memory, no randomness)
 * Results of an operation (200, in registrationState.errorCode):
 *   status "disabled", errorCode 403001   the enrollment is disabled
 *   status "failed",   errorCode 400208   no linked hub is available for the enrollment, or the custom
 *                                         allocation webhook chose a hub that was not offered
 *   status "failed",   errorCode 502001   custom allocation webhook unreachable or answered non-2xx
 *   status "failed",   errorCode 502002   its answer is not a JSON object with iotHubHostName, or too large
 *   status "failed",   errorCode 504001   it did not answer within the webhook timeout
 */

#define DPS_RETRY_AFTER_DEFAULT 3
#define DPS_RETRY_AFTER_MAX 300

#define DPS_ERROR_BAD_TOPIC 400001
#define DPS_ERROR_BAD_BODY 400002
#define DPS_ERROR_REGISTRATION_ID_MISMATCH 400003
#define DPS_ERROR_NO_HUB 400208
#define DPS_ERROR_UNAUTHORIZED 401002
#define DPS_ERROR_DISABLED 403001
#define DPS_ERROR_NOT_ENROLLED 404201
#define DPS_ERROR_NOT_REGISTERED 404202
#define DPS_ERROR_NO_OPERATION 404203
#define DPS_ERROR_TOO_LARGE 413001
#define DPS_ERROR_THROTTLED 429001
#define DPS_ERROR_INTERNAL 500001
#define DPS_ERROR_WEBHOOK_FAILED 502001     /* custom allocation: unreachable, or not 2xx */
#define DPS_ERROR_WEBHOOK_BAD_ANSWER 502002 /* custom allocation: not JSON, no iotHubHostName, too large */
#define DPS_ERROR_WEBHOOK_TIMEOUT 504001    /* custom allocation: no answer within the timeout */
#define DPS_ERROR_STORE 503001

typedef struct DpsService DpsService;
typedef struct DpsClient DpsClient;

typedef struct DpsServiceLimits {
        unsigned max_operations_per_registration; /* the oldest is dropped beyond this */
        unsigned max_operations;                  /* in total; 429 beyond */
        size_t max_operation_bytes;               /* stored result bodies in total; 429 beyond */
        unsigned max_registrations;               /* registration records; 429 beyond */
        uint64_t operation_lifetime_usec;         /* an operation id can be polled this long */
        unsigned registrations_per_minute;        /* register requests; 429 + retry-after beyond; 0: no limit */
} DpsServiceLimits;

#define DPS_LIMITS_DEFAULT                                              \
        ((DpsServiceLimits) {                                           \
                .max_operations_per_registration = 4,                   \
                .max_operations = 10000,                                \
                .max_operation_bytes = 64 * 1024 * 1024,                \
                .max_registrations = 1000000,                           \
                .operation_lifetime_usec = 10 * 60 * UINT64_C(1000000), \
        })

/* For tests: returns the wall clock in µs since the epoch; it is used for everything
 * (SAS expiry, timestamps and operation lifetime). */
typedef uint64_t (*DpsClockFunc)(void *userdata);

int dps_service_new(DpsService **ret);
DpsService *dps_service_free(DpsService *s);
static inline void dps_service_freep(DpsService **s) {
        if (*s)
                dps_service_free(*s);
}

/* Loads the data file and remembers its path: when the file changes (checked at most once a
 * second, on connect), it is loaded again; a broken file is reported once and the previous
 * data stays in use. */
int dps_service_load(DpsService *s, const char *path, char **reterr_message);
/* 1 when reloaded, 0 when unchanged, -errno (with a message) when the new file is broken. */
int dps_service_reload_if_changed(DpsService *s, bool force, char **reterr_message);
/* Takes ownership of data (for tests and fuzzers: no file behind it). */
void dps_service_set_data(DpsService *s, DpsData *data);
const DpsData *dps_service_get_data(const DpsService *s);

/* Changes the enrollment data for the admin API: edit() is called on a copy of the current
 * data (it should use the dps_data_put/remove functions, which validate) and may set
 * *reterr_message; the result is written to the data file atomically (when there is one)
 * and then used.  Nothing changes on failure.  -EBUSY: another process holds the data file's
 * lock (flock on its directory, as edgeprov-dpsctl --data takes it); -EBADMSG: the file on disk was changed into something broken. */
typedef int (*DpsDataEditFunc)(DpsData *d, void *userdata, char **reterr_message);
int dps_service_edit_data(DpsService *s, DpsDataEditFunc edit, void *userdata, char **reterr_message);

/* Drives asynchronous work without blocking (custom allocation webhooks): a front end calls it
 * from its loop often (the plugin on every MOSQ_EVT_TICK).  While a webhook runs, the register
 * operation answers 202 assigning. */
int dps_service_process(DpsService *s);
/* Whether dps_service_process() has anything to advance: a webhook running or geoLatency probes
 * configured.  A front end with its own timer (edgeprov-dps-httpd) stops ticking when not, and
 * ticks again after the next request (which may start a webhook or load hubs to probe). */
bool dps_service_has_pending_work(const DpsService *s);
/* Webhook timeout (ms; 0: DPS_WEBHOOK_TIMEOUT_MSEC_DEFAULT) and CA file for https webhooks
 * (NULL: the system's). */
int dps_service_set_webhook_options(DpsService *s, unsigned timeout_msec, const char *cafile);
/* geoLatency probes of the hubs' probeAddress: every interval, each connect given up after
 * timeout (0: the defaults of latency.h, 30 s and 3 s). */
void dps_service_set_latency_options(DpsService *s, uint64_t interval_usec, uint64_t timeout_usec);

/* Keeps the registration records in the SQLite database at path (created when missing), so
 * that they survive restarts and crashes and reprovisioning sees every earlier assignment;
 * see store.h.  Without it, records live in memory only. */
int dps_service_open_store(DpsService *s, const char *path, char **reterr_message);
struct DpsStore *dps_service_get_store(const DpsService *s); /* NULL without one */

/* Overrides the data file's idScope (NULL: use the file's). */
int dps_service_set_id_scope(DpsService *s, const char *id_scope);
const char *dps_service_get_id_scope(const DpsService *s);
int dps_service_set_retry_after(DpsService *s, unsigned seconds); /* 1..DPS_RETRY_AFTER_MAX */
void dps_service_set_limits(DpsService *s, const DpsServiceLimits *limits);
void dps_service_set_clock(DpsService *s, DpsClockFunc func, void *userdata);

typedef enum DpsConnectResult {
        DPS_CONNECT_NOT_OURS,  /* not a DPS username (or none): somebody else decides */
        DPS_CONNECT_ACCEPTED,  /* a DPS client; authentication errors are answered on its first request */
        DPS_CONNECT_REJECTED,  /* a DPS username, but client id != registration id or a foreign ID scope */
        _DPS_CONNECT_RESULT_MAX,
} DpsConnectResult;

/* A new connection.  conn is an opaque key chosen by the front end (the broker's client
 * pointer); an existing connection with the same key is replaced.  The SAS token (password) is
 * checked here against the enrollment (individual first, then the groups' derived keys) and
 * the outcome remembered; the token itself is kept (wiped on free) to check again when the
 * data file is reloaded.  Returns a DpsConnectResult, or -ENOMEM.  ret_client (optional) is
 * set for DPS_CONNECT_ACCEPTED only; it belongs to the service. */
int dps_service_connect(DpsService *s, const void *conn, const char *client_id, const char *username,
                        const char *password, size_t password_len, DpsClient **ret_client);
/* X.509 (issue 6, src/dps/attest-x509.h): the same with the TLS client certificate chain, leaf
 * first (taken over, also on failure; NULL: none).  A client with a chain and no password, or
 * with an X.509 individual enrollment, is authenticated by dps_x509_authenticate(); a refusal is
 * answered 401 / 401002 with the reason on its first request.  The _der variant is for front ends
 * holding DER blobs (the HTTPS front: gnutls_certificate_get_peers()). */
struct stack_st_X509;
int dps_service_connect_x509(DpsService *s, const void *conn, const char *client_id, const char *username,
                             const char *password, size_t password_len, struct stack_st_X509 *chain,
                             DpsClient **ret_client);
int dps_service_connect_x509_der(DpsService *s, const void *conn, const char *client_id, const char *username,
                                 const uint8_t *const *der, const size_t *der_len, size_t n,
                                 DpsClient **ret_client);
struct DpsCaStore *dps_service_get_ca_store(const DpsService *s);

/* NULL when conn is not one of our clients. */
DpsClient *dps_service_get_client(DpsService *s, const void *conn);
void dps_service_disconnect(DpsService *s, const void *conn);
size_t dps_service_n_clients(const DpsService *s);
size_t dps_service_n_operations(const DpsService *s);

const char *dps_client_get_registration_id(const DpsClient *c);
/* HTTPS front (rest.c): every HTTP request is a new connection, but a TPM challenge key is
 * wiped once its registration is done, so the token that registered cannot be checked again
 * when the device polls with it.  The front remembers (operation id, digest of that token,
 * its expiry) and vouches for a poll presenting exactly that token: operation-status requests
 * of this client are then authorized until expiry (seconds since the epoch); register
 * requests still need their own credentials. */
void dps_client_vouch_for_poll(DpsClient *c, uint64_t expiry);

typedef struct DpsReply {
        unsigned status;   /* 200, 202, 4xx, 5xx */
        char *topic;       /* $dps/registrations/res/{status}/?$rid={rid}[&retry-after=N] */
        char *body;        /* JSON, NUL-terminated */
        size_t body_len;
} DpsReply;

void dps_reply_done(DpsReply *r);

/* Handles one message the client published under $dps/registrations/.  Always produces a
 * reply for the requesting client (errors included) and returns 0; -ENOMEM only when not even
 * an error reply could be built. */
int dps_client_handle_request(DpsClient *c, const char *topic, const void *payload, size_t len, DpsReply *ret);

/* Device registration status lookup (the HTTPS POST /{idScope}/registrations/{id}): the
 * client's current DeviceRegistrationResult, 200, from the registration store (or, without
 * one, what this process assigned); 404/404202 when the device never registered; the same
 * authentication answers as a register (a TPM device must present its SAS token).  Like
 * dps_client_handle_request, errors are replies and -ENOMEM the only failure. */
int dps_client_status_lookup(DpsClient *c, DpsReply *ret);

/* The hub allocation used by register for hashed and static (exported for tests and the admin
 * tools): the enrollment's iotHubHostName, else a weighted rendezvous hash of the registration
 * id over the enrollment's iotHubs, else over the linked hubs with applyAllocationPolicy.
 * geoLatency: dps_allocate_hub_latency() in latency.h; custom: the webhook.
 * -ENXIO when there is no candidate. */
int dps_allocate_hub(const DpsData *d, const DpsEnrollment *e, const char *registration_id, const char **ret_hub);
