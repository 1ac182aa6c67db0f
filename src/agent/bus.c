/* SPDX-License-Identifier: MIT */
#include <grp.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "agent/bus.h"
#include "agent/sensor-list.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"

#define USEC_PER_SEC ((uint64_t) 1000000)

#define ERR_PERMISSION "io.edgeprov.Error.PermissionDenied"
#define ERR_INVALID_ID "io.edgeprov.Error.InvalidId"
#define ERR_INVALID_OPTION "io.edgeprov.Error.InvalidOption"
#define ERR_NOT_CONFIGURED "io.edgeprov.Error.NotConfigured"
#define ERR_NO_SUCH_DEVICE "io.edgeprov.Error.NoSuchDevice"
#define ERR_BUSY "io.edgeprov.Error.Busy"
#define ERR_LIMIT "io.edgeprov.Error.LimitExceeded"
#define ERR_INVALID_VALUE "io.edgeprov.Error.InvalidValue"

/* What was last announced on the bus for the gateway object. */
typedef struct GatewayProps {
        char *state;
        char *registration_id;
        char *device_id;
        char *assigned_hub;
        char *attestation;
        char *substatus;
        char *last_error;
        uint64_t next_retry;
        uint64_t provisioned_at;
        uint32_t device_count;
} GatewayProps;

struct Bus {
        sd_bus *bus;
        Manager *manager;
        Downstream *downstream;
        gid_t admin_gid;
        bool have_admin_gid;
        char *admin_group;              /* its name, for the refusal message */
        char *log_target;
        char *authorized_sender;        /* unique name of the last caller found authorized */
        GatewayProps props;
};

/* ---- authorization ------------------------------------------------------ */

static int bus_authorize(Bus *b, sd_bus_message *m, sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const gid_t *gids = NULL;
        const char *sender = sd_bus_message_get_sender(m);
        uid_t uid;
        gid_t gid;
        int r, n;

        /* Querying the credentials is a synchronous round trip to the dbus-daemon: a bulk
         * registration (thousands of calls from one connection) paid it per call and it blocked
         * the loop (≈40 ms per RegisterDevice under load).  Unique names are never reused on a
         * bus, and a connection's uid is fixed, so a positive answer is remembered for the
         * last authorized connection (a group dropped later counts from its next connection). */
        if (sender && streq_ptr(sender, b->authorized_sender))
                return 0;
        r = sd_bus_query_sender_creds(m,
                                      SD_BUS_CREDS_EUID | SD_BUS_CREDS_EGID | SD_BUS_CREDS_SUPPLEMENTARY_GIDS |
                                              SD_BUS_CREDS_AUGMENT,
                                      &creds);
        if (r < 0)
                return r;
        r = sd_bus_creds_get_euid(creds, &uid);
        if (r < 0)
                return r;
        bool ok = uid == 0;
        if (!ok && b->have_admin_gid) {
                if (sd_bus_creds_get_egid(creds, &gid) >= 0 && gid == b->admin_gid)
                        ok = true;
                n = sd_bus_creds_get_supplementary_gids(creds, &gids);
                for (int i = 0; !ok && i < n; i++)
                        if (gids[i] == b->admin_gid)
                                ok = true;
        }
        if (ok) {
                char *dup = sender ? strdup(sender) : NULL;
                if (dup) {
                        free(b->authorized_sender);
                        b->authorized_sender = dup;
                }
                return 0;
        }
        return sd_bus_error_setf(error, ERR_PERMISSION,
                                 "%s.%s() needs root or membership of the group '%s'; uid %u is neither.",
                                 strna(sd_bus_message_get_interface(m)), strna(sd_bus_message_get_member(m)),
                                 b->have_admin_gid ? b->admin_group : "(not configured)",
                                 (unsigned) uid);
}

/* ---- Gateway1 ----------------------------------------------------------- */

static int prop_gw_string(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        /* userdata points at the cached char* (offset into GatewayProps) */
        return sd_bus_message_append(reply, "s", strempty(*(char **) userdata));
}

static int method_reprovision(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        const char *reason;
        int r;

        r = sd_bus_message_read(m, "s", &reason);
        if (r < 0)
                return r;
        r = bus_authorize(b, m, error);
        if (r < 0)
                return r;
        if (strlen(reason) > 120)
                return sd_bus_error_setf(error, ERR_INVALID_VALUE, "The reason must be at most 120 characters.");
        for (const char *p = reason; *p; p++)
                if ((unsigned char) *p < ' ')
                        return sd_bus_error_setf(error, ERR_INVALID_VALUE, "The reason must be printable text.");
        r = manager_reprovision(b->manager, reason);
        if (r == -EBUSY)
                return sd_bus_error_setf(error, ERR_BUSY, "A provisioning attempt is already in progress.");
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, NULL);
}

/* a{sv} → a JSON object (strings, booleans, integers, doubles) */
static int read_options(sd_bus_message *m, char **ret_json, sd_bus_error *error) {
        struct json_object *o = json_object_new_object();
        unsigned n = 0;
        int r;

        if (!o)
                return -ENOMEM;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                goto fail;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *contents;
                char type;
                struct json_object *v = NULL;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        goto fail;
                if (++n > SENSOR_OPTIONS_MAX || isempty(key) || strlen(key) > SENSOR_OPTION_KEY_MAX ||
                    streq(key, "gatewayId")) {
                        r = sd_bus_error_setf(error, ERR_INVALID_OPTION,
                                              "Option '%s' is not allowed (at most %d options, names of 1 to %d "
                                              "characters, and gatewayId is set by the gateway).",
                                              key, SENSOR_OPTIONS_MAX, SENSOR_OPTION_KEY_MAX);
                        goto fail;
                }
                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        goto fail;
                r = sd_bus_message_enter_container(m, 'v', contents);
                if (r < 0)
                        goto fail;
                if (streq(contents, "s")) {
                        const char *s;
                        r = sd_bus_message_read(m, "s", &s);
                        if (r >= 0 && strlen(s) > SENSOR_OPTION_VALUE_MAX) {
                                r = sd_bus_error_setf(error, ERR_INVALID_OPTION, "Option '%s' is too long.", key);
                                goto fail;
                        }
                        if (r >= 0)
                                v = json_object_new_string(s);
                } else if (streq(contents, "b")) {
                        int x;
                        r = sd_bus_message_read(m, "b", &x);
                        if (r >= 0)
                                v = json_object_new_boolean(x);
                } else if (streq(contents, "i") || streq(contents, "u") || streq(contents, "x") ||
                           streq(contents, "q") || streq(contents, "n") || streq(contents, "y")) {
                        int64_t x = 0;
                        union { int32_t i; uint32_t u; int64_t x; uint16_t q; int16_t n; uint8_t y; } u;
                        r = sd_bus_message_read_basic(m, contents[0], &u);
                        if (r >= 0)
                                x = contents[0] == 'i' ? u.i : contents[0] == 'u' ? u.u : contents[0] == 'x' ? u.x
                                  : contents[0] == 'q' ? u.q : contents[0] == 'n' ? u.n : u.y;
                        if (r >= 0)
                                v = json_object_new_int64(x);
                } else if (streq(contents, "d")) {
                        double x;
                        r = sd_bus_message_read(m, "d", &x);
                        if (r >= 0)
                                v = json_object_new_double(x);
                } else {
                        r = sd_bus_error_setf(error, ERR_INVALID_OPTION,
                                              "Option '%s' has type '%s'; use s, b, an integer or d.", key, contents);
                        goto fail;
                }
                if (r < 0)
                        goto fail;
                if (!v) {
                        r = -ENOMEM;
                        goto fail;
                }
                json_object_object_add(o, key, v);
                r = sd_bus_message_exit_container(m);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r < 0)
                        goto fail;
        }
        if (r < 0)
                goto fail;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                goto fail;
        if (n == 0)
                *ret_json = NULL;
        else {
                const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
                *ret_json = t ? strdup(t) : NULL;
                if (!*ret_json)
                        r = -ENOMEM;
        }
fail:
        json_object_put(o);
        return r < 0 ? r : 0;
}

static int device_path(const char *id, char **ret) {
        return sd_bus_path_encode(BUS_DEVICES_PATH, id, ret);
}

static int method_register_device(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        _cleanup_free_ char *options = NULL, *path = NULL;
        const char *id, *why = NULL;
        Sensor *s = NULL;
        int r;

        r = sd_bus_message_read(m, "s", &id);
        if (r < 0)
                return r;
        r = read_options(m, &options, error);
        if (r < 0)
                return r;
        r = bus_authorize(b, m, error);
        if (r < 0)
                return r;
        r = downstream_add(b->downstream, id, options, &s, &why);
        if (r == -EINVAL)
                return sd_bus_error_setf(error, ERR_INVALID_ID, "'%s': %s.", id, strna(why));
        if (r == -EOPNOTSUPP)
                return sd_bus_error_setf(error, ERR_NOT_CONFIGURED,
                                         "Downstream registration is not configured (downstream.group_key_file=).");
        if (r == -E2BIG)
                return sd_bus_error_setf(error, ERR_LIMIT, "Too many downstream devices.");
        if (r < 0)
                return r;
        r = device_path(s->id, &path);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "o", path);
}

/* RegisterDevices(a(sa{sv}) devices) → (ao devices, a(usss) errors): RegisterDevice for up to
 * BUS_REGISTER_DEVICES_MAX entries whose intent records are made durable by one commit.
 * devices has one path per entry, in order, "/" for an entry refused; errors lists each refused
 * entry as (index, id as given, error name, message).  Invalid ids are refused per entry, the
 * valid ones are registered; a malformed option or too many entries fail the whole call. */
#define BUS_REGISTER_DEVICES_MAX 1000

static int method_register_devices(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *ids[BUS_REGISTER_DEVICES_MAX], *errs[BUS_REGISTER_DEVICES_MAX];
        char *options[BUS_REGISTER_DEVICES_MAX];
        Sensor *sensors[BUS_REGISTER_DEVICES_MAX];
        int codes[BUS_REGISTER_DEVICES_MAX];
        size_t n = 0;
        int r;

        r = bus_authorize(b, m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'a', "(sa{sv})");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'r', "sa{sv}")) > 0) {
                if (n >= BUS_REGISTER_DEVICES_MAX) {
                        r = sd_bus_error_setf(error, ERR_LIMIT, "At most %d devices per RegisterDevices call.",
                                              BUS_REGISTER_DEVICES_MAX);
                        goto out;
                }
                options[n] = NULL;
                r = sd_bus_message_read(m, "s", &ids[n]);
                if (r >= 0)
                        r = read_options(m, &options[n], error);
                if (r < 0)
                        goto out;
                n++;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        goto out;
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                goto out;
        r = downstream_add_many(b->downstream, n, ids, (const char *const *) options, sensors, errs, codes);
        if (r == -EOPNOTSUPP) {
                r = sd_bus_error_setf(error, ERR_NOT_CONFIGURED,
                                      "Downstream registration is not configured (downstream.group_key_file=).");
                goto out;
        }
        if (r < 0)
                goto out;
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "o");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                _cleanup_free_ char *path = NULL;
                if (sensors[i])
                        r = device_path(sensors[i]->id, &path);
                if (r >= 0)
                        r = sd_bus_message_append(reply, "o", path ?: "/");
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(usss)");
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (!sensors[i])
                        r = sd_bus_message_append(reply, "(usss)", (uint32_t) i, ids[i],
                                                  codes[i] == -E2BIG ? ERR_LIMIT : ERR_INVALID_ID, strna(errs[i]));
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
out:
        for (size_t i = 0; i < n; i++)
                free(options[i]);
        return r;
}

static int method_remove_device(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        _cleanup_free_ char *id = NULL;
        const char *input, *protocol, *why = NULL;
        int r;

        r = sd_bus_message_read(m, "s", &input);
        if (r < 0)
                return r;
        r = bus_authorize(b, m, error);
        if (r < 0)
                return r;
        r = sensor_id_normalize(input, &id, &protocol, &why);
        if (r == -EINVAL)
                return sd_bus_error_setf(error, ERR_INVALID_ID, "'%s': %s.", input, strna(why));
        if (r < 0)
                return r;
        r = downstream_remove(b->downstream, id);
        if (r == -ENOENT)
                return sd_bus_error_setf(error, ERR_NO_SUCH_DEVICE, "No downstream device '%s'.", id);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, NULL);
}

#define GW_S(name, field) \
        SD_BUS_PROPERTY(name, "s", prop_gw_string, offsetof(Bus, props.field), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)

static const sd_bus_vtable gateway_vtable[] = {
        SD_BUS_VTABLE_START(0),
        GW_S("State", state),
        GW_S("RegistrationId", registration_id),
        GW_S("DeviceId", device_id),
        GW_S("AssignedHub", assigned_hub),
        GW_S("Attestation", attestation),
        GW_S("Substatus", substatus),
        GW_S("LastError", last_error),
        SD_BUS_PROPERTY("NextRetry", "t", NULL, offsetof(Bus, props.next_retry), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ProvisionedAt", "t", NULL, offsetof(Bus, props.provisioned_at),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("DeviceCount", "u", NULL, offsetof(Bus, props.device_count), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("Reprovision", SD_BUS_ARGS("s", reason), SD_BUS_NO_RESULT, method_reprovision,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RegisterDevice", SD_BUS_ARGS("s", registration_id, "a{sv}", options),
                                SD_BUS_RESULT("o", device), method_register_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RegisterDevices", SD_BUS_ARGS("a(sa{sv})", devices),
                                SD_BUS_RESULT("ao", devices, "a(usss)", errors), method_register_devices,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RemoveDevice", SD_BUS_ARGS("s", registration_id), SD_BUS_NO_RESULT,
                                method_remove_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

/* One setter per property: compare, assign, and remember the name when it changed. */
static void set_str(char **field, const char *v, const char *name, const char **changed, size_t *n) {
        if (streq(strempty(*field), strempty(v)))
                return;
        char *dup = strdup(strempty(v));
        if (!dup)
                return;
        free(*field);
        *field = dup;
        changed[(*n)++] = name;
}

static void set_u64(uint64_t *field, uint64_t v, const char *name, const char **changed, size_t *n) {
        if (*field == v)
                return;
        *field = v;
        changed[(*n)++] = name;
}

static void set_u32(uint32_t *field, uint32_t v, const char *name, const char **changed, size_t *n) {
        if (*field == v)
                return;
        *field = v;
        changed[(*n)++] = name;
}

static void gateway_refresh(Bus *b, bool emit) {
        const GatewayState *a = manager_get_assignment(b->manager);
        const Config *c = manager_get_config(b->manager);
        const char *changed[16];
        size_t n = 0;

        set_str(&b->props.state, manager_state_to_string(manager_get_state(b->manager)), "State", changed, &n);
        set_str(&b->props.registration_id, c->registration_id, "RegistrationId", changed, &n);
        set_str(&b->props.device_id, a ? a->device_id : NULL, "DeviceId", changed, &n);
        set_str(&b->props.assigned_hub, a ? a->assigned_hub : NULL, "AssignedHub", changed, &n);
        set_str(&b->props.attestation, attestation_method_to_string(c->attestation), "Attestation", changed, &n);
        set_str(&b->props.substatus, a ? a->substatus : NULL, "Substatus", changed, &n);
        set_str(&b->props.last_error, manager_get_last_error(b->manager), "LastError", changed, &n);
        set_u64(&b->props.next_retry, manager_get_next_retry_usec(b->manager), "NextRetry", changed, &n);
        set_u64(&b->props.provisioned_at, a ? a->provisioned_at * USEC_PER_SEC : 0, "ProvisionedAt", changed, &n);
        set_u32(&b->props.device_count, (uint32_t) downstream_count(b->downstream), "DeviceCount", changed, &n);
        changed[n] = NULL;
        if (emit && n > 0 && b->bus) {
                int r = sd_bus_emit_properties_changed_strv(b->bus, BUS_PATH, BUS_IFACE_GATEWAY, (char **) changed);
                if (r < 0)
                        log_debug_errno(r, "Failed to emit PropertiesChanged: %m");
        }
}

void bus_gateway_changed(Bus *b) {
        if (b)
                gateway_refresh(b, true);
}

/* ---- Device1 ------------------------------------------------------------ */

static int prop_dev_string(sd_bus *bus, const char *path, const char *interface, const char *property,
                           sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Sensor *s = userdata;
        const char *v = streq(property, "RegistrationId") ? s->id
                        : streq(property, "DeviceId")     ? s->device_id
                        : streq(property, "AssignedHub")  ? s->assigned_hub
                        : streq(property, "State")        ? sensor_state_to_string(s->state)
                                                          : s->last_error;
        return sd_bus_message_append(reply, "s", strempty(v));
}

static int prop_dev_provisioned_at(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Sensor *s = userdata;
        return sd_bus_message_append(reply, "t", s->provisioned_at * USEC_PER_SEC);
}

static const sd_bus_vtable device_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("RegistrationId", "s", prop_dev_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DeviceId", "s", prop_dev_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("AssignedHub", "s", prop_dev_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("State", "s", prop_dev_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastError", "s", prop_dev_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Attempts", "u", NULL, offsetof(Sensor, attempts), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ProvisionedAt", "t", prop_dev_provisioned_at, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END,
};

static int device_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                       sd_bus_error *error) {
        Bus *b = userdata;
        _cleanup_free_ char *id = NULL;
        int r = sd_bus_path_decode(path, BUS_DEVICES_PATH, &id);
        if (r <= 0)
                return r;
        Sensor *s = downstream_find(b->downstream, id);
        if (!s)
                return 0;
        *found = s;
        return 1;
}

static int device_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Bus *b = userdata;
        size_t n = downstream_count(b->downstream);
        char **l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int r = device_path(downstream_get(b->downstream, i)->id, &l[i]);
                if (r < 0) {
                        for (size_t j = 0; j < i; j++)
                                free(l[j]);
                        free(l);
                        return r;
                }
        }
        *nodes = l;
        return 0;
}

static void on_sensor_event(Downstream *d, Sensor *s, SensorEvent ev, unsigned mask, void *userdata) {
        Bus *b = userdata;
        _cleanup_free_ char *path = NULL;
        const char *changed[8];
        size_t n = 0;
        int r;

        if (!b->bus || device_path(s->id, &path) < 0)
                return;
        switch (ev) {
        case SENSOR_EVENT_ADDED:
                r = sd_bus_emit_interfaces_added(b->bus, path, BUS_IFACE_DEVICE, NULL);
                break;
        case SENSOR_EVENT_REMOVED:
                r = sd_bus_emit_interfaces_removed(b->bus, path, BUS_IFACE_DEVICE, NULL);
                break;
        default:
                if (mask & SENSOR_PROP_DEVICE_ID)
                        changed[n++] = "DeviceId";
                if (mask & SENSOR_PROP_ASSIGNED_HUB)
                        changed[n++] = "AssignedHub";
                if (mask & SENSOR_PROP_STATE)
                        changed[n++] = "State";
                if (mask & SENSOR_PROP_LAST_ERROR)
                        changed[n++] = "LastError";
                if (mask & SENSOR_PROP_ATTEMPTS)
                        changed[n++] = "Attempts";
                if (mask & SENSOR_PROP_PROVISIONED_AT)
                        changed[n++] = "ProvisionedAt";
                changed[n] = NULL;
                r = n ? sd_bus_emit_properties_changed_strv(b->bus, path, BUS_IFACE_DEVICE, (char **) changed) : 0;
                break;
        }
        if (r < 0)
                log_debug_errno(r, "Failed to emit a signal for '%s': %m", s->id);
        if (ev != SENSOR_EVENT_CHANGED)
                gateway_refresh(b, true);       /* DeviceCount */
}

/* ---- org.freedesktop.LogControl1 ---------------------------------------- */

static int prop_log_level(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", strna(log_level_to_string(log_get_max_level())));
}

static int prop_set_log_level(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *value, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        const char *v;
        int r = sd_bus_message_read(value, "s", &v);
        if (r < 0)
                return r;
        r = bus_authorize(b, sd_bus_get_current_message(bus), error);
        if (r < 0)
                return r;
        int level = log_level_from_string(v);
        if (level < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Invalid log level '%s'.", v);
        bool changed = level != log_get_max_level();
        log_set_max_level(level);
        log_info("Log level set to %s over D-Bus.", v);
        if (changed)
                (void) sd_bus_emit_properties_changed(bus, path, interface, property, NULL);
        return 0;
}

static int prop_log_target(sd_bus *bus, const char *path, const char *interface, const char *property,
                           sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        return sd_bus_message_append(reply, "s", b->log_target);
}

static int prop_set_log_target(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *value, void *userdata, sd_bus_error *error) {
        Bus *b = userdata;
        const char *v;
        LogTarget t;
        int r = sd_bus_message_read(value, "s", &v);
        if (r < 0)
                return r;
        r = bus_authorize(b, sd_bus_get_current_message(bus), error);
        if (r < 0)
                return r;
        if (streq(v, "console"))
                t = LOG_TARGET_CONSOLE;
        else if (streq(v, "journal"))
                t = LOG_TARGET_JOURNAL;
        else if (streq(v, "auto"))
                t = LOG_TARGET_AUTO;
        else
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Log target '%s' is not supported (console, journal, auto).", v);
        if (streq(b->log_target, v))
                return 0;
        char *dup = strdup(v);
        if (!dup)
                return -ENOMEM;
        free(b->log_target);
        b->log_target = dup;
        log_set_target(t);
        (void) sd_bus_emit_properties_changed(bus, path, interface, property, NULL);
        return 0;
}

static int prop_syslog_identifier(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", program_invocation_short_name);
}

static const sd_bus_vtable log_control_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_WRITABLE_PROPERTY("LogLevel", "s", prop_log_level, prop_set_log_level, 0,
                                 SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_WRITABLE_PROPERTY("LogTarget", "s", prop_log_target, prop_set_log_target, 0,
                                 SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_PROPERTY("SyslogIdentifier", "s", prop_syslog_identifier, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_VTABLE_END,
};

/* ---- setup -------------------------------------------------------------- */

static int bus_connect(const char *address, sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        if (!address)
                return sd_bus_open_system_with_description(ret, "edgeprovd");
        if (streq(address, "session"))
                return sd_bus_open_user_with_description(ret, "edgeprovd");
        r = sd_bus_new(&bus);
        if (r < 0)
                return r;
        (void) sd_bus_set_description(bus, "edgeprovd");
        r = sd_bus_set_address(bus, address);
        if (r < 0)
                return r;
        r = sd_bus_set_bus_client(bus, 1);     /* without it no Hello(), and RequestName fails */
        if (r < 0)
                return r;
        r = sd_bus_start(bus);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

/* The admin group's gid from /etc/group, where the package's system group lives, read directly:
 * getgrnam() would load the NSS modules (libnss_systemd and its libm, ≈0.25 MiB resident) into
 * the daemon for the rest of its life.  Groups only other sources know (LDAP, userdb) are
 * still found through NSS. */
static int admin_gid_lookup(const char *name, gid_t *ret) {
        FILE *f = fopen("/etc/group", "re");
        struct group *g;

        if (f) {
                while ((g = fgetgrent(f)))
                        if (streq(g->gr_name, name)) {
                                *ret = g->gr_gid;
                                fclose(f);
                                return 0;
                        }
                fclose(f);
        }
        g = getgrnam(name);
        if (!g)
                return -ESRCH;
        *ret = g->gr_gid;
        return 0;
}

int bus_new(sd_event *e, Manager *m, Downstream *d, const char *address, const char *admin_group, Bus **ret) {
        Bus *b = calloc(1, sizeof(*b));
        int r;

        if (!b)
                return -ENOMEM;
        b->manager = m;
        b->downstream = d;
        b->log_target = strdup(getenv("LOG_TARGET") ?: "auto");
        if (!b->log_target) {
                bus_free(b);
                return -ENOMEM;
        }
        gateway_refresh(b, false);

        r = bus_connect(address, &b->bus);
        if (r < 0) {
                bus_free(b);
                /* the system bus is optional (no D-Bus in a container); an explicit address is not */
                return log_full_errno(address ? LOG_ERR : LOG_NOTICE, r, "Failed to connect to the %s bus: %m",
                                      address ?: "system");
        }
        if (admin_group) {
                if (admin_gid_lookup(admin_group, &b->admin_gid) >= 0) {
                        b->admin_group = strdup(admin_group);
                        b->have_admin_gid = !!b->admin_group;
                } else
                        log_notice("Group '%s' does not exist; only root may change things over D-Bus.", admin_group);
        }
        r = sd_bus_add_object_vtable(b->bus, NULL, BUS_PATH, BUS_IFACE_GATEWAY, gateway_vtable, b);
        if (r >= 0)
                r = sd_bus_add_object_manager(b->bus, NULL, BUS_PATH);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(b->bus, NULL, BUS_DEVICES_PATH, BUS_IFACE_DEVICE, device_vtable,
                                               device_find, b);
        if (r >= 0)
                r = sd_bus_add_node_enumerator(b->bus, NULL, BUS_DEVICES_PATH, device_enumerate, b);
        if (r >= 0)
                r = sd_bus_add_object_vtable(b->bus, NULL, "/org/freedesktop/LogControl1",
                                             "org.freedesktop.LogControl1", log_control_vtable, b);
        if (r < 0) {
                bus_free(b);
                return log_error_errno(r, "Failed to register the D-Bus objects: %m");
        }
        r = sd_bus_attach_event(b->bus, e, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                bus_free(b);
                return log_error_errno(r, "Failed to attach the bus to the event loop: %m");
        }
        r = sd_bus_request_name(b->bus, BUS_NAME, 0);
        if (r < 0) {
                bus_free(b);
                return log_error_errno(r, "Failed to acquire the bus name %s: %m", BUS_NAME);
        }
        downstream_set_callback(d, on_sensor_event, b);
        *ret = b;
        return 0;
}

static void props_done(GatewayProps *p) {
        free(p->state);
        free(p->registration_id);
        free(p->device_id);
        free(p->assigned_hub);
        free(p->attestation);
        free(p->substatus);
        free(p->last_error);
}

Bus *bus_free(Bus *b) {
        if (!b)
                return NULL;
        if (b->downstream)
                downstream_set_callback(b->downstream, NULL, NULL);
        if (b->bus) {
                (void) sd_bus_flush(b->bus);
                b->bus = sd_bus_flush_close_unref(b->bus);
        }
        props_done(&b->props);
        free(b->log_target);
        free(b->authorized_sender);
        free(b->admin_group);
        free(b);
        return NULL;
}
