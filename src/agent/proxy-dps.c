/* SPDX-License-Identifier: MIT */
/* The daemon's DpsClient (dps-client.h): the same interface as the real client, which now runs
 * in edgeprov-worker (worker.h).  Each client is one "exchange" there; its accepted and result
 * events come back over the socket and are handed to the caller's callbacks. */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "agent/dps-client.h"
#include "agent/worker.h"
#include "edgeprov/json-util.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"

struct DpsClient {
        DpsClient *prev, *next;
        uint64_t id;
        sd_event *event;
        DpsClientCallback cb;
        DpsClientAcceptedCallback accepted_cb;
        void *userdata;
        struct json_object *request;    /* until started */
        struct json_object *result_ev;  /* owns the strings of result */
        DpsResult result;
        sd_event_source *defer;         /* a result made here (the worker could not be used) */
        char *local_message;
        bool started, finished;
};

static DpsClient *clients;
static uint64_t next_exchange_id;

static DpsClient *find(uint64_t id) {
        for (DpsClient *c = clients; c; c = c->next)
                if (c->id == id)
                        return c;
        return NULL;
}

static void unlink_client(DpsClient *c) {
        if (c->prev)
                c->prev->next = c->next;
        else if (clients == c)
                clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
}

int dps_result_from_event(struct json_object *ev, DpsResult *ret) {
        const char *outcome = json_get_string(ev, "outcome");
        DpsOutcome o = _DPS_OUTCOME_MAX;
        int64_t status = json_get_int64(ev, "status", 0), retry_after = json_get_int64(ev, "retry_after", -1);

        for (DpsOutcome i = 0; i < _DPS_OUTCOME_MAX; i++)
                if (streq_ptr(outcome, dps_outcome_to_string(i)))
                        o = i;
        if (o == _DPS_OUTCOME_MAX || status < 0 || status > 999 || retry_after < -1 || retry_after > INT_MAX)
                return -EBADMSG;
        *ret = (DpsResult) {
                .outcome = o,
                .status = (unsigned) status,
                .retry_after = (int) retry_after,
                .operation_id = json_get_string(ev, "operation_id"),
                .registration_id = json_get_string(ev, "registration_id"),
                .assigned_hub = json_get_string(ev, "assigned_hub"),
                .device_id = json_get_string(ev, "device_id"),
                .substatus = json_get_string(ev, "substatus"),
                .dps_status = json_get_string(ev, "dps_status"),
                .error_code = json_get_int64(ev, "error_code", 0),
                .error_message = json_get_string(ev, "error_message"),
                .tracking_id = json_get_string(ev, "tracking_id"),
                .authentication_key = json_get_string(ev, "authentication_key"),
        };
        if (o == DPS_OUTCOME_ASSIGNED && (isempty(ret->assigned_hub) || isempty(ret->device_id)))
                return -EBADMSG;
        if (o != DPS_OUTCOME_ASSIGNED && !ret->error_message)
                ret->error_message = "registration failed";
        return 0;
}

static void finish(DpsClient *c) {
        c->finished = true;
        unlink_client(c);
        worker_release();
        /* the callback may free c */
        if (c->cb)
                c->cb(c, &c->result, c->userdata);
}

static int on_local_result(sd_event_source *s, void *userdata) {
        DpsClient *c = userdata;
        c->defer = sd_event_source_disable_unref(c->defer);
        if (!c->finished)
                finish(c);
        return 0;
}

/* A transient failure decided here (worker missing or dead), delivered from the loop. */
static void fail_later(DpsClient *c, const char *why) {
        free(c->local_message);
        c->local_message = strdup(why);
        c->result = (DpsResult) {
                .outcome = DPS_OUTCOME_TRANSIENT,
                .retry_after = -1,
                .error_message = c->local_message ?: "the exchange helper failed",
        };
        if (!c->defer && sd_event_add_defer(c->event, &c->defer, on_local_result, c) < 0)
                c->defer = NULL;
}

static void on_event(struct json_object *ev) {
        const char *kind = json_get_string(ev, "ev");
        DpsClient *c = find((uint64_t) json_get_int64(ev, "x", 0));

        if (!c || c->finished)
                return;
        if (streq_ptr(kind, "accepted")) {
                const char *op = json_get_string(ev, "operation_id");
                int64_t retry_after = json_get_int64(ev, "retry_after", -1);
                if (c->accepted_cb && !isempty(op) && retry_after >= -1 && retry_after <= INT_MAX)
                        c->accepted_cb(c, op, (int) retry_after, c->userdata);
                return;
        }
        if (!streq_ptr(kind, "result"))
                return;
        json_object_put(c->result_ev);
        c->result_ev = json_object_get(ev);
        if (dps_result_from_event(ev, &c->result) < 0)
                c->result = (DpsResult) {
                        .outcome = DPS_OUTCOME_TRANSIENT,
                        .retry_after = -1,
                        .error_message = "the exchange helper sent an unusable result",
                };
        finish(c);
}

static void on_died(const char *why) {
        for (DpsClient *c = clients; c; c = c->next)
                if (c->started && !c->finished)
                        fail_later(c, why);
}

int dps_client_new(sd_event *e, const DpsClientParams *p, DpsClientCallback cb, void *userdata, DpsClient **ret) {
        _cleanup_json_ struct json_object *q = json_object_new_object();
        int r = 0;

        if (!e || !p || !p->host || !p->id_scope || !p->registration_id)
                return -EINVAL;
        if (!q)
                return -ENOMEM;
        DpsClient *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->id = ++next_exchange_id;
        r |= json_add_string(q, "m", "exchange");
        r |= json_add(q, "x", json_object_new_int64((int64_t) c->id));
        r |= json_add_string(q, "host", p->host);
        r |= json_add(q, "port", json_object_new_int(p->port));
        r |= json_add_string(q, "ca_file", p->ca_file);
        r |= json_add_string(q, "id_scope", p->id_scope);
        r |= json_add_string(q, "registration_id", p->registration_id);
        r |= json_add_string(q, "api_version", p->api_version);
        r |= json_add_string(q, "password", p->password);
        r |= json_add_string(q, "payload_json", p->payload_json);
        r |= json_add_string(q, "tpm_ek_b64", p->tpm_ek_b64);
        r |= json_add_string(q, "tpm_srk_b64", p->tpm_srk_b64);
        r |= json_add_string(q, "operation_id", p->operation_id);
        r |= json_add(q, "request_timeout_usec", json_object_new_int64((int64_t) p->request_timeout_usec));
        r |= json_add_string(q, "transport", dps_transport_to_string(p->transport));
        if (p->ssl_ctx) {
                const WorkerTls *t = p->ssl_ctx;
                assert(t->magic == WORKER_TLS_MAGIC);
                r |= json_add(q, "tls", json_object_get(t->desc));
        }
        if (r < 0) {
                free(c);
                return -ENOMEM;
        }
        c->event = sd_event_ref(e);
        c->cb = cb;
        c->userdata = userdata;
        c->request = TAKE_PTR(q);
        worker_set_handlers(on_event, on_died);
        *ret = c;
        return 0;
}

void dps_client_set_accepted_callback(DpsClient *c, DpsClientAcceptedCallback cb) {
        c->accepted_cb = cb;
}

int dps_client_start(DpsClient *c) {
        if (c->started)
                return -EALREADY;
        c->started = true;
        c->next = clients;
        if (clients)
                clients->prev = c;
        clients = c;
        worker_hold();
        int r = worker_send(TAKE_PTR(c->request));
        if (r < 0)
                /* like a connection that failed: the caller retries later */
                fail_later(c, worker_last_error());
        return 0;
}

DpsClient *dps_client_free(DpsClient *c) {
        if (!c)
                return NULL;
        if (c->started && !c->finished) {
                _cleanup_json_ struct json_object *q = json_object_new_object();
                if (q && worker_running() && json_add_string(q, "m", "cancel") >= 0 &&
                    json_add(q, "x", json_object_new_int64((int64_t) c->id)) >= 0)
                        (void) worker_send(TAKE_PTR(q));
                unlink_client(c);
                worker_release();
        }
        worker_wipe_secrets(c->request); /* never sent (not started): its SAS token */
        json_object_put(c->request);
        json_object_put(c->result_ev);
        c->defer = sd_event_source_disable_unref(c->defer);
        free(c->local_message);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}
