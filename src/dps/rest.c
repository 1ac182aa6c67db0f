/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dps/rest.h"
#include "edgeprov/codec.h"
#include "edgeprov/dps-rest.h"
#include "edgeprov/dps.h"
#include "edgeprov/json-util.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/sas.h"

typedef struct Vouch {
        char *operation_id;
        char *registration_id;
        uint8_t digest[32];
        uint64_t expiry;
} Vouch;

struct DpsRest {
        DpsService *service;
        Vouch vouch[DPS_REST_VOUCH_MAX];
        size_t next;    /* ring: the oldest entry is replaced */
};

int dps_rest_new(DpsService *s, DpsRest **ret) {
        DpsRest *r = calloc(1, sizeof(DpsRest));
        if (!r)
                return -ENOMEM;
        r->service = s;
        *ret = r;
        return 0;
}

static void vouch_clear(Vouch *v) {
        free(v->operation_id);
        free(v->registration_id);
        *v = (Vouch) {};
}

DpsRest *dps_rest_free(DpsRest *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < DPS_REST_VOUCH_MAX; i++)
                vouch_clear(&r->vouch[i]);
        free(r);
        return NULL;
}

static int token_digest(const char *token, uint8_t ret[32]) {
        return hmac_sha256("edgeprov-rest-vouch", 19, token, strlen(token), ret);
}

static void vouch_add(DpsRest *r, const char *operation_id, const char *registration_id, const char *token) {
        _cleanup_(sas_token_done) SasToken t = {};
        Vouch *v = &r->vouch[r->next];

        if (sas_token_parse(token, strlen(token), &t) < 0)
                return;
        vouch_clear(v);
        v->operation_id = strdup(operation_id);
        v->registration_id = strdup(registration_id);
        if (!v->operation_id || !v->registration_id || token_digest(token, v->digest) < 0) {
                vouch_clear(v);
                return;
        }
        v->expiry = t.expiry;
        r->next = (r->next + 1) % DPS_REST_VOUCH_MAX;
}

/* The expiry when token is the one that registered operation_id of registration_id, else 0. */
static uint64_t vouch_find(DpsRest *r, const char *operation_id, const char *registration_id, const char *token) {
        uint8_t d[32];

        if (!token || token_digest(token, d) < 0)
                return 0;
        for (size_t i = 0; i < DPS_REST_VOUCH_MAX; i++) {
                Vouch *v = &r->vouch[i];
                if (v->operation_id && streq(v->operation_id, operation_id) &&
                    strcaseeq(v->registration_id, registration_id) && memeq_consttime(v->digest, d, sizeof(d)))
                        return v->expiry;
        }
        return 0;
}

void dps_rest_reply_done(DpsRestReply *r) {
        if (!r)
                return;
        free(r->location);
        free(r->body);
        *r = (DpsRestReply) { .retry_after = -1 };
}

int dps_rest_error(unsigned status, int64_t code, int retry_after, const char *message, DpsRestReply *ret) {
        _cleanup_json_ struct json_object *o = NULL;
        uint8_t u[16];
        char tracking[37], ts[64];
        struct timespec now;
        struct tm tm;
        const char *s;

        if (random_bytes(u, sizeof(u)) < 0)
                memset(u, 0, sizeof(u));
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        snprintf(tracking, sizeof(tracking),
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3],
                 u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%07ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long) (now.tv_nsec / 100) % 10000000L);

        o = json_object_new_object();
        if (!o || json_add(o, "errorCode", json_object_new_int64(code)) < 0 ||
            json_add_string(o, "trackingId", tracking) < 0 || json_add_string(o, "message", message) < 0 ||
            json_add_string(o, "timestampUtc", ts) < 0)
                return -ENOMEM;
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        if (!s)
                return -ENOMEM;
        DpsRestReply r = { .status = status, .retry_after = retry_after, .error_code = code };
        r.body = strdup(s);
        if (!r.body)
                return -ENOMEM;
        r.body_len = strlen(r.body);
        *ret = r;
        return 0;
}

static bool content_type_ok(const char *ct) {
        if (!ct)
                return true;
        while (*ct == ' ' || *ct == '\t')
                ct++;
        if (strncasecmp(ct, "application/json", 16) != 0)
                return false;
        ct += 16;
        return *ct == 0 || *ct == ';' || *ct == ' ' || *ct == '\t';
}

/* The core's reply → HTTP: status, body, retry-after from the reply topic, x-ms-error-code
 * and Location. */
static int reply_from_core(DpsReply *core, const DpsRestPath *p, const char *api_version, DpsRestReply *ret) {
        _cleanup_(dps_response_topic_done) DpsResponseTopic t = {};
        DpsRestReply r = { .status = core->status, .retry_after = -1 };

        if (dps_response_topic_parse(core->topic, &t) >= 0)
                r.retry_after = t.retry_after;
        if (core->status >= 300 || core->status == 202) {
                _cleanup_(dps_response_done) DpsResponse resp = {};
                if (dps_response_parse(core->body, core->body_len, &resp) >= 0) {
                        r.error_code = resp.error_code;
                        if (core->status == 202 && resp.operation_id &&
                            dps_rest_path_format(DPS_REST_OPERATION_STATUS, p->id_scope, p->registration_id,
                                                 resp.operation_id, api_version, &r.location) == -ENOMEM)
                                return -ENOMEM;
                }
        }
        r.body = TAKE_PTR(core->body);
        r.body_len = core->body_len;
        *ret = r;
        return 0;
}

int dps_rest_handle(DpsRest *rest, const DpsRestRequest *rq, DpsRestReply *ret) {
        DpsService *s = rest ? rest->service : NULL;
        _cleanup_(dps_rest_path_done) DpsRestPath p = { .op = _DPS_REST_OP_INVALID };
        _cleanup_free_ char *username = NULL, *topic = NULL;
        DpsClient *c = NULL;
        DpsReply core = {};
        int r;

        if (!s || !rq || !rq->conn || !rq->method || !rq->path || !ret)
                return -EINVAL;

        r = dps_rest_path_parse(rq->path, &p);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return dps_rest_error(404, DPS_ERROR_REST_NOT_FOUND, -1, "No such resource.", ret);
        if (!streq(rq->method, dps_rest_op_method(p.op))) {
                r = dps_rest_error(405, DPS_ERROR_REST_METHOD, -1, "Method not allowed on this resource.", ret);
                if (r >= 0)
                        ret->allow = dps_rest_op_method(p.op);
                return r;
        }
        if (isempty(rq->api_version))
                return dps_rest_error(400, DPS_ERROR_REST_BAD_REQUEST, -1, "The api-version query parameter is required.",
                                      ret);
        if ((p.op == DPS_REST_REGISTER || (p.op == DPS_REST_DEVICE_STATUS && rq->body_len > 0)) &&
            !content_type_ok(rq->content_type))
                return dps_rest_error(415, DPS_ERROR_REST_MEDIA_TYPE, -1, "Content-Type must be application/json.", ret);
        if (rq->body_len > DPS_BODY_MAX)
                return dps_rest_error(413, DPS_ERROR_TOO_LARGE, -1, "Request body too large.", ret);

        r = dps_username_format(p.id_scope, p.registration_id, rq->api_version, NULL, &username);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return dps_rest_error(400, DPS_ERROR_REST_BAD_REQUEST, -1,
                                      "Malformed ID scope, registration id or api-version.", ret);

        if (rq->n_peer > 0 && !rq->authorization)
                r = dps_service_connect_x509_der(s, rq->conn, p.registration_id, username, rq->peer_der,
                                                 rq->peer_der_len, rq->n_peer, &c);
        else
                r = dps_service_connect(s, rq->conn, p.registration_id, username, rq->authorization,
                                        rq->authorization ? strlen(rq->authorization) : 0, &c);
        if (r < 0)
                return r;
        if (r != DPS_CONNECT_ACCEPTED) {
                dps_service_disconnect(s, rq->conn);
                return dps_rest_error(401, DPS_ERROR_UNAUTHORIZED, -1, "Unauthorized: the ID scope is not served here.",
                                      ret);
        }

        if (p.op == DPS_REST_DEVICE_STATUS) {
                /* the body is a DeviceRegistration; only its shape is checked */
                _cleanup_(dps_register_request_done) DpsRegisterRequest body = {};
                if (rq->body_len > 0 && dps_register_request_parse(rq->body, rq->body_len, &body) < 0)
                        r = dps_rest_error(400, DPS_ERROR_REST_BAD_REQUEST, -1, "Malformed DeviceRegistration body.",
                                           ret);
                else {
                        r = dps_client_status_lookup(c, &core);
                        if (r >= 0) {
                                r = reply_from_core(&core, &p, rq->api_version, ret);
                                dps_reply_done(&core);
                        }
                }
                dps_service_disconnect(s, rq->conn);
                return r;
        }
        if (p.op == DPS_REST_REGISTER)
                r = dps_register_topic_format("1", &topic);
        else
                r = dps_poll_topic_format("1", p.operation_id, &topic);
        if (r < 0) {
                dps_service_disconnect(s, rq->conn);
                if (r == -ENOMEM)
                        return r;
                return dps_rest_error(404, DPS_ERROR_NO_OPERATION, -1, "Unknown operation.", ret);
        }

        if (p.op == DPS_REST_OPERATION_STATUS) {
                uint64_t expiry = vouch_find(rest, p.operation_id, p.registration_id, rq->authorization);
                if (expiry > 0)
                        dps_client_vouch_for_poll(c, expiry);
        }
        r = dps_client_handle_request(c, topic, rq->body ?: "", rq->body_len, &core);
        dps_service_disconnect(s, rq->conn);
        if (r < 0)
                return r;
        r = reply_from_core(&core, &p, rq->api_version, ret);
        dps_reply_done(&core);
        if (r >= 0 && p.op == DPS_REST_REGISTER && rq->authorization && (ret->status == 200 || ret->status == 202)) {
                _cleanup_(dps_response_done) DpsResponse resp = {};
                if (dps_response_parse(ret->body, ret->body_len, &resp) >= 0 && resp.operation_id)
                        vouch_add(rest, resp.operation_id, p.registration_id, rq->authorization);
        }
        return r;
}
