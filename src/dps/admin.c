/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "dps/admin.h"
#include "dps/datafile.h"
#include "dps/store.h"
#include "edgeprov/dps.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"

static void format_usec(uint64_t usec, char buf[static 32]) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;
        if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, 32, "-");
}

static struct json_object *record_json(const DpsRecord *r) {
        _cleanup_json_ struct json_object *o = json_object_new_object();
        char c[32], u[32];

        if (!o)
                return NULL;
        format_usec(r->created_usec, c);
        format_usec(r->updated_usec, u);
        if (json_add_string(o, "registrationId", r->registration_id) < 0 || json_add_string(o, "deviceId", r->device_id) < 0 ||
            json_add_string(o, "assignedHub", r->assigned_hub) < 0 || json_add_string(o, "initialHub", r->initial_hub) < 0 ||
            json_add_string(o, "enrollmentGroupId", r->enrollment_group_id) < 0 || json_add_string(o, "status", r->status) < 0 ||
            json_add_string(o, "substatus", r->substatus) < 0 || json_add_string(o, "etag", r->etag) < 0 ||
            json_add_string(o, "errorMessage", r->error_message) < 0 || json_add_string(o, "createdDateTimeUtc", c) < 0 ||
            json_add_string(o, "lastUpdatedDateTimeUtc", u) < 0)
                return NULL;
        if (r->error_code != 0 && json_add(o, "errorCode", json_object_new_int64(r->error_code)) < 0)
                return NULL;
        if (r->initial_twin) {
                struct json_object *t = NULL;
                if (json_parse_limited(r->initial_twin, strlen(r->initial_twin), DPS_BODY_MAX, DPS_JSON_MAX_DEPTH, &t) >=
                            0 &&
                    json_add(o, "initialTwin", t) < 0)
                        return NULL;
        }
        return TAKE_PTR(o);
}

/* The enrollment as stored, minus the symmetric keys. */
static struct json_object *enrollment_json(const DpsEnrollment *e) {
        struct json_object *copy = NULL, *att = NULL, *sk = NULL;

        if (json_object_deep_copy(e->json, &copy, NULL) < 0 || !copy)
                return NULL;
        if (json_object_object_get_ex(copy, "attestation", &att) &&
            json_object_object_get_ex(att, "symmetricKey", &sk) && json_object_is_type(sk, json_type_object)) {
                json_object_object_del(sk, "primaryKey");
                json_object_object_del(sk, "secondaryKey");
        }
        return copy;
}

static int collect_record(const DpsRecord *r, void *userdata) {
        struct json_object *o = record_json(r);
        if (!o || json_object_array_add(userdata, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        return 0;
}

static const char *get_str(struct json_object *cmd, const char *key) {
        struct json_object *v;
        if (!json_object_object_get_ex(cmd, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        const char *s = json_object_get_string(v);
        return isempty(s) || strlen(s) > 256 ? NULL : s;
}

/* Fills resp with "data" or "error"; -ENOMEM only. */
static int run_command(DpsService *s, const char *name, struct json_object *cmd, struct json_object *resp) {
        const DpsData *d = dps_service_get_data(s);
        DpsStore *st = dps_service_get_store(s);
        _cleanup_json_ struct json_object *data = json_object_new_object();
        const char *error = NULL;
        int r;

        if (!data)
                return -ENOMEM;

        if (streq(name, "listHubs")) {
                struct json_object *a = json_object_new_array();
                if (json_add(data, "linkedHubs", a) < 0)
                        return -ENOMEM;
                for (size_t i = 0; d && i < d->n_hubs; i++) {
                        struct json_object *h = json_object_new_object();
                        if (!h || json_object_array_add(a, h) < 0) {
                                json_object_put(h);
                                return -ENOMEM;
                        }
                        if (json_add_string(h, "name", d->hubs[i].name) < 0 ||
                            json_add(h, "allocationWeight", json_object_new_int((int) d->hubs[i].allocation_weight)) < 0 ||
                            json_add(h, "applyAllocationPolicy",
                                json_object_new_boolean(d->hubs[i].apply_allocation_policy)) < 0)
                                return -ENOMEM;
                }
        } else if (streq(name, "listEnrollments") || streq(name, "listEnrollmentGroups")) {
                bool groups = streq(name, "listEnrollmentGroups");
                struct json_object *a = json_object_new_array();
                if (json_add(data, groups ? "enrollmentGroups" : "individualEnrollments", a) < 0)
                        return -ENOMEM;
                size_t n = !d ? 0 : groups ? d->n_groups : d->n_individual;
                for (size_t i = 0; i < n; i++) {
                        struct json_object *e = enrollment_json(groups ? d->groups + i : d->individual + i);
                        if (!e || json_object_array_add(a, e) < 0) {
                                json_object_put(e);
                                return -ENOMEM;
                        }
                }
        } else if (streq(name, "getEnrollment") || streq(name, "getEnrollmentGroup")) {
                bool group = streq(name, "getEnrollmentGroup");
                const char *id = get_str(cmd, group ? "enrollmentGroupId" : "registrationId");
                const DpsEnrollment *e = !id || !d ? NULL
                                         : group   ? dps_data_find_group(d, id)
                                                   : dps_data_find_individual(d, id);
                if (!id)
                        error = group ? "Invalid/missing enrollmentGroupId" : "Invalid/missing registrationId";
                else if (!e)
                        error = "Not found";
                else if (json_add(data, group ? "enrollmentGroup" : "enrollment", enrollment_json(e)) < 0)
                        return -ENOMEM;
        } else if (streq(name, "listRegistrations")) {
                struct json_object *a = json_object_new_array();
                if (json_add(data, "registrations", a) < 0)
                        return -ENOMEM;
                if (!st)
                        error = "No registration database";
                else {
                        r = dps_store_foreach(st, collect_record, a);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                error = "Internal error";
                }
        } else if (streq(name, "getRegistration") || streq(name, "deleteRegistration")) {
                const char *id = get_str(cmd, "registrationId");
                if (!id)
                        error = "Invalid/missing registrationId";
                else if (!st)
                        error = "No registration database";
                else if (streq(name, "deleteRegistration")) {
                        r = dps_store_delete(st, id);
                        error = r == -ENOENT ? "Not found" : r < 0 ? "Internal error" : NULL;
                } else {
                        _cleanup_(dps_record_done) DpsRecord rec = {};
                        r = dps_store_get(st, id, &rec);
                        if (r == -ENOMEM)
                                return r;
                        if (r == -ENOENT)
                                error = "Not found";
                        else if (r < 0)
                                error = "Internal error";
                        else if (json_add(data, "registration", record_json(&rec)) < 0)
                                return -ENOMEM;
                }
        } else
                error = "Unknown command";

        if (error)
                return json_add_string(resp, "error", error);
        return json_add(resp, "data", TAKE_PTR(data));
}

int dps_admin_handle(DpsService *s, const void *payload, size_t len, char **ret_json, size_t *ret_len) {
        _cleanup_json_ struct json_object *req = NULL, *out = json_object_new_object();
        struct json_object *cmds = NULL, *responses = json_object_new_array();
        int r;

        if (!out || json_add(out, "responses", responses) < 0)
                return -ENOMEM;

        r = json_parse_limited(payload, len, DPS_BODY_MAX, DPS_JSON_MAX_DEPTH, &req);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !json_object_is_type(req, json_type_object) ||
            !json_object_object_get_ex(req, "commands", &cmds) || !json_object_is_type(cmds, json_type_array) ||
            json_object_array_length(cmds) > DPS_ADMIN_MAX_COMMANDS) {
                struct json_object *e = json_object_new_object();
                if (!e || json_object_array_add(responses, e) < 0) {
                        json_object_put(e);
                        return -ENOMEM;
                }
                if (json_add_string(e, "command", "Unknown") < 0 ||
                    json_add_string(e, "error", r == -E2BIG ? "Payload too large"
                                                       : "Invalid request: expected {\"commands\":[...]} with at most "
                                                         "100 commands") < 0)
                        return -ENOMEM;
        } else
                for (size_t i = 0; i < json_object_array_length(cmds); i++) {
                        struct json_object *cmd = json_object_array_get_idx(cmds, i), *v = NULL, *corr = NULL;
                        struct json_object *resp = json_object_new_object();
                        if (!resp || json_object_array_add(responses, resp) < 0) {
                                json_object_put(resp);
                                return -ENOMEM;
                        }
                        const char *name = NULL;
                        if (json_object_is_type(cmd, json_type_object) &&
                            json_object_object_get_ex(cmd, "command", &v) && json_object_is_type(v, json_type_string))
                                name = json_object_get_string(v);
                        if (json_add_string(resp, "command", name ?: "Unknown") < 0)
                                return -ENOMEM;
                        if (json_object_is_type(cmd, json_type_object) &&
                            json_object_object_get_ex(cmd, "correlationData", &corr) &&
                            json_add(resp, "correlationData", json_object_get(corr)) < 0)
                                return -ENOMEM;
                        r = name ? run_command(s, name, cmd, resp) : json_add_string(resp, "error", "Unknown command");
                        if (r < 0)
                                return r;
                }

        size_t l = 0;
        const char *t = json_object_to_json_string_length(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                                          &l);
        if (!t)
                return -ENOMEM;
        char *c = strndup(t, l);
        if (!c)
                return -ENOMEM;
        *ret_json = c;
        *ret_len = l;
        return 0;
}
