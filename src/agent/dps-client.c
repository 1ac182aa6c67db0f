/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <mosquitto.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "agent/dps-client.h"
#include "agent/dps-http.h"
#include "agent/tls-client.h"
#include "edgeprov/dps.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/messages.h"

#define USEC_PER_SEC ((uint64_t) 1000000)
#define DPS_KEEPALIVE 60
#define DPS_MAX_POLLS 300           /* a registration that never finishes is a failure */
#define DPS_MAX_THROTTLED_RETRIES 5

typedef enum Phase {
        PHASE_IDLE,
        PHASE_CONNECTING,
        PHASE_SUBSCRIBING,
        PHASE_REGISTERING,
        PHASE_WAITING_POLL,
        PHASE_POLLING,
        PHASE_DONE,
} Phase;

struct DpsClient {
        sd_event *event;
        struct mosquitto *mosq;
        sd_event_source *io, *misc_timer, *timeout_timer, *poll_timer, *defer;
        int fd;
        bool tcp_connected;

        char *host, *ca_file, *id_scope, *registration_id, *api_version, *password, *payload_json;
        void *ssl_ctx;               /* X.509: the caller's SSL_CTX (libmosquitto takes a reference) */
        int port;
        uint64_t request_timeout_usec;

        DpsHttp *http;               /* transport https: the whole transaction is dps-http.c's */
        DpsClientCallback cb;
        DpsClientAcceptedCallback accepted_cb;
        void *userdata;
        bool resumed;                /* polling an operation from an earlier run, nothing sent yet */

        Phase phase;
        Phase retry_phase;           /* what a throttled retry repeats */
        unsigned rid_counter;
        char rid[32];
        char *operation_id;
        unsigned polls, throttled;

        /* the result, owned */
        DpsResult result;
        char *r_hub, *r_device, *r_substatus, *r_regid, *r_status, *r_message, *r_tracking, *r_opid;
        char *tpm_ek, *tpm_srk, *r_auth_key;
};

/* ---- HTTPS: forward dps-http.c's callbacks as our own ---- */
static void on_http_result(DpsHttp *h, const DpsResult *result, void *userdata) {
        DpsClient *c = userdata;
        if (c->cb)
                c->cb(c, result, c->userdata);
}

static void on_http_accepted(DpsHttp *h, const char *operation_id, int retry_after, void *userdata) {
        DpsClient *c = userdata;
        if (c->accepted_cb)
                c->accepted_cb(c, operation_id, retry_after, c->userdata);
}

static int mosq_to_errno(int rc) {
        switch (rc) {
        case MOSQ_ERR_SUCCESS:
                return 0;
        case MOSQ_ERR_NOMEM:
                return -ENOMEM;
        case MOSQ_ERR_INVAL:
        case MOSQ_ERR_MALFORMED_UTF8:
                return -EINVAL;
        case MOSQ_ERR_NO_CONN:
                return -ENOTCONN;
        case MOSQ_ERR_CONN_LOST:
                return -ECONNRESET;
        case MOSQ_ERR_TLS:
        case MOSQ_ERR_TLS_HANDSHAKE:
                return -EPROTO;
        case MOSQ_ERR_PAYLOAD_SIZE:
                return -EMSGSIZE;
        case MOSQ_ERR_ERRNO:
                return errno > 0 ? -errno : -EIO;
        case MOSQ_ERR_EAI:
                return -EHOSTUNREACH;
        default:
                return -EIO;
        }
}

static void client_disconnect(DpsClient *c) {
        c->io = sd_event_source_disable_unref(c->io);
        c->misc_timer = sd_event_source_disable_unref(c->misc_timer);
        c->timeout_timer = sd_event_source_disable_unref(c->timeout_timer);
        c->poll_timer = sd_event_source_disable_unref(c->poll_timer);
        c->fd = -1;
        if (c->mosq) {
                (void) mosquitto_disconnect(c->mosq);
                mosquitto_destroy(c->mosq);
                c->mosq = NULL;
        }
}

static int on_defer(sd_event_source *s, void *userdata) {
        DpsClient *c = userdata;
        c->defer = sd_event_source_disable_unref(c->defer);
        client_disconnect(c);
        c->result.operation_id = c->r_opid;
        c->result.registration_id = c->r_regid;
        c->result.assigned_hub = c->r_hub;
        c->result.device_id = c->r_device;
        c->result.substatus = c->r_substatus;
        c->result.dps_status = c->r_status;
        c->result.error_message = c->r_message;
        c->result.authentication_key = c->r_auth_key;
        c->result.tracking_id = c->r_tracking;
        if (c->cb)
                c->cb(c, &c->result, c->userdata);
        return 0;
}

/* Records the outcome and schedules the callback; later calls are ignored. */
_printf_(4, 5) static void client_finish(DpsClient *c, DpsOutcome outcome, unsigned status, const char *fmt, ...) {
        if (c->phase == PHASE_DONE)
                return;
        c->phase = PHASE_DONE;
        c->result.outcome = outcome;
        c->result.status = status;
        if (fmt) {
                va_list ap;
                va_start(ap, fmt);
                free(c->r_message);
                if (vasprintf(&c->r_message, fmt, ap) < 0)
                        c->r_message = NULL;
                va_end(ap);
        }
        /* Stop all I/O now; tear down in the deferred handler, outside libmosquitto callbacks. */
        (void) sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(c->timeout_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(c->poll_timer, SD_EVENT_OFF);
        if (sd_event_add_defer(c->event, &c->defer, on_defer, c) < 0)
                log_error("Failed to schedule the DPS result handler.");
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        DpsClient *c = userdata;
        static const char *const phase_names[] = {
                [PHASE_IDLE] = "idle", [PHASE_CONNECTING] = "connecting", [PHASE_SUBSCRIBING] = "subscribing",
                [PHASE_REGISTERING] = "registering", [PHASE_WAITING_POLL] = "waiting", [PHASE_POLLING] = "polling",
                [PHASE_DONE] = "done",
        };
        client_finish(c, DPS_OUTCOME_TRANSIENT, 0, "No answer from %s:%d within %" PRIu64 " s while %s", c->host,
                      c->port, c->request_timeout_usec / USEC_PER_SEC, phase_names[c->phase]);
        return 0;
}

static int arm_timeout(DpsClient *c) {
        if (c->timeout_timer)
                return sd_event_source_set_time_relative(c->timeout_timer, c->request_timeout_usec) < 0 ? -EIO :
                       sd_event_source_set_enabled(c->timeout_timer, SD_EVENT_ONESHOT);
        return sd_event_add_time_relative(c->event, &c->timeout_timer, CLOCK_BOOTTIME, c->request_timeout_usec, 0,
                                          on_timeout, c);
}

static void next_rid(DpsClient *c) {
        snprintf(c->rid, sizeof(c->rid), "%u", ++c->rid_counter);
}

static int send_register(DpsClient *c) {
        _cleanup_free_ char *topic = NULL, *body = NULL;
        int r;

        next_rid(c);
        r = dps_register_topic_format(c->rid, &topic);
        if (r < 0)
                return r;
        r = dps_register_request_format(c->registration_id, c->payload_json, c->tpm_ek, c->tpm_srk, &body);
        if (r < 0)
                return r;
        r = mosquitto_publish(c->mosq, NULL, topic, (int) strlen(body), body, 1, false);
        if (r != MOSQ_ERR_SUCCESS)
                return mosq_to_errno(r);
        c->phase = PHASE_REGISTERING;
        c->retry_phase = PHASE_REGISTERING;
        log_debug("Sent registration request rid=%s for '%s'.", c->rid, c->registration_id);
        return arm_timeout(c);
}

static int send_poll(DpsClient *c) {
        _cleanup_free_ char *topic = NULL;
        int r;

        next_rid(c);
        r = dps_poll_topic_format(c->rid, c->operation_id, &topic);
        if (r < 0)
                return r;
        r = mosquitto_publish(c->mosq, NULL, topic, 0, NULL, 1, false);
        if (r != MOSQ_ERR_SUCCESS)
                return mosq_to_errno(r);
        c->phase = PHASE_POLLING;
        c->retry_phase = PHASE_POLLING;
        c->polls++;
        log_debug("Polling operation %s (rid=%s).", c->operation_id, c->rid);
        return arm_timeout(c);
}

static int on_poll_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        DpsClient *c = userdata;
        int r;

        if (c->phase != PHASE_WAITING_POLL)
                return 0;
        r = c->retry_phase == PHASE_REGISTERING ? send_register(c) : send_poll(c);
        if (r < 0)
                client_finish(c, DPS_OUTCOME_TRANSIENT, 0, "Failed to send request: %s", strerror(-r));
        return 0;
}

static void schedule_next(DpsClient *c, int retry_after) {
        int secs = dps_poll_delay_sec(retry_after);
        int r;

        c->phase = PHASE_WAITING_POLL;
        (void) sd_event_source_set_enabled(c->timeout_timer, SD_EVENT_OFF);
        c->poll_timer = sd_event_source_disable_unref(c->poll_timer);
        /* accuracy 10 ms: 0 would mean sd-event's default of 250 ms, a quarter second lost per poll */
        r = sd_event_add_time_relative(c->event, &c->poll_timer, CLOCK_BOOTTIME, (uint64_t) secs * USEC_PER_SEC,
                                       USEC_PER_SEC / 100, on_poll_timer, c);
        if (r < 0)
                client_finish(c, DPS_OUTCOME_TRANSIENT, 0, "Failed to arm poll timer: %s", strerror(-r));
}

static char *dup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

static void take_state(DpsClient *c, const DpsResponse *resp) {
        const DpsRegistrationState *st = &resp->state;

        free(c->r_hub);
        c->r_hub = dup_or_null(st->assigned_hub);
        free(c->r_device);
        c->r_device = dup_or_null(st->device_id);
        free(c->r_substatus);
        c->r_substatus = dup_or_null(st->substatus);
        free(c->r_regid);
        c->r_regid = dup_or_null(st->registration_id);
        free(c->r_opid);
        c->r_opid = dup_or_null(resp->operation_id ?: c->operation_id);
        free(c->r_tracking);
        c->r_tracking = dup_or_null(resp->tracking_id);
        free(c->r_status);
        c->r_status = dup_or_null(dps_status_to_string(resp->status >= 0 ? resp->status : st->status));
        c->result.error_code = resp->error_code ? resp->error_code : st->error_code;
}

static void handle_response(DpsClient *c, const DpsResponseTopic *t, const void *payload, size_t len) {
        _cleanup_(dps_response_done) DpsResponse resp = {};
        int r;

        c->result.retry_after = t->retry_after;
        r = dps_response_parse(payload, len, &resp);
        if (r < 0) {
                /* A service that sends garbage is broken or not a DPS: retry later. */
                client_finish(c, DPS_OUTCOME_TRANSIENT, t->status,
                              "Malformed response from the provisioning service (status %u, %zu bytes): %s", t->status,
                              len, strerror(-r));
                return;
        }
        take_state(c, &resp);

        if (c->resumed && c->phase == PHASE_POLLING && t->status >= 400 && t->status < 429) {
                /* the operation of an earlier run is gone (expired, service restarted): register anew */
                log_info("Operation %s of '%s' is not known to the service (%u), registering again.",
                         c->operation_id, c->registration_id, t->status);
                c->resumed = false;
                free(c->operation_id);
                c->operation_id = NULL;
                free(c->r_opid);
                c->r_opid = NULL;
                c->polls = 0;
                r = send_register(c);
                if (r < 0)
                        client_finish(c, DPS_OUTCOME_TRANSIENT, 0, "Failed to send the registration: %s", strerror(-r));
                return;
        }
        if (t->status >= 429) {
                /* Throttled or service trouble: repeat the same request after retry-after. */
                if (t->retry_after >= 0 && c->throttled < DPS_MAX_THROTTLED_RETRIES) {
                        c->throttled++;
                        char f_reg[192], f_status[32], f_ra[32];
                        log_field(f_reg, sizeof(f_reg), "REGISTRATION_ID", c->registration_id);
                        snprintf(f_status, sizeof(f_status), "DPS_STATUS=%u", t->status);
                        snprintf(f_ra, sizeof(f_ra), "RETRY_AFTER=%d", t->retry_after);
                        log_struct(LOG_NOTICE, STRV(EDGEPROV_MESSAGE_ID(THROTTLED), f_reg, f_status, f_ra),
                                   "Provisioning service answered %u for '%s', retrying the same request in %d s.",
                                   t->status, c->registration_id, t->retry_after);
                        schedule_next(c, t->retry_after);
                        return;
                }
                client_finish(c, DPS_OUTCOME_TRANSIENT, t->status, "Provisioning service answered %u%s%s", t->status,
                              resp.message ? ": " : "", strempty(resp.message));
                return;
        }
        c->resumed = false;
        if (t->status == 401 && resp.authentication_key && c->tpm_ek) {
                /* TPM attestation: the challenge; the manager activates it and registers again */
                c->r_auth_key = strdup(resp.authentication_key);
                client_finish(c, DPS_OUTCOME_REJECTED, t->status, "%s",
                              c->r_auth_key ? "TPM challenge received" : "Out of memory");
                return;
        }
        if (t->status >= 300) {
                const char *msg = resp.message ?: resp.state.error_message;
                int64_t code = resp.error_code ?: resp.state.error_code;
                if (code)
                        client_finish(c, DPS_OUTCOME_REJECTED, t->status,
                                      "Provisioning service rejected the registration: status %u, errorCode %" PRIi64 ": %s",
                                      t->status, code, strna(msg));
                else
                        client_finish(c, DPS_OUTCOME_REJECTED, t->status,
                                      "Provisioning service rejected the registration: status %u: %s", t->status,
                                      strna(msg));
                return;
        }

        DpsStatus status = resp.status >= 0 ? resp.status : resp.state.status;
        switch (status) {
        case DPS_STATUS_ASSIGNING:
        case DPS_STATUS_UNASSIGNED:
                if (!resp.operation_id && !c->operation_id) {
                        client_finish(c, DPS_OUTCOME_TRANSIENT, t->status,
                                      "Provisioning service answered '%s' without an operationId", dps_status_to_string(status));
                        return;
                }
                if (!c->operation_id) {
                        c->operation_id = strdup(resp.operation_id);
                        if (!c->operation_id) {
                                client_finish(c, DPS_OUTCOME_TRANSIENT, 0, "Out of memory");
                                return;
                        }
                        log_info("Registration of '%s' accepted, operation %s.", c->registration_id,
                                 c->operation_id);
                        if (c->accepted_cb)
                                c->accepted_cb(c, c->operation_id, t->retry_after, c->userdata);
                }
                if (c->polls >= DPS_MAX_POLLS) {
                        client_finish(c, DPS_OUTCOME_TRANSIENT, t->status, "Registration still '%s' after %u polls",
                                      dps_status_to_string(status), c->polls);
                        return;
                }
                c->retry_phase = PHASE_POLLING;
                schedule_next(c, t->retry_after);
                return;
        case DPS_STATUS_ASSIGNED:
                if (isempty(resp.state.assigned_hub) || isempty(resp.state.device_id)) {
                        client_finish(c, DPS_OUTCOME_TRANSIENT, t->status,
                                      "Provisioning service answered 'assigned' without assignedHub/deviceId");
                        return;
                }
                client_finish(c, DPS_OUTCOME_ASSIGNED, t->status, NULL);
                return;
        case DPS_STATUS_FAILED:
                client_finish(c, DPS_OUTCOME_REJECTED, t->status, "Registration failed: errorCode %" PRIi64 ": %s",
                              resp.state.error_code, strna(resp.state.error_message));
                return;
        case DPS_STATUS_DISABLED:
                client_finish(c, DPS_OUTCOME_REJECTED, t->status, "The enrollment is disabled%s%s",
                              resp.state.error_message ? ": " : "", strempty(resp.state.error_message));
                return;
        case _DPS_STATUS_MAX:
        case _DPS_STATUS_INVALID:
                break;
        }
        client_finish(c, DPS_OUTCOME_TRANSIENT, t->status, "Response without a known status (HTTP-style %u)", t->status);
}

/* ---- libmosquitto callbacks (never free or run loop functions here) ---- */

static void on_connect(struct mosquitto *mosq, void *userdata, int rc) {
        DpsClient *c = userdata;
        int mid;

        if (c->phase != PHASE_CONNECTING)
                return;
        if (rc != 0) {
                bool auth = rc == 4 || rc == 5; /* bad user name or password, not authorized */
                client_finish(c, auth ? DPS_OUTCOME_REJECTED : DPS_OUTCOME_TRANSIENT, 0,
                              "Provisioning service refused the connection: %s", mosquitto_connack_string(rc));
                return;
        }
        log_debug("Connected to %s:%d.", c->host, c->port);
        rc = mosquitto_subscribe(c->mosq, &mid, DPS_SUBSCRIBE_TOPIC, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
                client_finish(c, DPS_OUTCOME_TRANSIENT, 0, "Failed to subscribe: %s", mosquitto_strerror(rc));
                return;
        }
        c->phase = PHASE_SUBSCRIBING;
        (void) arm_timeout(c);
}

static void on_subscribe(struct mosquitto *mosq, void *userdata, int mid, int qos_count, const int *granted_qos) {
        DpsClient *c = userdata;
        int r;

        if (c->phase != PHASE_SUBSCRIBING)
                return;
        if (qos_count < 1 || granted_qos[0] == 0x80) {
                client_finish(c, DPS_OUTCOME_REJECTED, 0, "Provisioning service refused the subscription to %s",
                              DPS_SUBSCRIBE_TOPIC);
                return;
        }
        r = c->resumed ? send_poll(c) : send_register(c);
        if (r < 0)
                client_finish(c, DPS_OUTCOME_TRANSIENT, 0, "Failed to send the registration: %s", strerror(-r));
}

static void on_message(struct mosquitto *mosq, void *userdata, const struct mosquitto_message *m) {
        DpsClient *c = userdata;
        _cleanup_(dps_response_topic_done) DpsResponseTopic t = {};
        int r;

        if (!m->topic || !startswith(m->topic, DPS_RESPONSE_TOPIC_PREFIX))
                return;
        r = dps_response_topic_parse(m->topic, &t);
        if (r < 0) {
                log_warning("Ignoring message with malformed response topic.");
                return;
        }
        if (!streq(t.rid, c->rid) || (c->phase != PHASE_REGISTERING && c->phase != PHASE_POLLING)) {
                log_debug("Ignoring response for rid=%s (expecting %s).", t.rid, c->rid);
                return;
        }
        if (m->payloadlen < 0 || (size_t) m->payloadlen > DPS_BODY_MAX) {
                client_finish(c, DPS_OUTCOME_TRANSIENT, t.status, "Oversized response (%d bytes)", m->payloadlen);
                return;
        }
        handle_response(c, &t, m->payload, (size_t) m->payloadlen);
}

static void on_disconnect(struct mosquitto *mosq, void *userdata, int rc) {
        DpsClient *c = userdata;
        client_finish(c, DPS_OUTCOME_TRANSIENT, 0, "Connection to %s:%d lost%s%s", c->host, c->port,
                      rc ? ": " : "", rc ? mosquitto_strerror(rc) : "");
}

static void on_log(struct mosquitto *mosq, void *userdata, int level, const char *str) {
        if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING))
                log_debug("libmosquitto: %s", str);
}

/* ---- sd-event glue ---- */

static bool ssl_handshaking(DpsClient *c) {
        SSL *ssl = mosquitto_ssl_get(c->mosq);
        return ssl && !SSL_is_init_finished(ssl);
}

static int io_prepare(sd_event_source *s, void *userdata) {
        DpsClient *c = userdata;
        uint32_t events = EPOLLIN;

        if (!c->mosq)
                return 0;
        if (!c->tcp_connected)
                events |= EPOLLOUT;
        else if (ssl_handshaking(c)) {
                if (SSL_want_write(mosquitto_ssl_get(c->mosq)))
                        events |= EPOLLOUT;
        } else if (mosquitto_want_write(c->mosq))
                events |= EPOLLOUT;
        return sd_event_source_set_io_events(s, events);
}

static int io_handler(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        DpsClient *c = userdata;
        int rc = MOSQ_ERR_SUCCESS;

        if (!c->tcp_connected && (revents & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int err = 0;
                socklen_t l = sizeof(err);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                        err = errno;
                if (err != 0) {
                        client_finish(c, DPS_OUTCOME_TRANSIENT, 0, "Cannot connect to %s:%d: %s", c->host, c->port,
                                      strerror(err));
                        return 0;
                }
                c->tcp_connected = true;
        }

        if (ssl_handshaking(c) || (revents & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                rc = mosquitto_loop_read(c->mosq, 1);
        if (rc == MOSQ_ERR_SUCCESS && c->phase != PHASE_DONE && c->mosq && mosquitto_socket(c->mosq) >= 0 &&
            (revents & EPOLLOUT) && !ssl_handshaking(c))
                rc = mosquitto_loop_write(c->mosq, 1);
        if (rc == MOSQ_ERR_SUCCESS && (revents & EPOLLHUP) && c->phase != PHASE_DONE && c->mosq) {
                /* The peer is gone and whatever it sent has been read.  A refused connect ends up
                 * here: libmosquitto writes the TLS ClientHello inside connect_async, which takes
                 * the socket error, so SO_ERROR above reads 0; without this the loop would spin
                 * on EPOLLHUP (EPIPE on every write) until the request timeout. */
                client_finish(c, DPS_OUTCOME_TRANSIENT, 0, "Connection to %s:%d refused or closed by the peer",
                              c->host, c->port);
                return 0;
        }
        if (rc != MOSQ_ERR_SUCCESS) {
                if (rc == MOSQ_ERR_TLS || rc == MOSQ_ERR_TLS_HANDSHAKE)
                        client_finish(c, DPS_OUTCOME_TRANSIENT, 0,
                                      "TLS handshake with %s:%d failed (is the CA right and the name in the certificate?)",
                                      c->host, c->port);
                else
                        client_finish(c, DPS_OUTCOME_TRANSIENT, 0, "Connection to %s:%d failed: %s", c->host, c->port,
                                      mosquitto_strerror(rc));
        }
        return 0;
}

static int on_misc(sd_event_source *s, uint64_t usec, void *userdata) {
        DpsClient *c = userdata;
        if (c->mosq && c->phase != PHASE_DONE)
                (void) mosquitto_loop_misc(c->mosq);
        (void) sd_event_source_set_time_relative(s, USEC_PER_SEC);
        return 0;
}

int dps_client_new(sd_event *e, const DpsClientParams *p, DpsClientCallback cb, void *userdata, DpsClient **ret) {
        static bool lib_initialized = false;
        DpsClient *c;

        if (!e || !p || !p->host || !p->id_scope || !p->registration_id || !ret)
                return -EINVAL;
        if (!lib_initialized) {
                mosquitto_lib_init();
                lib_initialized = true;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->fd = -1;
        c->port = p->port;
        c->request_timeout_usec = p->request_timeout_usec ?: 30 * USEC_PER_SEC;
        c->cb = cb;
        c->userdata = userdata;
        c->result.retry_after = -1;
        c->host = strdup(p->host);
        c->ca_file = dup_or_null(p->ca_file);
        c->ssl_ctx = p->ssl_ctx;
        c->id_scope = strdup(p->id_scope);
        c->registration_id = strdup(p->registration_id);
        c->api_version = strdup(p->api_version ?: DPS_API_VERSION_DEFAULT);
        c->password = dup_or_null(p->password);
        c->payload_json = dup_or_null(p->payload_json);
        c->tpm_ek = dup_or_null(p->tpm_ek_b64);
        c->tpm_srk = dup_or_null(p->tpm_srk_b64);
        c->operation_id = dup_or_null(p->operation_id);
        c->resumed = p->operation_id;
        if ((p->tpm_ek_b64 && !c->tpm_ek) || (p->tpm_srk_b64 && !c->tpm_srk) || (p->operation_id && !c->operation_id)) {
                dps_client_free(c);
                return -ENOMEM;
        }
        if (!c->host || !c->id_scope || !c->registration_id || !c->api_version || (p->ca_file && !c->ca_file) ||
            (p->password && !c->password) || (p->payload_json && !c->payload_json)) {
                dps_client_free(c);
                return -ENOMEM;
        }
        if (p->transport == DPS_TRANSPORT_HTTPS) {
                int r = dps_http_new(e, p, on_http_result, c, &c->http);
                if (r < 0) {
                        dps_client_free(c);
                        return r;
                }
                dps_http_set_accepted_callback(c->http, on_http_accepted);
        }
        *ret = c;
        return 0;
}

void dps_client_set_accepted_callback(DpsClient *c, DpsClientAcceptedCallback cb) {
        c->accepted_cb = cb;
}

int dps_client_start(DpsClient *c) {
        _cleanup_free_ char *username = NULL;
        int rc, r;

        if (c->phase != PHASE_IDLE)
                return -EBUSY;

        if (c->http)
                return dps_http_start(c->http);
        r = dps_username_format(c->id_scope, c->registration_id, c->api_version, "edgeprov/" PACKAGE_VERSION, &username);
        if (r < 0)
                return r;

        c->mosq = mosquitto_new(c->registration_id, true, c);
        if (!c->mosq)
                return -ENOMEM;
        (void) mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
        (void) mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1);
        mosquitto_connect_callback_set(c->mosq, on_connect);
        mosquitto_subscribe_callback_set(c->mosq, on_subscribe);
        mosquitto_message_callback_set(c->mosq, on_message);
        mosquitto_disconnect_callback_set(c->mosq, on_disconnect);
        mosquitto_log_callback_set(c->mosq, on_log);

        rc = mosquitto_username_pw_set(c->mosq, username, c->password);
        if (rc != MOSQ_ERR_SUCCESS)
                return mosq_to_errno(rc);
        /* X.509: our SSL_CTX carries the client chain and key (possibly a TPM provider key) and
         * its own server verification (CA file, host name: x509-identity.c); libmosquitto uses
         * it as it is */
        if (c->ssl_ctx && (mosquitto_void_option(c->mosq, MOSQ_OPT_SSL_CTX, c->ssl_ctx) != MOSQ_ERR_SUCCESS ||
                           mosquitto_int_option(c->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) != MOSQ_ERR_SUCCESS))
                return -EINVAL;
        rc = mosquitto_tls_set(c->mosq, c->ca_file, c->ca_file ? NULL : TLS_CLIENT_SYSTEM_CA_DIR, NULL, NULL, NULL);
        if (rc != MOSQ_ERR_SUCCESS) {
                log_error("Cannot use CA '%s' for TLS: %s", strna(c->ca_file), mosquitto_strerror(rc));
                return mosq_to_errno(rc);
        }
        (void) mosquitto_tls_insecure_set(c->mosq, false);

        c->phase = PHASE_CONNECTING;
        rc = mosquitto_connect_async(c->mosq, c->host, c->port, DPS_KEEPALIVE);
        if (rc != MOSQ_ERR_SUCCESS) {
                client_finish(c, DPS_OUTCOME_TRANSIENT, 0, "Cannot connect to %s:%d: %s", c->host, c->port,
                              rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
                return 0;
        }
        c->fd = mosquitto_socket(c->mosq);
        if (c->fd < 0) {
                client_finish(c, DPS_OUTCOME_TRANSIENT, 0, "Cannot connect to %s:%d", c->host, c->port);
                return 0;
        }
        r = sd_event_add_io(c->event, &c->io, c->fd, EPOLLIN | EPOLLOUT, io_handler, c);
        if (r < 0)
                return r;
        r = sd_event_source_set_prepare(c->io, io_prepare);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(c->event, &c->misc_timer, CLOCK_BOOTTIME, USEC_PER_SEC, 0, on_misc, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(c->misc_timer, SD_EVENT_ON);
        return arm_timeout(c);
}

DpsClient *dps_client_free(DpsClient *c) {
        if (!c)
                return NULL;
        /* freed mid-transaction (a sensor parked or removed): mosquitto_disconnect() below may call
         * our callbacks, which must not schedule the result handler again */
        c->phase = PHASE_DONE;
        c->defer = sd_event_source_disable_unref(c->defer);
        c->http = dps_http_free(c->http);
        client_disconnect(c);
        c->defer = sd_event_source_disable_unref(c->defer);
        free(c->host);
        free(c->ca_file);
        free(c->id_scope);
        free(c->registration_id);
        free(c->api_version);
        c->password = erase_and_free(c->password);
        free(c->payload_json);
        free(c->tpm_ek);
        free(c->tpm_srk);
        free(c->r_auth_key);
        free(c->operation_id);
        free(c->r_hub);
        free(c->r_device);
        free(c->r_substatus);
        free(c->r_regid);
        free(c->r_status);
        free(c->r_message);
        free(c->r_tracking);
        free(c->r_opid);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}
