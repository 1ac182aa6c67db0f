/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "dps/admin.h"
#include "dps/admin-ca.h"
#include "dps/datafile.h"
#include "dps/store.h"
#include "edgeprov/codec.h"
#include "edgeprov/dps.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"
#include "edgeprov/time-util.h"

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

_printf_(2, 3) static int admin_error(char **ret_error, const char *fmt, ...) {
        va_list ap;
        char *m = NULL;

        va_start(ap, fmt);
        int r = vasprintf(&m, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        free(*ret_error);
        *ret_error = m;
        return 0;
}

static int add_array(struct json_object *data, const char *key, struct json_object **ret) {
        struct json_object *a = json_object_new_array();
        if (json_add(data, key, a) < 0)
                return -ENOMEM;
        *ret = a;
        return 0;
}

static int array_add(struct json_object *a, struct json_object *o) {
        if (!o || json_object_array_add(a, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        return 0;
}

static struct json_object *hub_json(const DpsLinkedHub *h) {
        _cleanup_json_ struct json_object *o = json_object_new_object();
        if (!o || json_add_string(o, "name", h->name) < 0 ||
            json_add(o, "allocationWeight", json_object_new_int((int) h->allocation_weight)) < 0 ||
            json_add(o, "applyAllocationPolicy", json_object_new_boolean(h->apply_allocation_policy)) < 0 ||
            json_add_string(o, "probeAddress", h->probe_address) < 0)
                return NULL;
        return TAKE_PTR(o);
}

/* ---- read-only commands ------------------------------------------------------------------ */

static int cmd_list_hubs(DpsService *s, struct json_object *cmd, struct json_object *data, char **ret_error) {
        const DpsData *d = dps_service_get_data(s);
        struct json_object *a;

        if (add_array(data, "linkedHubs", &a) < 0)
                return -ENOMEM;
        for (size_t i = 0; d && i < d->n_hubs; i++)
                if (array_add(a, hub_json(d->hubs + i)) < 0)
                        return -ENOMEM;
        return 0;
}

static int cmd_get_hub(DpsService *s, struct json_object *cmd, struct json_object *data, char **ret_error) {
        const char *name = get_str(cmd, "name");
        const DpsLinkedHub *h = name ? dps_data_find_hub(dps_service_get_data(s), name) : NULL;

        if (!name)
                return admin_error(ret_error, "Invalid/missing name");
        if (!h)
                return admin_error(ret_error, "Not found: no linked hub '%s'", name);
        return json_add(data, "hub", hub_json(h));
}

static int list_enrollments(DpsService *s, bool groups, struct json_object *data) {
        const DpsData *d = dps_service_get_data(s);
        struct json_object *a;

        if (add_array(data, groups ? "enrollmentGroups" : "individualEnrollments", &a) < 0)
                return -ENOMEM;
        size_t n = !d ? 0 : groups ? d->n_groups : d->n_individual;
        for (size_t i = 0; i < n; i++)
                if (array_add(a, enrollment_json(groups ? d->groups + i : d->individual + i)) < 0)
                        return -ENOMEM;
        return 0;
}

static int cmd_list_enrollments(DpsService *s, struct json_object *cmd, struct json_object *data, char **ret_error) {
        return list_enrollments(s, false, data);
}

static int cmd_list_groups(DpsService *s, struct json_object *cmd, struct json_object *data, char **ret_error) {
        return list_enrollments(s, true, data);
}

static int get_enrollment(DpsService *s, bool group, struct json_object *cmd, struct json_object *data,
                          char **ret_error) {
        const DpsData *d = dps_service_get_data(s);
        const char *id = get_str(cmd, group ? "enrollmentGroupId" : "registrationId");
        const DpsEnrollment *e = !id || !d ? NULL : group ? dps_data_find_group(d, id) : dps_data_find_individual(d, id);

        if (!id)
                return admin_error(ret_error, group ? "Invalid/missing enrollmentGroupId" : "Invalid/missing registrationId");
        if (!e)
                return admin_error(ret_error, "Not found: no %s '%s'", group ? "enrollment group" : "individual enrollment",
                                   id);
        return json_add(data, group ? "enrollmentGroup" : "enrollment", enrollment_json(e));
}

static int cmd_get_enrollment(DpsService *s, struct json_object *cmd, struct json_object *data, char **ret_error) {
        return get_enrollment(s, false, cmd, data, ret_error);
}

static int cmd_get_group(DpsService *s, struct json_object *cmd, struct json_object *data, char **ret_error) {
        return get_enrollment(s, true, cmd, data, ret_error);
}

static int cmd_list_registrations(DpsService *s, struct json_object *cmd, struct json_object *data,
                                  char **ret_error) {
        DpsStore *st = dps_service_get_store(s);
        struct json_object *a;
        int r;

        if (add_array(data, "registrations", &a) < 0)
                return -ENOMEM;
        if (!st)
                return admin_error(ret_error, "No registration database");
        r = dps_store_foreach(st, collect_record, a);
        if (r == -ENOMEM)
                return r;
        return r < 0 ? admin_error(ret_error, "Internal error: %s", strerror(-r)) : 0;
}

/* The record store and the registrationId of a registration command: 1, or 0 with *ret_error set. */
static int registration_target(DpsService *s, struct json_object *cmd, DpsStore **ret_st, const char **ret_id,
                               char **ret_error) {
        DpsStore *st = dps_service_get_store(s);
        const char *id = get_str(cmd, "registrationId");

        if (!id)
                return admin_error(ret_error, "Invalid/missing registrationId");
        if (!st)
                return admin_error(ret_error, "No registration database");
        *ret_st = st;
        *ret_id = id;
        return 1;
}

static int cmd_get_registration(DpsService *s, struct json_object *cmd, struct json_object *data,
                                char **ret_error) {
        _cleanup_(dps_record_done) DpsRecord rec = {};
        DpsStore *st = NULL;
        const char *id = NULL;
        int r;

        r = registration_target(s, cmd, &st, &id, ret_error);
        if (r <= 0)
                return r;
        r = dps_store_get(st, id, &rec);
        if (r == -ENOMEM)
                return r;
        if (r == -ENOENT)
                return admin_error(ret_error, "Not found: no registration record '%s'", id);
        if (r < 0)
                return admin_error(ret_error, "Internal error: %s", strerror(-r));
        return json_add(data, "registration", record_json(&rec));
}

static int cmd_delete_registration(DpsService *s, struct json_object *cmd, struct json_object *data,
                                   char **ret_error) {
        DpsStore *st = NULL;
        const char *id = NULL;
        int r;

        r = registration_target(s, cmd, &st, &id, ret_error);
        if (r <= 0)
                return r;
        r = dps_store_delete(st, id);
        if (r == -ENOENT)
                return admin_error(ret_error, "Not found: no registration record '%s'", id);
        return r < 0 ? admin_error(ret_error, "Internal error: %s", strerror(-r)) : 0;
}

/* ---- writes -------------------------------------------------------------------------------- */

typedef struct Edit {
        DpsDataList list;
        DpsDataPutMode mode;
        bool remove;
        const char *id;
        const char *if_match;      /* NULL or "*": any */
        struct json_object *object; /* borrowed from the request */
        struct json_object *result; /* the entry as stored (owned) */
} Edit;

static const char *const list_id_key[_DPS_DATA_LIST_MAX] = {
        [DPS_DATA_LINKED_HUBS] = "name",
        [DPS_DATA_INDIVIDUAL_ENROLLMENTS] = "registrationId",
        [DPS_DATA_ENROLLMENT_GROUPS] = "enrollmentGroupId",
};

/* "2026-11-28T06:00:00.1234567Z", as DPS writes times */
static void format_dps_time(uint64_t usec, char buf[static 32]) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;
        size_t l;

        if (!gmtime_r(&t, &tm) || (l = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm)) == 0 || l > 20) {
                snprintf(buf, 32, "1970-01-01T00:00:00.0000000Z");
                return;
        }
        snprintf(buf + l, 32 - l, ".%07uZ", (unsigned) (usec % 1000000) * 10);
}


static int new_etag(char **ret) {
        uint8_t b[12];
        int r = random_bytes(b, sizeof(b));
        if (r < 0)
                return r;
        return base64_encode(b, sizeof(b), ret);
}

/* An update that leaves out the symmetric keys keeps the existing ones (reads never return
 * them). */
static int keep_symmetric_keys(struct json_object *n, struct json_object *old) {
        struct json_object *att, *sk, *oatt, *osk, *v;

        if (!old || !json_object_object_get_ex(n, "attestation", &att) || !json_object_is_type(att, json_type_object) ||
            !streq_ptr(json_get_string(att, "type"), "symmetricKey") ||
            !json_object_object_get_ex(old, "attestation", &oatt) ||
            !json_object_object_get_ex(oatt, "symmetricKey", &osk) || !json_object_is_type(osk, json_type_object))
                return 0;
        if (!json_object_object_get_ex(att, "symmetricKey", &sk)) {
                sk = json_object_new_object();
                if (json_add(att, "symmetricKey", sk) < 0)
                        return -ENOMEM;
        }
        if (!json_object_is_type(sk, json_type_object) || json_object_object_get_ex(sk, "primaryKey", NULL))
                return 0;
        static const char *const keys[] = { "primaryKey", "secondaryKey" };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                /* a copy: the old tree's key strings are wiped when it is freed */
                if (json_object_object_get_ex(osk, keys[i], &v) && json_object_is_type(v, json_type_string) &&
                    json_add(sk, keys[i], json_object_new_string(json_object_get_string(v))) < 0)
                        return -ENOMEM;
        return 0;
}

static int edit_apply(DpsData *d, void *userdata, char **reterr) {
        Edit *e = userdata;
        _cleanup_json_ struct json_object *n = NULL;
        struct json_object *old = dps_data_find_json(d, e->list, e->id);
        int r;

        if (e->if_match && !streq(e->if_match, "*")) {
                if (!old)
                        return -ENOENT; /* reported as "Not found" by the caller */
                if (!streq_ptr(json_get_string(old, "etag"), e->if_match)) {
                        (void) asprintf(reterr, "the etag is '%s', not '%s'", strna(json_get_string(old, "etag")),
                                        e->if_match);
                        return -ESTALE;
                }
        }
        if (e->remove)
                return dps_data_remove(d, e->list, e->id, reterr);

        if (json_object_deep_copy(e->object, &n, NULL) < 0 || !n)
                return -ENOMEM;
        if (e->list != DPS_DATA_LINKED_HUBS) {
                _cleanup_free_ char *etag = NULL;
                char now[32];
                struct json_object *created = NULL;

                format_dps_time(clock_now_usec(CLOCK_REALTIME), now);
                r = new_etag(&etag);
                if (r < 0)
                        return r;
                if (e->mode == DPS_DATA_PUT_UPDATE) {
                        r = keep_symmetric_keys(n, old);
                        if (r < 0)
                                return r;
                }
                /* read-only fields are the service's */
                if (old)
                        (void) json_object_object_get_ex(old, "createdDateTimeUtc", &created);
                json_object_object_del(n, "etag");
                json_object_object_del(n, "createdDateTimeUtc");
                json_object_object_del(n, "lastUpdatedDateTimeUtc");
                if (json_add_string(n, "etag", etag) < 0 ||
                    json_add(n, "createdDateTimeUtc", created ? json_object_get(created) : json_object_new_string(now)) < 0 ||
                    json_add_string(n, "lastUpdatedDateTimeUtc", now) < 0)
                        return -ENOMEM;
        }
        r = dps_data_put(d, e->list, json_object_get(n), e->mode, reterr);
        if (r < 0)
                return r;
        e->result = TAKE_PTR(n);
        return 0;
}

/* The answer of a failed write: the error classes edgeprov-dpsctl turns into exit codes. */
static int edit_error(int r, const char *msg, char **ret_error) {
        switch (r) {
        case -ENOENT:
                return admin_error(ret_error, "Not found: %s", msg ?: "no such entry");
        case -EEXIST:
                return admin_error(ret_error, "Already exists: %s", strna(msg));
        case -ESTALE:
                return admin_error(ret_error, "Precondition failed: %s", strna(msg));
        case -EBUSY:
                return admin_error(ret_error, "Busy: %s", strna(msg));
        case -EINVAL:
        case -E2BIG:
        case -EOPNOTSUPP:
                return admin_error(ret_error, "Invalid: %s", strna(msg));
        case -ENOMEM:
                return -ENOMEM;
        default:
                return admin_error(ret_error, "Internal error: %s", msg ?: strerror(-r));
        }
}

static int run_edit(DpsService *s, Edit *e, const char *result_key, struct json_object *data, char **ret_error) {
        _cleanup_free_ char *msg = NULL;
        int r;

        r = dps_service_edit_data(s, edit_apply, e, &msg);
        if (r < 0) {
                json_object_put(TAKE_PTR(e->result));
                return edit_error(r, msg, ret_error);
        }
        if (!e->result)
                return 0;
        if (e->list == DPS_DATA_LINKED_HUBS)
                return json_add(data, result_key, TAKE_PTR(e->result));

        /* answered like a get: without the keys */
        const DpsData *d = dps_service_get_data(s);
        const DpsEnrollment *en = e->list == DPS_DATA_ENROLLMENT_GROUPS ? dps_data_find_group(d, e->id)
                                                                        : dps_data_find_individual(d, e->id);
        json_object_put(TAKE_PTR(e->result));
        return en ? json_add(data, result_key, enrollment_json(en)) : 0;
}

/* create/update: {"<key>": {...}, "ifMatch": etag (update only, optional)} */
static int put_entry(DpsService *s, DpsDataList list, DpsDataPutMode mode, const char *key, struct json_object *cmd,
                     struct json_object *data, char **ret_error) {
        struct json_object *o = NULL;

        if (!json_object_object_get_ex(cmd, key, &o) || !json_object_is_type(o, json_type_object))
                return admin_error(ret_error, "Invalid/missing %s: expected an object", key);
        Edit e = {
                .list = list,
                .mode = mode,
                .id = json_get_string(o, list_id_key[list]),
                .if_match = mode == DPS_DATA_PUT_UPDATE ? get_str(cmd, "ifMatch") : NULL,
                .object = o,
        };
        if (isempty(e.id) || strlen(e.id) > 256)
                return admin_error(ret_error, "Invalid/missing %s.%s", key, list_id_key[list]);
        return run_edit(s, &e, key, data, ret_error);
}

static int delete_entry(DpsService *s, DpsDataList list, struct json_object *cmd, struct json_object *data,
                        char **ret_error) {
        Edit e = {
                .list = list,
                .remove = true,
                .id = get_str(cmd, list_id_key[list]),
                .if_match = get_str(cmd, "ifMatch"),
        };
        if (!e.id)
                return admin_error(ret_error, "Invalid/missing %s", list_id_key[list]);
        return run_edit(s, &e, NULL, data, ret_error);
}

#define DEFINE_PUT(fn, list, mode, key)                                                                      \
        static int fn(DpsService *s, struct json_object *cmd, struct json_object *data, char **ret_error) { \
                return put_entry(s, list, mode, key, cmd, data, ret_error);                                  \
        }
#define DEFINE_DELETE(fn, list)                                                                              \
        static int fn(DpsService *s, struct json_object *cmd, struct json_object *data, char **ret_error) { \
                return delete_entry(s, list, cmd, data, ret_error);                                          \
        }

DEFINE_PUT(cmd_link_hub, DPS_DATA_LINKED_HUBS, DPS_DATA_PUT_CREATE, "hub")
DEFINE_PUT(cmd_update_hub, DPS_DATA_LINKED_HUBS, DPS_DATA_PUT_UPDATE, "hub")
DEFINE_DELETE(cmd_unlink_hub, DPS_DATA_LINKED_HUBS)
DEFINE_PUT(cmd_create_enrollment, DPS_DATA_INDIVIDUAL_ENROLLMENTS, DPS_DATA_PUT_CREATE, "enrollment")
DEFINE_PUT(cmd_update_enrollment, DPS_DATA_INDIVIDUAL_ENROLLMENTS, DPS_DATA_PUT_UPDATE, "enrollment")
DEFINE_DELETE(cmd_delete_enrollment, DPS_DATA_INDIVIDUAL_ENROLLMENTS)
DEFINE_PUT(cmd_create_group, DPS_DATA_ENROLLMENT_GROUPS, DPS_DATA_PUT_CREATE, "enrollmentGroup")
DEFINE_PUT(cmd_update_group, DPS_DATA_ENROLLMENT_GROUPS, DPS_DATA_PUT_UPDATE, "enrollmentGroup")
DEFINE_DELETE(cmd_delete_group, DPS_DATA_ENROLLMENT_GROUPS)

const DpsAdminCommand dps_admin_core_commands[] = {
        { "listHubs", cmd_list_hubs },
        { "getHub", cmd_get_hub },
        { "linkHub", cmd_link_hub },
        { "updateHub", cmd_update_hub },
        { "unlinkHub", cmd_unlink_hub },
        { "listEnrollments", cmd_list_enrollments },
        { "getEnrollment", cmd_get_enrollment },
        { "createEnrollment", cmd_create_enrollment },
        { "updateEnrollment", cmd_update_enrollment },
        { "deleteEnrollment", cmd_delete_enrollment },
        { "listEnrollmentGroups", cmd_list_groups },
        { "getEnrollmentGroup", cmd_get_group },
        { "createEnrollmentGroup", cmd_create_group },
        { "updateEnrollmentGroup", cmd_update_group },
        { "deleteEnrollmentGroup", cmd_delete_group },
        { "listRegistrations", cmd_list_registrations },
        { "getRegistration", cmd_get_registration },
        { "deleteRegistration", cmd_delete_registration },
        {}
};

/* Every command table; another file's table is one more line here (and its declaration in
 * admin.h), e.g. the CA certificate commands of src/dps/admin-ca.c. */
static const DpsAdminCommand *const command_tables[] = {
        dps_admin_core_commands,
        dps_admin_ca_commands, /* CA certificates (issue 6): src/dps/admin-ca.c */
        NULL,
};

static const DpsAdminCommand *find_command(const char *name) {
        for (size_t t = 0; command_tables[t]; t++)
                for (const DpsAdminCommand *c = command_tables[t]; c->name; c++)
                        if (streq(c->name, name))
                                return c;
        return NULL;
}

/* Fills resp with "data" or "error"; -ENOMEM only. */
static int run_command(DpsService *s, const char *name, struct json_object *cmd, struct json_object *resp) {
        _cleanup_json_ struct json_object *data = json_object_new_object();
        _cleanup_free_ char *error = NULL;
        int r;

        if (!data)
                return -ENOMEM;
        const DpsAdminCommand *c = find_command(name);
        if (!c)
                return json_add_string(resp, "error", "Unknown command");
        r = c->handler(s, cmd, data, &error);
        if (r < 0 && r != -ENOMEM && !error)
                r = admin_error(&error, "Internal error: %s", strerror(-r));
        if (r < 0)
                return r;
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
