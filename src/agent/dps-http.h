/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "agent/dps-client.h"

/* One DPS registration transaction over HTTPS (dps-protocol.md §3), driven by an sd-event
 * loop through libcurl's multi interface (its sockets and timer become sd-event sources; no
 * call blocks): PUT …/register → 202 + operationId → GET …/operations/{id} after retry-after
 * → 200 assigned.  The same parameters, result and outcome classes as the MQTT client
 * (dps-client.h); the callback is invoked exactly once, from a deferred event source, after
 * which the transaction may be freed.  Normally used through dps_client_new() with
 * DpsClientParams.transport = DPS_TRANSPORT_HTTPS. */

typedef struct DpsHttp DpsHttp;
typedef void (*DpsHttpCallback)(DpsHttp *h, const DpsResult *result, void *userdata);

#define DPS_HTTP_MAX_THROTTLED_RETRIES 5

int dps_http_new(sd_event *e, const DpsClientParams *p, DpsHttpCallback cb, void *userdata, DpsHttp **ret);
/* As dps_client_set_accepted_callback(): the service accepted the registration (new operationId). */
typedef void (*DpsHttpAcceptedCallback)(DpsHttp *h, const char *operation_id, int retry_after, void *userdata);
void dps_http_set_accepted_callback(DpsHttp *h, DpsHttpAcceptedCallback cb);
/* X.509: the TLS client certificate (PEM, may hold the chain) and its key (NULL: in cert_file). */
void dps_http_set_client_certificate(DpsHttp *h, const char *cert_file, const char *key_file);
int dps_http_start(DpsHttp *h);
DpsHttp *dps_http_free(DpsHttp *h);
