/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "edgeprov/dps.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"

static const char *const dps_status_table[_DPS_STATUS_MAX] = {
        [DPS_STATUS_UNASSIGNED] = "unassigned",
        [DPS_STATUS_ASSIGNING] = "assigning",
        [DPS_STATUS_ASSIGNED] = "assigned",
        [DPS_STATUS_FAILED] = "failed",
        [DPS_STATUS_DISABLED] = "disabled",
};

const char *dps_status_to_string(DpsStatus s) {
        if (s < 0 || s >= _DPS_STATUS_MAX)
                return NULL;
        return dps_status_table[s];
}

DpsStatus dps_status_from_string(const char *s) {
        if (!s)
                return _DPS_STATUS_INVALID;
        for (DpsStatus i = 0; i < _DPS_STATUS_MAX; i++)
                if (streq(dps_status_table[i], s))
                        return i;
        return _DPS_STATUS_INVALID;
}

static bool body_is_blank(const void *body, size_t len) {
        const char *p = body;
        for (size_t i = 0; i < len; i++)
                if (!strchr(" \t\r\n", p[i]) || p[i] == 0)
                        return false;
        return true;
}

/* Returns the member, NULL when absent or JSON null. */
static struct json_object *member(struct json_object *o, const char *key) {
        struct json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v))
                return NULL;
        return v;
}

/* An optional member that, if present (and not null), must be an object. */
static int member_object(struct json_object *o, const char *key, struct json_object **ret) {
        struct json_object *v = member(o, key);
        if (v && !json_object_is_type(v, json_type_object))
                return -EINVAL;
        *ret = v;
        return 0;
}

static int member_int64(struct json_object *o, const char *key, int64_t *ret) {
        struct json_object *v = member(o, key);
        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_int))
                return -EINVAL;
        *ret = json_object_get_int64(v);
        return 0;
}

/* Absent → _DPS_STATUS_INVALID; unknown strings (e.g. the legacy "blacklisted") likewise;
 * a non-string is an error. */
static int member_status(struct json_object *o, const char *key, DpsStatus *ret) {
        _cleanup_free_ char *s = NULL;
        int r = json_dup_string(o, key, &s);
        if (r < 0)
                return r;
        *ret = s ? dps_status_from_string(s) : _DPS_STATUS_INVALID;
        return 0;
}

/* Any JSON value, re-serialized; NULL when absent or null. */
static int member_json(struct json_object *o, const char *key, char **ret) {
        struct json_object *v = member(o, key);
        if (!v) {
                *ret = NULL;
                return 0;
        }
        const char *s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
        if (!s)
                return -ENOMEM;
        char *d = strdup(s);
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

static void dps_registration_state_done(DpsRegistrationState *s) {
        free(s->registration_id);
        free(s->assigned_hub);
        free(s->device_id);
        free(s->substatus);
        free(s->created);
        free(s->last_updated);
        free(s->etag);
        free(s->error_message);
        free(s->payload_json);
        free(s->tpm_authentication_key);
        free(s->enrollment_group_id);
        *s = (DpsRegistrationState) { .status = _DPS_STATUS_INVALID };
}

void dps_response_done(DpsResponse *r) {
        if (!r)
                return;
        free(r->operation_id);
        dps_registration_state_done(&r->state);
        free(r->tracking_id);
        free(r->message);
        free(r->authentication_key);
        free(r->key_name);
        *r = (DpsResponse) {
                .status = _DPS_STATUS_INVALID,
                .state.status = _DPS_STATUS_INVALID,
        };
}

static int registration_state_parse(struct json_object *o, DpsRegistrationState *s) {
        struct json_object *tpm, *x509, *symkey;
        int r;

        if ((r = json_dup_string(o, "registrationId", &s->registration_id)) < 0 ||
            (r = json_dup_string(o, "assignedHub", &s->assigned_hub)) < 0 ||
            (r = json_dup_string(o, "deviceId", &s->device_id)) < 0 ||
            (r = member_status(o, "status", &s->status)) < 0 ||
            (r = json_dup_string(o, "substatus", &s->substatus)) < 0 ||
            (r = json_dup_string(o, "createdDateTimeUtc", &s->created)) < 0 ||
            (r = json_dup_string(o, "lastUpdatedDateTimeUtc", &s->last_updated)) < 0 ||
            (r = json_dup_string(o, "etag", &s->etag)) < 0 ||
            (r = member_int64(o, "errorCode", &s->error_code)) < 0 ||
            (r = json_dup_string(o, "errorMessage", &s->error_message)) < 0 ||
            (r = member_json(o, "payload", &s->payload_json)) < 0)
                return r;

        if ((r = member_object(o, "tpm", &tpm)) < 0 || (r = member_object(o, "x509", &x509)) < 0 ||
            (r = member_object(o, "symmetricKey", &symkey)) < 0)
                return r;

        if (tpm) {
                r = json_dup_string(tpm, "authenticationKey", &s->tpm_authentication_key);
                if (r < 0)
                        return r;
        }

        /* the group id lives under whichever attestation was used */
        _cleanup_free_ char *g_x509 = NULL, *g_sym = NULL;
        if (x509) {
                r = json_dup_string(x509, "enrollmentGroupId", &g_x509);
                if (r < 0)
                        return r;
        }
        if (symkey) {
                r = json_dup_string(symkey, "enrollmentGroupId", &g_sym);
                if (r < 0)
                        return r;
        }
        s->enrollment_group_id = g_x509 ? TAKE_PTR(g_x509) : TAKE_PTR(g_sym);

        return 0;
}

int dps_response_parse(const void *body, size_t len, DpsResponse *ret) {
        _cleanup_(dps_response_done) DpsResponse resp = {
                .status = _DPS_STATUS_INVALID,
                .state.status = _DPS_STATUS_INVALID,
        };
        _cleanup_json_ struct json_object *o = NULL;
        struct json_object *state;
        int r;

        if (!ret || (!body && len > 0))
                return -EINVAL;
        if (len > DPS_BODY_MAX)
                return -E2BIG;

        if (!body_is_blank(body, len)) {
                r = json_parse_limited(body, len, DPS_BODY_MAX, DPS_JSON_MAX_DEPTH, &o);
                if (r < 0)
                        return r;
                if (!o || !json_object_is_type(o, json_type_object))
                        return -EINVAL;

                if ((r = json_dup_string(o, "operationId", &resp.operation_id)) < 0 ||
                    (r = member_status(o, "status", &resp.status)) < 0 ||
                    (r = member_int64(o, "errorCode", &resp.error_code)) < 0 ||
                    (r = json_dup_string(o, "trackingId", &resp.tracking_id)) < 0 ||
                    (r = json_dup_string(o, "message", &resp.message)) < 0 ||
                    (r = json_dup_string(o, "authenticationKey", &resp.authentication_key)) < 0 ||
                    (r = json_dup_string(o, "keyName", &resp.key_name)) < 0)
                        return r;

                r = member_object(o, "registrationState", &state);
                if (r < 0)
                        return r;
                if (state) {
                        r = registration_state_parse(state, &resp.state);
                        if (r < 0)
                                return r;
                        resp.has_registration_state = true;
                }
        }

        *ret = resp;
        resp = (DpsResponse) {};
        return 0;
}

void dps_register_request_done(DpsRegisterRequest *r) {
        if (!r)
                return;
        free(r->registration_id);
        free(r->payload_json);
        free(r->tpm_endorsement_key);
        free(r->tpm_storage_root_key);
        *r = (DpsRegisterRequest) {};
}

int dps_register_request_parse(const void *body, size_t len, DpsRegisterRequest *ret) {
        _cleanup_(dps_register_request_done) DpsRegisterRequest req = {};
        _cleanup_json_ struct json_object *o = NULL;
        struct json_object *tpm;
        int r;

        if (!ret || (!body && len > 0))
                return -EINVAL;
        if (len > DPS_BODY_MAX)
                return -E2BIG;

        /* .NET sends nothing, Node and Python send " " on polls */
        if (!body_is_blank(body, len)) {
                r = json_parse_limited(body, len, DPS_BODY_MAX, DPS_JSON_MAX_DEPTH, &o);
                if (r < 0)
                        return r;
                /* a literal null body counts as empty */
                if (o) {
                        if (!json_object_is_type(o, json_type_object))
                                return -EINVAL;

                        if ((r = json_dup_string(o, "registrationId", &req.registration_id)) < 0 ||
                            (r = member_json(o, "payload", &req.payload_json)) < 0 ||
                            (r = member_object(o, "tpm", &tpm)) < 0)
                                return r;

                        if (tpm) {
                                if ((r = json_dup_string(tpm, "endorsementKey", &req.tpm_endorsement_key)) < 0 ||
                                    (r = json_dup_string(tpm, "storageRootKey", &req.tpm_storage_root_key)) < 0)
                                        return r;
                        }
                }
        }

        *ret = req;
        req = (DpsRegisterRequest) {};
        return 0;
}

int dps_register_request_format(const char *registration_id, const char *payload_json, const char *tpm_ek,
                                const char *tpm_srk, char **ret) {
        _cleanup_json_ struct json_object *o = NULL, *payload = NULL, *tpm = NULL;
        int r;

        if (!ret || (tpm_srk && !tpm_ek))
                return -EINVAL;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        if (registration_id) {
                r = json_add_string(o, "registrationId", registration_id);
                if (r < 0)
                        return r;
        }

        if (payload_json) {
                r = json_parse_limited(payload_json, strlen(payload_json), DPS_BODY_MAX, DPS_JSON_MAX_DEPTH,
                                       &payload);
                if (r < 0)
                        return r;
                /* "null" parses to NULL and is added as a JSON null */
                if (json_object_object_add(o, "payload", payload) < 0)
                        return -ENOMEM;
                TAKE_PTR(payload);
        }

        if (tpm_ek) {
                tpm = json_object_new_object();
                if (!tpm)
                        return -ENOMEM;
                r = json_add_string(tpm, "endorsementKey", tpm_ek);
                if (r < 0)
                        return r;
                if (tpm_srk) {
                        r = json_add_string(tpm, "storageRootKey", tpm_srk);
                        if (r < 0)
                                return r;
                }
                if (json_object_object_add(o, "tpm", tpm) < 0)
                        return -ENOMEM;
                TAKE_PTR(tpm);
        }

        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        if (!s)
                return -ENOMEM;
        if (strlen(s) > DPS_BODY_MAX)
                return -E2BIG;

        char *d = strdup(s);
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}
