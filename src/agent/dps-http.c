/* SPDX-License-Identifier: MIT */
#include <curl/curl.h>
#include <openssl/ssl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "agent/curl-dl.h"
#include "agent/dps-client.h"
#include "agent/dps-http.h"
#include "edgeprov/dps-rest.h"
#include "edgeprov/dps.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/messages.h"

#define USEC_PER_SEC ((uint64_t) 1000000)
#define DPS_HTTP_MAX_POLLS 300
#define DPS_HTTP_MAX_SOCKETS 8
#define DPS_HTTP_USER_AGENT "edgeprov/" PACKAGE_VERSION

typedef enum Phase {
        PHASE_IDLE,
        PHASE_REGISTERING,
        PHASE_WAITING,
        PHASE_POLLING,
        PHASE_DONE,
} Phase;

static void *mfree_or_null(void *p) {
        free(p);
        return NULL;
}

typedef struct Socket {
        curl_socket_t fd;
        sd_event_source *source;
} Socket;

struct DpsHttp {
        sd_event *event;
        CURLM *multi;
        CURL *easy;
        bool easy_added;
        struct curl_slist *headers;
        Socket sockets[DPS_HTTP_MAX_SOCKETS];
        sd_event_source *curl_timer, *poll_timer, *defer;

        SSL_CTX *client_ctx;    /* X.509: certificate chain and key to present (a reference) */
        char *host, *ca_file, *cert_file, *key_file, *id_scope, *registration_id, *api_version, *password,
                *payload_json, *tpm_ek, *tpm_srk;
        int port;
        uint64_t request_timeout_usec;

        DpsHttpCallback cb;
        void *userdata;
        DpsHttpAcceptedCallback accepted_cb;

        Phase phase;
        Phase retry_phase;
        bool tearing_down;      /* libcurl may still call back while it is being freed */
        char *operation_id;
        bool resumed;           /* polling an operation of an earlier run */
        unsigned polls, throttled;

        /* the response being received */
        char *body;
        size_t body_len;
        bool body_too_large;
        size_t header_bytes;
        int retry_after;
        char *request_body;     /* kept alive while curl sends it */

        DpsResult result;
        char *r_hub, *r_device, *r_substatus, *r_regid, *r_status, *r_message, *r_tracking, *r_opid, *r_auth_key;
};

static void http_teardown(DpsHttp *h) {
        h->tearing_down = true;
        h->curl_timer = sd_event_source_disable_unref(h->curl_timer);
        h->poll_timer = sd_event_source_disable_unref(h->poll_timer);
        if (h->multi && h->easy && h->easy_added)
                (void) sym_curl_multi_remove_handle(h->multi, h->easy);
        h->easy_added = false;
        for (size_t i = 0; i < DPS_HTTP_MAX_SOCKETS; i++)
                h->sockets[i].source = sd_event_source_disable_unref(h->sockets[i].source);
        if (h->easy) {
                sym_curl_easy_cleanup(h->easy);
                h->easy = NULL;
        }
        if (h->multi) {
                sym_curl_multi_cleanup(h->multi);
                h->multi = NULL;
        }
        if (h->headers)
                sym_curl_slist_free_all(h->headers);
        h->headers = NULL;
}

static int on_defer(sd_event_source *s, void *userdata) {
        DpsHttp *h = userdata;

        h->defer = sd_event_source_disable_unref(h->defer);
        http_teardown(h);
        h->result.operation_id = h->r_opid;
        h->result.registration_id = h->r_regid;
        h->result.assigned_hub = h->r_hub;
        h->result.device_id = h->r_device;
        h->result.substatus = h->r_substatus;
        h->result.dps_status = h->r_status;
        h->result.error_message = h->r_message;
        h->result.authentication_key = h->r_auth_key;
        h->result.tracking_id = h->r_tracking;
        if (h->cb)
                h->cb(h, &h->result, h->userdata);
        return 0;
}

_printf_(4, 5) static void http_finish(DpsHttp *h, DpsOutcome outcome, unsigned status, const char *fmt, ...) {
        if (h->phase == PHASE_DONE)
                return;
        h->phase = PHASE_DONE;
        h->result.outcome = outcome;
        h->result.status = status;
        if (fmt) {
                va_list ap;
                va_start(ap, fmt);
                free(h->r_message);
                if (vasprintf(&h->r_message, fmt, ap) < 0)
                        h->r_message = NULL;
                va_end(ap);
        }
        (void) sd_event_source_set_enabled(h->curl_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(h->poll_timer, SD_EVENT_OFF);
        for (size_t i = 0; i < DPS_HTTP_MAX_SOCKETS; i++)
                (void) sd_event_source_set_enabled(h->sockets[i].source, SD_EVENT_OFF);
        if (sd_event_add_defer(h->event, &h->defer, on_defer, h) < 0)
                log_error("Failed to schedule the DPS result handler.");
}

/* ---- libcurl ↔ sd-event ---- */

static void check_done(DpsHttp *h);

static int on_socket_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        DpsHttp *h = userdata;
        int running = 0, action = 0;

        if (revents & EPOLLIN)
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                action |= CURL_CSELECT_ERR;
        (void) sym_curl_multi_socket_action(h->multi, fd, action, &running);
        check_done(h);
        return 0;
}

static Socket *socket_find(DpsHttp *h, curl_socket_t fd) {
        for (size_t i = 0; i < DPS_HTTP_MAX_SOCKETS; i++)
                if (h->sockets[i].source && h->sockets[i].fd == fd)
                        return &h->sockets[i];
        return NULL;
}

static int curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        DpsHttp *h = userp;
        Socket *sk = socket_find(h, fd);
        uint32_t events = 0;

        if (what == CURL_POLL_REMOVE || h->tearing_down) {
                if (sk)
                        sk->source = sd_event_source_disable_unref(sk->source);
                return 0;
        }
        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;
        if (sk)
                return sd_event_source_set_io_events(sk->source, events) < 0 ? -1 : 0;
        for (size_t i = 0; i < DPS_HTTP_MAX_SOCKETS; i++)
                if (!h->sockets[i].source) {
                        if (sd_event_add_io(h->event, &h->sockets[i].source, fd, events, on_socket_io, h) < 0)
                                return -1;
                        h->sockets[i].fd = fd;
                        return 0;
                }
        return -1; /* more sockets than one transaction ever needs */
}

static int on_curl_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        DpsHttp *h = userdata;
        int running = 0;

        (void) sym_curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(h);
        return 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        DpsHttp *h = userp;

        if (h->tearing_down)
                return 0;
        if (timeout_ms < 0)
                return sd_event_source_set_enabled(h->curl_timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        if (!h->curl_timer)
                return sd_event_add_time_relative(h->event, &h->curl_timer, CLOCK_MONOTONIC,
                                                  (uint64_t) timeout_ms * 1000, 1000, on_curl_timer, h) < 0 ? -1 : 0;
        if (sd_event_source_set_time_relative(h->curl_timer, (uint64_t) timeout_ms * 1000) < 0)
                return -1;
        return sd_event_source_set_enabled(h->curl_timer, SD_EVENT_ONESHOT) < 0 ? -1 : 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata) {
        DpsHttp *h = userdata;
        size_t len = size * n;

        if (h->body_len + len > DPS_BODY_MAX) {
                h->body_too_large = true;
                return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
        }
        char *b = realloc(h->body, h->body_len + len + 1);
        if (!b)
                return 0;
        memcpy(b + h->body_len, data, len);
        h->body = b;
        h->body_len += len;
        h->body[h->body_len] = 0;
        return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *userdata) {
        DpsHttp *h = userdata;
        size_t len = size * n;
        const char *name, *value;
        size_t nl, vl;

        h->header_bytes += len;
        if (h->header_bytes > DPS_HTTP_RESPONSE_HEADERS_MAX) {
                h->body_too_large = true;
                return 0;
        }
        if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
                /* a new response (after a 100 Continue, or the next request): start afresh */
                h->retry_after = -1;
                return len;
        }
        if (dps_http_header_parse(data, len, &name, &nl, &value, &vl) == 1 &&
            dps_http_header_name_is(name, nl, "retry-after")) {
                int ra = dps_http_retry_after_parse(value, vl);
                h->retry_after = ra >= 0 ? ra : -1;
        }
        return len;
}

/* ---- the protocol ---- */

static int send_request(DpsHttp *h, DpsRestOp op) {
        _cleanup_free_ char *path = NULL, *url = NULL;
        int r;

        r = dps_rest_path_format(op, h->id_scope, h->registration_id, h->operation_id, h->api_version, &path);
        if (r < 0)
                return r;
        if (asprintf(&url, strchr(h->host, ':') ? "https://[%s]:%d%s" : "https://%s:%d%s", h->host, h->port, path) < 0)
                return -ENOMEM;

        if (h->easy_added) {
                (void) sym_curl_multi_remove_handle(h->multi, h->easy);
                h->easy_added = false;
        }
        h->body = mfree_or_null(h->body);
        h->body_len = 0;
        h->body_too_large = false;
        h->header_bytes = 0;
        h->retry_after = -1;

        if (sym_curl_easy_setopt(h->easy, CURLOPT_URL, url) != CURLE_OK)
                return -EINVAL;
        if (op == DPS_REST_REGISTER) {
                free(h->request_body);
                h->request_body = NULL;
                r = dps_register_request_format(h->registration_id, h->payload_json, h->tpm_ek, h->tpm_srk,
                                                &h->request_body);
                if (r < 0)
                        return r;
                (void) sym_curl_easy_setopt(h->easy, CURLOPT_HTTPGET, 0L);
                (void) sym_curl_easy_setopt(h->easy, CURLOPT_CUSTOMREQUEST, "PUT");
                (void) sym_curl_easy_setopt(h->easy, CURLOPT_POSTFIELDS, h->request_body);
                (void) sym_curl_easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(h->request_body));
                h->phase = PHASE_REGISTERING;
                h->retry_phase = PHASE_REGISTERING;
                log_debug("PUT %s", path);
        } else {
                (void) sym_curl_easy_setopt(h->easy, CURLOPT_CUSTOMREQUEST, NULL);
                (void) sym_curl_easy_setopt(h->easy, CURLOPT_HTTPGET, 1L);
                h->phase = PHASE_POLLING;
                h->retry_phase = PHASE_POLLING;
                h->polls++;
                log_debug("GET %s", path);
        }
        if (sym_curl_multi_add_handle(h->multi, h->easy) != CURLM_OK)
                return -EIO;
        h->easy_added = true;
        return 0;
}

static int on_poll_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        DpsHttp *h = userdata;
        int r;

        if (h->phase != PHASE_WAITING)
                return 0;
        r = send_request(h, h->retry_phase == PHASE_REGISTERING ? DPS_REST_REGISTER : DPS_REST_OPERATION_STATUS);
        if (r < 0)
                http_finish(h, DPS_OUTCOME_TRANSIENT, 0, "Failed to send the request: %s", strerror(-r));
        return 0;
}

static void schedule_next(DpsHttp *h, int retry_after) {
        int secs = dps_poll_delay_sec(retry_after);
        int r;

        h->phase = PHASE_WAITING;
        h->poll_timer = sd_event_source_disable_unref(h->poll_timer);
        r = sd_event_add_time_relative(h->event, &h->poll_timer, CLOCK_BOOTTIME, (uint64_t) secs * USEC_PER_SEC,
                                       USEC_PER_SEC / 100, on_poll_timer, h);
        if (r < 0)
                http_finish(h, DPS_OUTCOME_TRANSIENT, 0, "Failed to arm the poll timer: %s", strerror(-r));
}

static char *dup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

static void take_state(DpsHttp *h, const DpsResponse *resp) {
        const DpsRegistrationState *st = &resp->state;

        free(h->r_hub);
        h->r_hub = dup_or_null(st->assigned_hub);
        free(h->r_device);
        h->r_device = dup_or_null(st->device_id);
        free(h->r_substatus);
        h->r_substatus = dup_or_null(st->substatus);
        free(h->r_regid);
        h->r_regid = dup_or_null(st->registration_id);
        free(h->r_opid);
        h->r_opid = dup_or_null(resp->operation_id ?: h->operation_id);
        free(h->r_tracking);
        h->r_tracking = dup_or_null(resp->tracking_id);
        free(h->r_status);
        h->r_status = dup_or_null(dps_status_to_string(resp->status >= 0 ? resp->status : st->status));
        h->result.error_code = resp->error_code ? resp->error_code : st->error_code;
}

static void handle_response(DpsHttp *h, unsigned status) {
        _cleanup_(dps_response_done) DpsResponse resp = {};
        int r;

        h->result.retry_after = h->retry_after;
        r = dps_response_parse(h->body ?: "", h->body_len, &resp);
        if (r < 0) {
                http_finish(h, DPS_OUTCOME_TRANSIENT, status,
                            "Malformed response from the provisioning service (HTTP %u, %zu bytes)", status, h->body_len);
                return;
        }
        take_state(h, &resp);

        if (h->resumed && status >= 400 && status < 429) {
                /* the service no longer knows the operation of the earlier run: register anew */
                log_info("Operation %s of '%s' is unknown to the service (HTTP %u), registering again.",
                         h->operation_id, h->registration_id, status);
                h->resumed = false;
                h->operation_id = mfree_or_null(h->operation_id);
                h->r_opid = mfree_or_null(h->r_opid);
                h->polls = 0;
                r = send_request(h, DPS_REST_REGISTER);
                if (r < 0)
                        http_finish(h, DPS_OUTCOME_TRANSIENT, 0, "Failed to send the registration: %s", strerror(-r));
                return;
        }
        if (status >= 429) {
                if (h->retry_after >= 0 && h->throttled < DPS_HTTP_MAX_THROTTLED_RETRIES) {
                        char f_reg[192], f_status[32], f_ra[32];
                        h->throttled++;
                        log_field(f_reg, sizeof(f_reg), "REGISTRATION_ID", h->registration_id);
                        snprintf(f_status, sizeof(f_status), "DPS_STATUS=%u", status);
                        snprintf(f_ra, sizeof(f_ra), "RETRY_AFTER=%d", h->retry_after);
                        log_struct(LOG_NOTICE, STRV(EDGEPROV_MESSAGE_ID(THROTTLED), f_reg, f_status, f_ra),
                                   "Provisioning service answered %u for '%s', retrying the same request in %d s.",
                                   status, h->registration_id, h->retry_after);
                        schedule_next(h, h->retry_after);
                        return;
                }
                http_finish(h, DPS_OUTCOME_TRANSIENT, status, "Provisioning service answered %u%s%s", status,
                            resp.message ? ": " : "", strempty(resp.message));
                return;
        }
        h->resumed = false;
        if (status == 401 && resp.authentication_key && h->tpm_ek) {
                /* TPM attestation (§3.2): the challenge; the manager activates it and registers again */
                h->r_auth_key = strdup(resp.authentication_key);
                http_finish(h, DPS_OUTCOME_REJECTED, status, "%s",
                            h->r_auth_key ? "TPM challenge received" : "Out of memory");
                return;
        }
        if (status >= 300 || status < 200) {
                const char *msg = resp.message ?: resp.state.error_message;
                int64_t code = resp.error_code ?: resp.state.error_code;
                if (code)
                        http_finish(h, DPS_OUTCOME_REJECTED, status,
                                    "Provisioning service rejected the registration: HTTP %u, errorCode %" PRIi64 ": %s",
                                    status, code, strna(msg));
                else
                        http_finish(h, DPS_OUTCOME_REJECTED, status,
                                    "Provisioning service rejected the registration: HTTP %u: %s", status, strna(msg));
                return;
        }

        DpsStatus st = resp.status >= 0 ? resp.status : resp.state.status;
        switch (st) {
        case DPS_STATUS_ASSIGNING:
        case DPS_STATUS_UNASSIGNED:
                if (!resp.operation_id && !h->operation_id) {
                        http_finish(h, DPS_OUTCOME_TRANSIENT, status,
                                    "Provisioning service answered '%s' without an operationId", dps_status_to_string(st));
                        return;
                }
                if (!h->operation_id) {
                        if (strlen(resp.operation_id) > DPS_OPERATION_ID_MAX) {
                                http_finish(h, DPS_OUTCOME_TRANSIENT, status, "Oversized operationId");
                                return;
                        }
                        h->operation_id = strdup(resp.operation_id);
                        if (!h->operation_id) {
                                http_finish(h, DPS_OUTCOME_TRANSIENT, 0, "Out of memory");
                                return;
                        }
                        log_info("Registration of '%s' accepted over HTTPS, operation %s.", h->registration_id,
                                 h->operation_id);
                        if (h->accepted_cb)
                                h->accepted_cb(h, h->operation_id, h->retry_after, h->userdata);
                }
                if (h->polls >= DPS_HTTP_MAX_POLLS) {
                        http_finish(h, DPS_OUTCOME_TRANSIENT, status, "Registration still '%s' after %u polls",
                                    dps_status_to_string(st), h->polls);
                        return;
                }
                h->retry_phase = PHASE_POLLING;
                schedule_next(h, h->retry_after);
                return;
        case DPS_STATUS_ASSIGNED:
                if (isempty(resp.state.assigned_hub) || isempty(resp.state.device_id)) {
                        http_finish(h, DPS_OUTCOME_TRANSIENT, status,
                                    "Provisioning service answered 'assigned' without assignedHub/deviceId");
                        return;
                }
                http_finish(h, DPS_OUTCOME_ASSIGNED, status, NULL);
                return;
        case DPS_STATUS_FAILED:
                http_finish(h, DPS_OUTCOME_REJECTED, status, "Registration failed: errorCode %" PRIi64 ": %s",
                            resp.state.error_code, strna(resp.state.error_message));
                return;
        case DPS_STATUS_DISABLED:
                http_finish(h, DPS_OUTCOME_REJECTED, status, "The enrollment is disabled%s%s",
                            resp.state.error_message ? ": " : "", strempty(resp.state.error_message));
                return;
        case _DPS_STATUS_MAX:
        case _DPS_STATUS_INVALID:
                break;
        }
        http_finish(h, DPS_OUTCOME_TRANSIENT, status, "Response without a known status (HTTP %u)", status);
}

static void transfer_done(DpsHttp *h, CURLcode code) {
        long status = 0;

        if (h->phase != PHASE_REGISTERING && h->phase != PHASE_POLLING)
                return;
        if (h->body_too_large) {
                http_finish(h, DPS_OUTCOME_TRANSIENT, 0, "Oversized response from %s:%d (limit %d bytes body, %d headers)",
                            h->host, h->port, DPS_BODY_MAX, DPS_HTTP_RESPONSE_HEADERS_MAX);
                return;
        }
        if (code != CURLE_OK) {
                bool tls = code == CURLE_SSL_CONNECT_ERROR || code == CURLE_PEER_FAILED_VERIFICATION ||
                           code == CURLE_SSL_CACERT_BADFILE || code == CURLE_SSL_CERTPROBLEM;
                http_finish(h, DPS_OUTCOME_TRANSIENT, 0, "%s %s:%d failed: %s%s",
                            h->phase == PHASE_REGISTERING ? "Registration at" : "Polling", h->host, h->port,
                            sym_curl_easy_strerror(code),
                            tls ? " (is the CA right and the name in the certificate?)" : "");
                return;
        }
        (void) sym_curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status < 100 || status > 599) {
                http_finish(h, DPS_OUTCOME_TRANSIENT, 0, "Invalid HTTP status %ld from %s:%d", status, h->host, h->port);
                return;
        }
        log_debug("HTTP %ld (%zu bytes, retry-after %d).", status, h->body_len, h->retry_after);
        handle_response(h, (unsigned) status);
}

static void check_done(DpsHttp *h) {
        CURLMsg *msg;
        int left;

        while (h->multi && (msg = sym_curl_multi_info_read(h->multi, &left)))
                if (msg->msg == CURLMSG_DONE && msg->easy_handle == h->easy) {
                        CURLcode code = msg->data.result;
                        (void) sym_curl_multi_remove_handle(h->multi, h->easy);
                        h->easy_added = false;
                        transfer_done(h, code);
                        return; /* the next request (if any) re-added the handle: start over */
                }
}

/* ---- public ---- */

int dps_http_new(sd_event *e, const DpsClientParams *p, DpsHttpCallback cb, void *userdata, DpsHttp **ret) {
        DpsHttp *h;

        if (!e || !p || !p->host || !p->id_scope || !p->registration_id || !ret)
                return -EINVAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->event = sd_event_ref(e);
        h->port = p->port > 0 ? p->port : 443;
        h->request_timeout_usec = p->request_timeout_usec ?: 30 * USEC_PER_SEC;
        h->cb = cb;
        h->userdata = userdata;
        h->retry_after = -1;
        h->result.retry_after = -1;
        h->host = strdup(p->host);
        h->id_scope = strdup(p->id_scope);
        h->registration_id = strdup(p->registration_id);
        h->api_version = strdup(p->api_version ?: DPS_API_VERSION_DEFAULT);
        h->ca_file = dup_or_null(p->ca_file);
        h->password = dup_or_null(p->password);
        h->payload_json = dup_or_null(p->payload_json);
        h->tpm_ek = dup_or_null(p->tpm_ek_b64);
        h->tpm_srk = dup_or_null(p->tpm_srk_b64);
        h->operation_id = dup_or_null(p->operation_id);
        if (p->ssl_ctx && SSL_CTX_up_ref(p->ssl_ctx) == 1)
                h->client_ctx = p->ssl_ctx;
        if (!h->host || !h->id_scope || !h->registration_id || !h->api_version || (p->ca_file && !h->ca_file) ||
            (p->password && !h->password) || (p->payload_json && !h->payload_json) || (p->tpm_ek_b64 && !h->tpm_ek) ||
            (p->tpm_srk_b64 && !h->tpm_srk) || (p->operation_id && !h->operation_id)) {
                dps_http_free(h);
                return -ENOMEM;
        }
        *ret = h;
        return 0;
}

void dps_http_set_client_certificate(DpsHttp *h, const char *cert_file, const char *key_file) {
        free(h->cert_file);
        free(h->key_file);
        h->cert_file = dup_or_null(cert_file);
        h->key_file = dup_or_null(key_file);
}

void dps_http_set_accepted_callback(DpsHttp *h, DpsHttpAcceptedCallback cb) {
        h->accepted_cb = cb;
}

static int add_header(DpsHttp *h, const char *name, const char *value) {
        _cleanup_erase_ char *line = NULL;
        struct curl_slist *l;

        if (asprintf(&line, "%s: %s", name, value) < 0)
                return -ENOMEM;
        l = sym_curl_slist_append(h->headers, line);
        if (!l)
                return -ENOMEM;
        h->headers = l;
        return 0;
}

/* X.509 (issue 6): libcurl builds its own SSL_CTX (with the CA file and host name checks set
 * above); the client certificate chain and key of the identity's SSL_CTX are added to it, so a
 * key held by an OpenSSL provider (tpm2-openssl) works the same as over MQTT. */
static CURLcode on_ssl_ctx(CURL *easy, void *ssl_ctx, void *userdata) {
        DpsHttp *h = userdata;
        SSL_CTX *ctx = ssl_ctx;
        STACK_OF(X509) *chain = NULL;
        X509 *cert;
        EVP_PKEY *key;

        if (!h->client_ctx)
                return CURLE_OK;
        cert = SSL_CTX_get0_certificate(h->client_ctx);
        key = SSL_CTX_get0_privatekey(h->client_ctx);
        if (!cert || !key || SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1)
                return CURLE_SSL_CERTPROBLEM;
        if (SSL_CTX_get0_chain_certs(h->client_ctx, &chain) == 1 && chain)
                for (int i = 0; i < sk_X509_num(chain); i++)
                        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i)) != 1)
                                return CURLE_SSL_CERTPROBLEM;
        return CURLE_OK;
}

int dps_http_start(DpsHttp *h) {
        _cleanup_free_ char *dl_error = NULL;
        long timeout_ms;
        int r;

        if (h->phase != PHASE_IDLE)
                return -EBUSY;
        /* libcurl is loaded here, at the first HTTPS transaction (curl-dl.h); without it the
         * transaction fails as a transient error naming the package, and is retried */
        r = curl_dl_open(&dl_error);
        if (r < 0) {
                log_error("%s", dl_error ?: "The HTTPS transport needs libcurl, which cannot be loaded.");
                http_finish(h, DPS_OUTCOME_TRANSIENT, 0, "%s", dl_error ?: "libcurl cannot be loaded");
                return 0;
        }
        h->multi = sym_curl_multi_init();
        h->easy = sym_curl_easy_init();
        if (!h->multi || !h->easy)
                return -ENOMEM;
        if (sym_curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb) != CURLM_OK ||
            sym_curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) != CURLM_OK ||
            sym_curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb) != CURLM_OK ||
            sym_curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h) != CURLM_OK)
                return -EIO;

        /* headers as the Azure SDKs send them (dps-protocol.md §3.1) */
        r = add_header(h, "Accept", "application/json");
        if (r >= 0)
                r = add_header(h, "Content-Type", "application/json; charset=utf-8");
        if (r >= 0 && h->password)
                r = add_header(h, "Authorization", h->password);
        if (r >= 0) {
                /* no 100-continue round trip ("Expect:" with an empty value removes the header) */
                struct curl_slist *l = sym_curl_slist_append(h->headers, "Expect:");
                if (!l)
                        r = -ENOMEM;
                else
                        h->headers = l;
        }
        if (r < 0)
                return r;

        timeout_ms = (long) (h->request_timeout_usec / 1000);
        if (sym_curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, h->headers) != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_USERAGENT, DPS_HTTP_USER_AGENT) != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_REDIR_PROTOCOLS_STR, "https") != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2) != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms) != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_MAXFILESIZE, (long) DPS_BODY_MAX) != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, h) != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
            sym_curl_easy_setopt(h->easy, CURLOPT_HEADERDATA, h) != CURLE_OK)
                return -EIO;
        if (h->ca_file && sym_curl_easy_setopt(h->easy, CURLOPT_CAINFO, h->ca_file) != CURLE_OK)
                return -EIO;
        if (h->client_ctx && (sym_curl_easy_setopt(h->easy, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx) != CURLE_OK ||
                              sym_curl_easy_setopt(h->easy, CURLOPT_SSL_CTX_DATA, h) != CURLE_OK))
                return -EIO;
        if (h->cert_file && (sym_curl_easy_setopt(h->easy, CURLOPT_SSLCERT, h->cert_file) != CURLE_OK ||
                             sym_curl_easy_setopt(h->easy, CURLOPT_SSLKEY, h->key_file ?: h->cert_file) != CURLE_OK))
                return -EIO;

        if (h->operation_id) {
                h->resumed = true;
                log_info("Resuming operation %s of '%s' over HTTPS.", h->operation_id, h->registration_id);
                r = send_request(h, DPS_REST_OPERATION_STATUS);
        } else
                r = send_request(h, DPS_REST_REGISTER);
        if (r < 0)
                http_finish(h, DPS_OUTCOME_TRANSIENT, 0, "Failed to send the request: %s", strerror(-r));
        return 0;
}

DpsHttp *dps_http_free(DpsHttp *h) {
        if (!h)
                return NULL;
        h->defer = sd_event_source_disable_unref(h->defer);
        http_teardown(h);
        SSL_CTX_free(h->client_ctx);
        free(h->host);
        free(h->ca_file);
        free(h->cert_file);
        free(h->key_file);
        free(h->id_scope);
        free(h->registration_id);
        free(h->api_version);
        h->password = erase_and_free(h->password);
        free(h->payload_json);
        free(h->tpm_ek);
        free(h->tpm_srk);
        free(h->operation_id);
        free(h->body);
        free(h->request_body);
        free(h->r_hub);
        free(h->r_device);
        free(h->r_substatus);
        free(h->r_regid);
        free(h->r_status);
        free(h->r_message);
        free(h->r_tracking);
        free(h->r_opid);
        free(h->r_auth_key);
        sd_event_unref(h->event);
        free(h);
        return NULL;
}
