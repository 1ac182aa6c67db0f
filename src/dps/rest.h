/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "dps/service.h"

/* The DPS HTTPS REST API (dps-protocol.md §3) on top of the transport-independent core
 * (service.h), for the HTTPS front edgeprov-dps-httpd.  Each HTTP request becomes one
 * short-lived core connection (username {scope}/registrations/{id}/api-version=…, client id =
 * registration id, password = the Authorization header), one core request (register or
 * operation status) and a disconnect, so both fronts share the core's rules, enrollments,
 * TPM challenges and registration records.
 *
 * Errors produced here (ProvisioningServiceErrorDetails + x-ms-error-code), besides the core's:
 *   400 / 400004  api-version missing or not valid; registration id or ID scope malformed
 *   404 / 404001  no such resource (path not one of the DPS device paths)
 *   405 / 405001  method not allowed on this path (Allow: is set)
 *   413 / 413001  body larger than DPS_BODY_MAX (checked by the front before the body is read)
 *   415 / 415001  Content-Type present but not application/json
 */

#define DPS_ERROR_REST_BAD_REQUEST 400004
#define DPS_ERROR_REST_NOT_FOUND 404001
#define DPS_ERROR_REST_METHOD 405001
#define DPS_ERROR_REST_MEDIA_TYPE 415001

typedef struct DpsRestRequest {
        const void *conn;               /* a key unique among requests in flight */
        const char *method;
        const char *path;               /* raw (percent-encoded) path, without the query */
        const char *api_version;        /* the api-version query parameter, decoded; NULL: absent */
        const char *authorization;      /* the Authorization header; NULL: absent */
        const char *content_type;       /* NULL: absent */
        const void *body;
        size_t body_len;
        /* the TLS client certificate chain, leaf first, DER (n_peer 0: none); used for X.509
         * attestation when there is no Authorization header */
        const uint8_t *const *peer_der;
        const size_t *peer_der_len;
        size_t n_peer;
} DpsRestRequest;

typedef struct DpsRestReply {
        unsigned status;
        int retry_after;                /* seconds, -1: no retry-after header */
        int64_t error_code;             /* x-ms-error-code, 0: none */
        const char *allow;              /* Allow header for 405, static */
        char *location;                 /* Location header for 202, NULL: none */
        char *body;                     /* JSON, NUL-terminated */
        size_t body_len;
} DpsRestReply;

void dps_rest_reply_done(DpsRestReply *r);

/* The REST layer over one service.  It keeps, for the last DPS_REST_VOUCH_MAX registrations
 * made with an Authorization header, (operation id, SHA-256 of that header, its expiry), so
 * that the polls presenting the same token are authorized even when the core can no longer
 * check it (TPM: the challenge key is wiped once used; see dps_client_vouch_for_poll). */
#define DPS_REST_VOUCH_MAX 4096
typedef struct DpsRest DpsRest;
int dps_rest_new(DpsService *s, DpsRest **ret);
DpsRest *dps_rest_free(DpsRest *r);

/* Always fills ret (errors included) and returns 0; -ENOMEM only when not even an error
 * reply could be built. */
int dps_rest_handle(DpsRest *rest, const DpsRestRequest *rq, DpsRestReply *ret);

/* A ProvisioningServiceErrorDetails reply (exported for the front's own errors: 413, 503). */
int dps_rest_error(unsigned status, int64_t code, int retry_after, const char *message, DpsRestReply *ret);
