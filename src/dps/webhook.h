/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* HTTP(S) POSTs of the custom allocation webhook (dps-protocol.md §7.3) on libcurl's multi
 * interface: dps_webhook_post() only queues the transfer; dps_webhook_process() (called from
 * the front end's loop, e.g. mosquitto's MOSQ_EVT_TICK) advances every transfer without
 * blocking (curl_multi_perform) and calls the callbacks of finished ones.  No call here ever
 * waits for the network.
 *
 * The callback gets the HTTP status and the body (NUL-terminated, at most
 * DPS_WEBHOOK_RESPONSE_MAX bytes), or error < 0: -ETIMEDOUT (no complete answer within the
 * timeout), -E2BIG (answer too large), -ECANCELED (dps_webhook_free), -EIO (anything else,
 * with libcurl's text in error_text).  It is called exactly once per post, never from inside
 * dps_webhook_post. */

#define DPS_WEBHOOK_RESPONSE_MAX (64 * 1024)
#define DPS_WEBHOOK_MAX_RUNNING 64
#define DPS_WEBHOOK_TIMEOUT_MSEC_DEFAULT 10000
#define DPS_WEBHOOK_URL_MAX 2048

typedef struct DpsWebhook DpsWebhook;

typedef void (*DpsWebhookDone)(void *userdata, long http_status, const char *body, size_t body_len, int error,
                               const char *error_text);

int dps_webhook_new(DpsWebhook **ret);
DpsWebhook *dps_webhook_free(DpsWebhook *w); /* cancels everything (callbacks with -ECANCELED) */
void dps_webhook_set_timeout(DpsWebhook *w, unsigned msec);
int dps_webhook_set_cafile(DpsWebhook *w, const char *path); /* NULL: the system's CAs */

/* -EBUSY when DPS_WEBHOOK_MAX_RUNNING transfers are running. */
int dps_webhook_post(DpsWebhook *w, const char *url, const char *body, DpsWebhookDone cb, void *userdata);
int dps_webhook_process(DpsWebhook *w);
size_t dps_webhook_n_running(const DpsWebhook *w);

/* http:// or https:// URL of at most DPS_WEBHOOK_URL_MAX characters, no whitespace. */
int dps_webhook_url_is_valid(const char *url);
