/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

/* The process split (docs/architecture.md, "Two processes").
 *
 * edgeprovd itself never loads OpenSSL, libmosquitto, libcurl or tpm2-tss: everything that
 * needs them (the TLS exchanges with the provisioning service, the TPM, the X.509 identity)
 * runs in edgeprov-worker, a child process started when there is such work and stopped
 * WORKER_LINGER_USEC after the last of it.  An idle daemon is therefore small; a busy one
 * is two processes.
 *
 * The two talk over a SOCK_SEQPACKET socket pair (the worker's end is its fd WORKER_FD), one
 * JSON object per datagram, at most WORKER_MSG_MAX bytes:
 *   request  {"id": N, "m": "<method>", ...}      the daemon's synchronous calls (tpm.*, x509.load)
 *   reply    {"id": N, "r": 0 | -errno, ...}
 *   exchange {"m": "exchange", "x": N, ...params}  asynchronous; "cancel" {"x": N} ends it early
 *   event    {"ev": "accepted" | "result", "x": N, ...}
 * Both ends refuse larger or malformed datagrams; the daemon stops a worker that sends one. */

#define WORKER_FD 3
#define WORKER_MSG_MAX (128 * 1024)
#define WORKER_LINGER_USEC (3 * 1000000ULL)
#define WORKER_CALL_TIMEOUT_MSEC (120 * 1000)

/* $EDGEPROV_WORKER, else PKGLIBEXECDIR/edgeprov-worker */
const char *worker_path(void);

/* ---- daemon side (worker-client.c) ---- */

/* The event loop for asynchronous exchanges and the linger timer; without one (edgeprovd's
 * one-shot modes) only synchronous calls work and the worker lives until worker_shutdown(). */
void worker_set_event(sd_event *e);
/* Stops the worker (if running) and waits for it. */
void worker_shutdown(void);

/* A synchronous call: starts the worker when needed, sends args (consumed; "id" and "m" are
 * added) and waits for the reply.  Returns the reply's "r" (*ret_reply set, also when "r" is an
 * error, to be released by the caller), or -errno without a reply: the worker could not be
 * started or died. */
int worker_call(const char *method, struct json_object *args, struct json_object **ret_reply);
bool worker_running(void);
/* Sends msg (consumed) without waiting for a reply; starts the worker when needed. */
int worker_send(struct json_object *msg);

/* Holds the worker running (an exchange in flight, an open TPM); the last release arms the
 * linger timer. */
void worker_hold(void);
void worker_release(void);

/* Who gets the events, and who hears that the worker died (with a description). */
typedef void (*WorkerEventHandler)(struct json_object *ev);
typedef void (*WorkerDiedHandler)(const char *why);
void worker_set_handlers(WorkerEventHandler on_event, WorkerDiedHandler on_died);
/* Changes with every worker started: handles of an older one are void. */
unsigned worker_generation(void);
/* The last start failure, for error messages ("cannot run /usr/libexec/...: No such file"). */
const char *worker_last_error(void);

/* The DpsResult of a "result" event (strings borrowed from ev); -EBADMSG when the outcome is
 * unknown, a number is out of range or an assignment lacks its hub or device id. */
struct DpsResult;
int dps_result_from_event(struct json_object *ev, struct DpsResult *ret);

/* ---- both sides ---- */

/* Receives one datagram (≤ WORKER_MSG_MAX) and parses it.  0 on EOF (*ret NULL), -EAGAIN when
 * nothing is there (flags MSG_DONTWAIT), -EBADMSG for an oversized or malformed one. */
int worker_recv(int fd, int flags, struct json_object **ret);
/* Sends o as one datagram; the serialised buffer and o's secret members are wiped afterwards. */
int worker_send_fd(int fd, struct json_object *o);
/* Overwrites the secret members of o (SAS token, hierarchy passwords, keys, MACs: strings or
 * arrays of strings) with zeros; the receiver calls it before releasing a message. */
void worker_wipe_secrets(struct json_object *o);
/* Binary members travel as base64: adds one, or decodes one (-EBADMSG absent, -E2BIG when it
 * would decode to more than max bytes). */
int worker_json_add_b64(struct json_object *o, const char *key, const void *data, size_t len);
int worker_json_get_b64(struct json_object *o, const char *key, size_t max, uint8_t **ret, size_t *ret_len);

/* The "tls" description of a DpsClientParams.ssl_ctx on the daemon side: X509Identity and the
 * shared TLS context are proxies whose first member is this. */
typedef struct WorkerTls {
        unsigned magic;
        struct json_object *desc; /* {"kind": "x509" | "shared", ...} */
} WorkerTls;
#define WORKER_TLS_MAGIC 0x574b544cu
