/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "dps/datafile.h"
#include "dps/webhook.h"
#include <netdb.h>
#include <sys/socket.h>
#include "edgeprov/codec.h"
#include "edgeprov/dps.h"
#include "edgeprov/fileio.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"

static const char *const attestation_type_table[_DPS_ATTESTATION_MAX] = {
        [DPS_ATTESTATION_NONE] = "none",
        [DPS_ATTESTATION_SYMMETRIC_KEY] = "symmetricKey",
        [DPS_ATTESTATION_TPM] = "tpm",
        [DPS_ATTESTATION_X509] = "x509",
};

static const char *const allocation_policy_table[_DPS_ALLOCATION_MAX] = {
        [DPS_ALLOCATION_HASHED] = "hashed",
        [DPS_ALLOCATION_GEO_LATENCY] = "geoLatency",
        [DPS_ALLOCATION_STATIC] = "static",
        [DPS_ALLOCATION_CUSTOM] = "custom",
};

const char *dps_attestation_type_to_string(DpsAttestationType t) {
        if (t < 0 || t >= _DPS_ATTESTATION_MAX)
                return NULL;
        return attestation_type_table[t];
}

DpsAttestationType dps_attestation_type_from_string(const char *s) {
        if (!s)
                return _DPS_ATTESTATION_INVALID;
        for (size_t i = 0; i < ELEMENTSOF(attestation_type_table); i++)
                if (streq(s, attestation_type_table[i]))
                        return (DpsAttestationType) i;
        return _DPS_ATTESTATION_INVALID;
}

const char *dps_allocation_policy_to_string(DpsAllocationPolicy p) {
        if (p < 0 || p >= _DPS_ALLOCATION_MAX)
                return NULL;
        return allocation_policy_table[p];
}

DpsAllocationPolicy dps_allocation_policy_from_string(const char *s) {
        if (!s)
                return _DPS_ALLOCATION_INVALID;
        /* ARM spells the instance policy "Hashed", the service API "hashed". */
        for (size_t i = 0; i < ELEMENTSOF(allocation_policy_table); i++)
                if (strcaseeq(s, allocation_policy_table[i]))
                        return (DpsAllocationPolicy) i;
        return _DPS_ALLOCATION_INVALID;
}

bool dps_hub_name_is_valid(const char *name) {
        if (!name)
                return false;
        size_t l = strnlen(name, DPS_HUB_NAME_MAX + 1);
        if (l == 0 || l > DPS_HUB_NAME_MAX)
                return false;
        /* A DNS host name: labels of [A-Za-z0-9-], not starting or ending with '-'. */
        size_t label = 0;
        for (size_t i = 0; i < l; i++) {
                char c = name[i];
                if (c == '.') {
                        if (label == 0 || name[i - 1] == '-')
                                return false;
                        label = 0;
                        continue;
                }
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
                        return false;
                if (c == '-' && label == 0)
                        return false;
                if (++label > 63)
                        return false;
        }
        return label > 0 && name[l - 1] != '-';
}

bool dps_device_id_is_valid(const char *id) {
        /* IoT Hub device identities: up to 128 characters of [A-Za-z0-9] and -.%_*?!(),:=@$' */
        if (!id)
                return false;
        size_t l = strnlen(id, DPS_DEVICE_ID_MAX + 1);
        if (l == 0 || l > DPS_DEVICE_ID_MAX)
                return false;
        for (size_t i = 0; i < l; i++) {
                char c = id[i];
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
                        continue;
                if (!strchr("-.%_*?!(),:=@$'", c))
                        return false;
        }
        return true;
}

int dps_symmetric_key_check(const char *s) {
        _cleanup_free_ uint8_t *k = NULL;
        size_t l = 0;
        int r;

        if (!s)
                return -EINVAL;
        size_t sl = strnlen(s, 1024);
        if (sl >= 1024)
                return -E2BIG;
        r = base64_decode(s, sl, &k, &l);
        if (r < 0)
                return r;
        explicit_bzero(k, l);
        if (l < DPS_SYMMETRIC_KEY_MIN)
                return -EINVAL;
        if (l > DPS_SYMMETRIC_KEY_MAX)
                return -E2BIG;
        return 0;
}

/* ---- error messages with a field path ------------------------------------------------ */

typedef struct Path {
        const struct Path *parent;
        const char *key;   /* ".key" */
        ssize_t index;     /* "[index]", when key is NULL */
        const char *label; /* " ('label')" after the index */
} Path;

#define PATH_KEY(p, k) ((Path) { .parent = (p), .key = (k), .index = -1 })
#define PATH_INDEX(p, i) ((Path) { .parent = (p), .index = (ssize_t) (i) })

static void path_render(const Path *p, FILE *f) {
        if (!p)
                return;
        path_render(p->parent, f);
        if (p->key)
                fprintf(f, "%s%s", p->parent ? "." : "", p->key);
        else if (p->index >= 0) {
                fprintf(f, "[%zd]", p->index);
                if (p->label)
                        fprintf(f, " ('%s')", p->label);
        }
}

_printf_(4, 5) static int fail(char **reterr, int r, const Path *p, const char *fmt, ...) {
        char *buf = NULL;
        size_t sz = 0;
        va_list ap;

        if (!reterr)
                return r;

        FILE *f = open_memstream(&buf, &sz);
        if (!f)
                return r;
        if (p) {
                path_render(p, f);
                fputs(": ", f);
        }
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
        if (fclose(f) != 0) {
                free(buf);
                return r;
        }
        free(*reterr);
        *reterr = buf;
        return r;
}

/* ---- typed getters --------------------------------------------------------------------- */

static int check_keys(struct json_object *o, const char *const *allowed, const Path *p, char **reterr) {
        json_object_object_foreach(o, key, val) {
                (void) val;
                bool ok = false;
                for (const char *const *a = allowed; *a; a++)
                        if (streq(key, *a)) {
                                ok = true;
                                break;
                        }
                if (!ok) {
                        Path kp = PATH_KEY(p, key);
                        return fail(reterr, -EINVAL, &kp, "unknown field");
                }
        }
        return 0;
}

static struct json_object *member(struct json_object *o, const char *key) {
        struct json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v))
                return NULL;
        return v; /* NULL for JSON null, too */
}

/* A string member.  Absent and null both give NULL, which is an error when required. */
static int get_string(struct json_object *o, const char *key, bool required, const Path *p, char **reterr,
                      const char **ret) {
        Path kp = PATH_KEY(p, key);
        struct json_object *v = member(o, key);

        if (!v) {
                if (required)
                        return fail(reterr, -EINVAL, &kp, "missing");
                *ret = NULL;
                return 0;
        }
        if (!json_object_is_type(v, json_type_string))
                return fail(reterr, -EINVAL, &kp, "expected a string");
        const char *s = json_object_get_string(v);
        if (!s || (size_t) json_object_get_string_len(v) != strlen(s))
                return fail(reterr, -EINVAL, &kp, "contains a NUL character");
        *ret = s;
        return 0;
}

static int get_bool(struct json_object *o, const char *key, bool def, const Path *p, char **reterr, bool *ret) {
        Path kp = PATH_KEY(p, key);
        struct json_object *v = member(o, key);

        if (!v) {
                *ret = def;
                return 0;
        }
        if (!json_object_is_type(v, json_type_boolean))
                return fail(reterr, -EINVAL, &kp, "expected true or false");
        *ret = json_object_get_boolean(v);
        return 0;
}

/* Object member (or null/absent → NULL when !required). */
static int get_object(struct json_object *o, const char *key, bool required, const Path *p, char **reterr,
                      struct json_object **ret) {
        Path kp = PATH_KEY(p, key);
        struct json_object *v = member(o, key);

        if (!v) {
                if (required)
                        return fail(reterr, -EINVAL, &kp, "missing");
                *ret = NULL;
                return 0;
        }
        if (!json_object_is_type(v, json_type_object))
                return fail(reterr, -EINVAL, &kp, "expected an object");
        *ret = v;
        return 0;
}

static int get_array(struct json_object *o, const char *key, size_t max, const Path *p, char **reterr,
                     struct json_object **ret) {
        Path kp = PATH_KEY(p, key);
        struct json_object *v = member(o, key);

        if (!v) {
                *ret = NULL;
                return 0;
        }
        if (!json_object_is_type(v, json_type_array))
                return fail(reterr, -EINVAL, &kp, "expected an array");
        if (json_object_array_length(v) > max)
                return fail(reterr, -E2BIG, &kp, "more than %zu entries", max);
        *ret = v;
        return 0;
}

/* ---- the data ------------------------------------------------------------------------- */

static void enrollment_done(DpsEnrollment *e) {
        free(e->iot_hubs);
        *e = (DpsEnrollment) {};
}

static void wipe_json_string(const char *s) {
        /* Keys live inside json-c string objects; wipe them before the tree goes away. */
        if (s)
                explicit_bzero((char *) s, strlen(s));
}

static void data_clear_view(DpsData *d) {
        for (size_t i = 0; i < d->n_individual; i++)
                enrollment_done(d->individual + i);
        for (size_t i = 0; i < d->n_groups; i++)
                enrollment_done(d->groups + i);
        free(d->individual);
        free(d->groups);
        free(d->hubs);
        free(d->individual_index);
        d->individual = d->groups = NULL;
        d->hubs = NULL;
        d->individual_index = NULL;
        d->n_individual = d->n_groups = d->n_hubs = 0;
        d->id_scope = NULL;
        d->allocation_policy = DPS_ALLOCATION_HASHED;
}

static void data_wipe_keys(DpsData *d) {
        for (size_t i = 0; i < d->n_individual; i++) {
                wipe_json_string(d->individual[i].primary_key);
                wipe_json_string(d->individual[i].secondary_key);
        }
        for (size_t i = 0; i < d->n_groups; i++) {
                wipe_json_string(d->groups[i].primary_key);
                wipe_json_string(d->groups[i].secondary_key);
        }
}

DpsData *dps_data_free(DpsData *d) {
        if (!d)
                return NULL;
        data_wipe_keys(d);
        data_clear_view(d);
        json_object_put(d->root);
        free(d);
        return NULL;
}

static int parse_hub(struct json_object *o, const Path *p, char **reterr, DpsLinkedHub *ret) {
        static const char *const allowed[] = {
                "name", "allocationWeight", "applyAllocationPolicy", "location", "connectionString", "probeAddress",
                NULL,
        };
        const char *s;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return fail(reterr, -EINVAL, p, "expected an object");
        r = check_keys(o, allowed, p, reterr);
        if (r < 0)
                return r;

        r = get_string(o, "name", true, p, reterr, &ret->name);
        if (r < 0)
                return r;
        Path np = PATH_KEY(p, "name");
        if (!dps_hub_name_is_valid(ret->name))
                return fail(reterr, -EINVAL, &np, "'%s' is not a valid host name", ret->name);

        Path wp = PATH_KEY(p, "allocationWeight");
        struct json_object *w = member(o, "allocationWeight");
        if (!w)
                ret->allocation_weight = 1;
        else {
                if (!json_object_is_type(w, json_type_int))
                        return fail(reterr, -EINVAL, &wp, "expected an integer");
                int64_t v = json_object_get_int64(w);
                if (v < 1 || v > DPS_ALLOCATION_WEIGHT_MAX)
                        return fail(reterr, -EINVAL, &wp, "must be 1..%d", DPS_ALLOCATION_WEIGHT_MAX);
                ret->allocation_weight = (unsigned) v;
        }

        r = get_bool(o, "applyAllocationPolicy", true, p, reterr, &ret->apply_allocation_policy);
        if (r < 0)
                return r;
        r = get_string(o, "location", false, p, reterr, &s);
        if (r < 0)
                return r;
        r = get_string(o, "connectionString", false, p, reterr, &s);
        if (r < 0)
                return r;
        /* our extension: where the lowest-latency policy measures the TCP connect time */
        r = get_string(o, "probeAddress", false, p, reterr, &ret->probe_address);
        if (r < 0)
                return r;
        if (ret->probe_address && dps_probe_address_parse(ret->probe_address, NULL, NULL) < 0) {
                Path ap = PATH_KEY(p, "probeAddress");
                return fail(reterr, -EINVAL, &ap, "'%.64s' is not a numeric IP:PORT (e.g. 192.0.2.7:443 or [2001:db8::7]:443)",
                            ret->probe_address);
        }
        return 0;
}

int dps_probe_address_parse(const char *s, struct sockaddr_storage *ret_addr, unsigned *ret_len) {
        struct addrinfo hints = {
                .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, /* never a DNS lookup: this must not block */
                .ai_socktype = SOCK_STREAM,
        };
        struct addrinfo *ai = NULL;
        char host[64];

        if (!s)
                return -EINVAL;
        size_t l = strnlen(s, 80);
        if (l == 0 || l >= 80)
                return -EINVAL;
        const char *colon = strrchr(s, ':');
        if (!colon || colon == s || !colon[1])
                return -EINVAL;
        size_t hl = (size_t) (colon - s);
        const char *h = s;
        if (s[0] == '[') {
                if (hl < 3 || s[hl - 1] != ']')
                        return -EINVAL;
                h = s + 1;
                hl -= 2;
        } else if (memchr(s, ':', hl))
                return -EINVAL; /* an IPv6 address needs brackets */
        if (hl == 0 || hl >= sizeof(host))
                return -EINVAL;
        memcpy(host, h, hl);
        host[hl] = 0;
        for (const char *c = colon + 1; *c; c++)
                if (*c < '0' || *c > '9')
                        return -EINVAL;
        if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || !ai)
                return -EINVAL;
        int port = atoi(colon + 1);
        int r = port > 0 && port <= 65535 && ai->ai_addrlen <= sizeof(struct sockaddr_storage) ? 0 : -EINVAL;
        if (r >= 0 && ret_addr) {
                memset(ret_addr, 0, sizeof(*ret_addr));
                memcpy(ret_addr, ai->ai_addr, ai->ai_addrlen);
        }
        if (r >= 0 && ret_len)
                *ret_len = ai->ai_addrlen;
        freeaddrinfo(ai);
        return r;
}

static int parse_attestation(struct json_object *o, const Path *p, char **reterr, DpsEnrollment *e) {
        static const char *const allowed[] = { "type", "symmetricKey", "tpm", "x509", NULL };
        struct json_object *sub;
        const char *type;
        int r;

        r = check_keys(o, allowed, p, reterr);
        if (r < 0)
                return r;
        r = get_string(o, "type", true, p, reterr, &type);
        if (r < 0)
                return r;
        e->attestation = dps_attestation_type_from_string(type);
        if (e->attestation < 0) {
                Path tp = PATH_KEY(p, "type");
                return fail(reterr, -EINVAL, &tp, "unknown attestation type '%s' (none, symmetricKey, tpm, x509)",
                            type);
        }

        /* The tpm and x509 sub-objects are stored as they are; only their shape is checked. */
        r = get_object(o, "tpm", false, p, reterr, &sub);
        if (r < 0)
                return r;
        r = get_object(o, "x509", false, p, reterr, &sub);
        if (r < 0)
                return r;
        r = get_object(o, "symmetricKey", e->attestation == DPS_ATTESTATION_SYMMETRIC_KEY, p, reterr, &sub);
        if (r < 0)
                return r;

        if (e->attestation != DPS_ATTESTATION_SYMMETRIC_KEY || !sub)
                return 0;

        static const char *const allowed_sk[] = { "primaryKey", "secondaryKey", NULL };
        Path sp = PATH_KEY(p, "symmetricKey");
        r = check_keys(sub, allowed_sk, &sp, reterr);
        if (r < 0)
                return r;
        r = get_string(sub, "primaryKey", true, &sp, reterr, &e->primary_key);
        if (r < 0)
                return r;
        r = get_string(sub, "secondaryKey", false, &sp, reterr, &e->secondary_key);
        if (r < 0)
                return r;

        const char *names[] = { "primaryKey", "secondaryKey" };
        const char *keys[] = { e->primary_key, e->secondary_key };
        for (size_t i = 0; i < 2; i++) {
                if (!keys[i])
                        continue;
                Path kp = PATH_KEY(&sp, names[i]);
                _cleanup_free_ uint8_t *k = NULL;
                size_t l = 0;
                r = base64_decode(keys[i], strlen(keys[i]), &k, &l);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return fail(reterr, -EINVAL, &kp, "not valid base64");
                explicit_bzero(k, l);
                if (l < DPS_SYMMETRIC_KEY_MIN || l > DPS_SYMMETRIC_KEY_MAX)
                        return fail(reterr, -EINVAL, &kp, "a key must be %d to %d bytes, not %zu",
                                    DPS_SYMMETRIC_KEY_MIN, DPS_SYMMETRIC_KEY_MAX, l);
        }
        return 0;
}

static int hub_is_linked(const DpsData *d, const char *name) {
        return dps_data_find_hub(d, name) != NULL;
}

/* Fields shared by individual enrollments and groups. */
static int parse_enrollment_common(const DpsData *d, struct json_object *o, const Path *p, char **reterr,
                                   DpsEnrollment *e) {
        struct json_object *sub, *arr;
        const char *s;
        int r;

        r = get_string(o, "provisioningStatus", false, p, reterr, &s);
        if (r < 0)
                return r;
        if (!s || streq(s, "enabled"))
                e->enabled = true;
        else if (streq(s, "disabled"))
                e->enabled = false;
        else {
                Path sp = PATH_KEY(p, "provisioningStatus");
                return fail(reterr, -EINVAL, &sp, "must be 'enabled' or 'disabled', not '%s'", s);
        }

        r = get_object(o, "attestation", true, p, reterr, &sub);
        if (r < 0)
                return r;
        Path ap = PATH_KEY(p, "attestation");
        r = parse_attestation(sub, &ap, reterr, e);
        if (r < 0)
                return r;

        r = get_object(o, "capabilities", false, p, reterr, &sub);
        if (r < 0)
                return r;
        if (sub) {
                static const char *const allowed[] = { "iotEdge", NULL };
                Path cp = PATH_KEY(p, "capabilities");
                r = check_keys(sub, allowed, &cp, reterr);
                if (r < 0)
                        return r;
                r = get_bool(sub, "iotEdge", false, &cp, reterr, &e->iot_edge);
                if (r < 0)
                        return r;
        }

        r = get_string(o, "iotHubHostName", false, p, reterr, &e->iot_hub_host_name);
        if (r < 0)
                return r;
        if (e->iot_hub_host_name && !hub_is_linked(d, e->iot_hub_host_name)) {
                Path hp = PATH_KEY(p, "iotHubHostName");
                return fail(reterr, -EINVAL, &hp, "'%s' is not a linked hub", e->iot_hub_host_name);
        }

        r = get_array(o, "iotHubs", DPS_LINKED_HUBS_MAX, p, reterr, &arr);
        if (r < 0)
                return r;
        if (arr) {
                Path hp = PATH_KEY(p, "iotHubs");
                size_t n = json_object_array_length(arr);
                e->iot_hubs = calloc(MAX(n, 1u), sizeof(char *));
                if (!e->iot_hubs)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        Path ip = PATH_INDEX(&hp, i);
                        struct json_object *h = json_object_array_get_idx(arr, i);
                        if (!h || !json_object_is_type(h, json_type_string))
                                return fail(reterr, -EINVAL, &ip, "expected a string");
                        const char *name = json_object_get_string(h);
                        if (!hub_is_linked(d, name))
                                return fail(reterr, -EINVAL, &ip, "'%s' is not a linked hub", name);
                        for (size_t j = 0; j < e->n_iot_hubs; j++)
                                if (strcaseeq(e->iot_hubs[j], name))
                                        return fail(reterr, -EEXIST, &ip, "'%s' listed twice", name);
                        e->iot_hubs[e->n_iot_hubs++] = name;
                }
        }

        r = get_string(o, "allocationPolicy", false, p, reterr, &s);
        if (r < 0)
                return r;
        e->allocation_policy = _DPS_ALLOCATION_INVALID;
        if (s) {
                Path pp = PATH_KEY(p, "allocationPolicy");
                e->allocation_policy = dps_allocation_policy_from_string(s);
                if (e->allocation_policy < 0)
                        return fail(reterr, -EINVAL, &pp, "unknown allocation policy '%s'", s);
        }
        if (e->allocation_policy == DPS_ALLOCATION_CUSTOM) {
                /* the webhook of §7.3 (src/dps/webhook.c) */
                struct json_object *def = member(o, "customAllocationDefinition");
                Path dp = PATH_KEY(p, "customAllocationDefinition");
                if (!def || !json_object_is_type(def, json_type_object))
                        return fail(reterr, -EINVAL, &dp, "custom allocation needs an object with webhookUrl");
                static const char *const allowed_def[] = { "webhookUrl", "apiVersion", NULL };
                r = check_keys(def, allowed_def, &dp, reterr);
                if (r < 0)
                        return r;
                r = get_string(def, "webhookUrl", true, &dp, reterr, &s);
                if (r < 0)
                        return r;
                if (!dps_webhook_url_is_valid(s)) {
                        Path up = PATH_KEY(&dp, "webhookUrl");
                        return fail(reterr, -EINVAL, &up, "not an http:// or https:// URL of at most %d characters",
                                    DPS_WEBHOOK_URL_MAX);
                }
                r = get_string(def, "apiVersion", false, &dp, reterr, &s);
                if (r < 0)
                        return r;
        }
        DpsAllocationPolicy eff = e->allocation_policy >= 0 ? e->allocation_policy : d->allocation_policy;
        if (eff == DPS_ALLOCATION_STATIC && !e->iot_hub_host_name && e->n_iot_hubs != 1)
                return fail(reterr, -EINVAL, p, "static allocation needs exactly one hub in iotHubs");

        /* Stored, not interpreted (yet). */
        static const char *const objects[] = {
                "initialTwin", "reprovisionPolicy", "customAllocationDefinition", "registrationState",
                "optionalDeviceInformation", NULL,
        };
        for (const char *const *k = objects; *k; k++) {
                r = get_object(o, *k, false, p, reterr, &sub);
                if (r < 0)
                        return r;
        }
        static const char *const strings[] = { "etag", "createdDateTimeUtc", "lastUpdatedDateTimeUtc", NULL };
        for (const char *const *k = strings; *k; k++) {
                r = get_string(o, *k, false, p, reterr, &s);
                if (r < 0)
                        return r;
        }

        e->json = o;
        return 0;
}

static int parse_individual(const DpsData *d, struct json_object *o, Path *p, char **reterr, DpsEnrollment *e) {
        static const char *const allowed[] = {
                "registrationId", "deviceId", "registrationState", "optionalDeviceInformation", "attestation",
                "capabilities", "iotHubHostName", "initialTwin", "etag", "provisioningStatus",
                "reprovisionPolicy", "createdDateTimeUtc", "lastUpdatedDateTimeUtc", "allocationPolicy",
                "iotHubs", "customAllocationDefinition", NULL,
        };
        int r;

        if (!json_object_is_type(o, json_type_object))
                return fail(reterr, -EINVAL, p, "expected an object");

        r = get_string(o, "registrationId", true, p, reterr, &e->registration_id);
        if (r < 0)
                return r;
        if (!dps_registration_id_is_valid(e->registration_id)) {
                Path ip = PATH_KEY(p, "registrationId");
                return fail(reterr, -EINVAL, &ip,
                            "'%.*s' is not a valid registration id (1-128 of [A-Za-z0-9.:_-], alphanumeric at both ends)",
                            DPS_REGISTRATION_ID_MAX, e->registration_id);
        }
        p->label = e->registration_id;

        r = check_keys(o, allowed, p, reterr);
        if (r < 0)
                return r;

        r = get_string(o, "deviceId", false, p, reterr, &e->device_id);
        if (r < 0)
                return r;
        if (e->device_id && !dps_device_id_is_valid(e->device_id)) {
                Path ip = PATH_KEY(p, "deviceId");
                return fail(reterr, -EINVAL, &ip, "not a valid device id");
        }

        return parse_enrollment_common(d, o, p, reterr, e);
}

static int parse_group(const DpsData *d, struct json_object *o, Path *p, char **reterr, DpsEnrollment *e) {
        static const char *const allowed[] = {
                "enrollmentGroupId", "attestation", "capabilities", "iotHubHostName", "initialTwin", "etag",
                "provisioningStatus", "reprovisionPolicy", "createdDateTimeUtc", "lastUpdatedDateTimeUtc",
                "allocationPolicy", "iotHubs", "customAllocationDefinition", NULL,
        };
        int r;

        if (!json_object_is_type(o, json_type_object))
                return fail(reterr, -EINVAL, p, "expected an object");

        r = get_string(o, "enrollmentGroupId", true, p, reterr, &e->enrollment_group_id);
        if (r < 0)
                return r;
        /* Group ids follow the registration id rules. */
        if (!dps_registration_id_is_valid(e->enrollment_group_id)) {
                Path ip = PATH_KEY(p, "enrollmentGroupId");
                return fail(reterr, -EINVAL, &ip, "'%.*s' is not a valid enrollment group id",
                            DPS_ENROLLMENT_GROUP_ID_MAX, e->enrollment_group_id);
        }
        p->label = e->enrollment_group_id;

        r = check_keys(o, allowed, p, reterr);
        if (r < 0)
                return r;

        return parse_enrollment_common(d, o, p, reterr, e);
}

static int individual_cmp(const void *a, const void *b) {
        const DpsEnrollment *const *x = a, *const *y = b;
        return strcasecmp((*x)->registration_id, (*y)->registration_id);
}

static int data_build(DpsData *d, char **reterr) {
        static const char *const allowed[] = {
                "idScope", "allocationPolicy", "linkedHubs", "individualEnrollments", "enrollmentGroups", NULL,
        };
        struct json_object *root = d->root, *arr;
        const char *s;
        int r;

        if (!root || !json_object_is_type(root, json_type_object))
                return fail(reterr, -EINVAL, NULL, "the top level must be a JSON object");

        r = check_keys(root, allowed, NULL, reterr);
        if (r < 0)
                return r;

        r = get_string(root, "idScope", true, NULL, reterr, &d->id_scope);
        if (r < 0)
                return r;
        if (!dps_id_scope_is_valid(d->id_scope))
                return fail(reterr, -EINVAL, NULL, "idScope: '%.*s' is not a valid ID scope", DPS_ID_SCOPE_MAX,
                            d->id_scope);

        r = get_string(root, "allocationPolicy", false, NULL, reterr, &s);
        if (r < 0)
                return r;
        d->allocation_policy = DPS_ALLOCATION_HASHED;
        if (s) {
                d->allocation_policy = dps_allocation_policy_from_string(s);
                if (d->allocation_policy < 0)
                        return fail(reterr, -EINVAL, NULL, "allocationPolicy: unknown allocation policy '%s'", s);
                if (d->allocation_policy == DPS_ALLOCATION_CUSTOM)
                        return fail(reterr, -EINVAL, NULL,
                                    "allocationPolicy: custom cannot be the instance default");
                if (d->allocation_policy == DPS_ALLOCATION_STATIC)
                        return fail(reterr, -EINVAL, NULL,
                                    "allocationPolicy: static cannot be the instance default");
        }

        /* linked hubs */
        r = get_array(root, "linkedHubs", DPS_LINKED_HUBS_MAX, NULL, reterr, &arr);
        if (r < 0)
                return r;
        size_t n = arr ? json_object_array_length(arr) : 0;
        d->hubs = calloc(MAX(n, 1u), sizeof(DpsLinkedHub));
        if (!d->hubs)
                return -ENOMEM;
        Path hp = PATH_KEY(NULL, "linkedHubs");
        for (size_t i = 0; i < n; i++) {
                Path ip = PATH_INDEX(&hp, i);
                DpsLinkedHub h = {};
                r = parse_hub(json_object_array_get_idx(arr, i), &ip, reterr, &h);
                if (r < 0)
                        return r;
                if (dps_data_find_hub(d, h.name))
                        return fail(reterr, -EEXIST, &ip, "hub '%s' listed twice", h.name);
                d->hubs[d->n_hubs++] = h;
        }

        /* individual enrollments */
        r = get_array(root, "individualEnrollments", DPS_INDIVIDUAL_ENROLLMENTS_MAX, NULL, reterr, &arr);
        if (r < 0)
                return r;
        n = arr ? json_object_array_length(arr) : 0;
        d->individual = calloc(MAX(n, 1u), sizeof(DpsEnrollment));
        d->individual_index = calloc(MAX(n, 1u), sizeof(DpsEnrollment *));
        if (!d->individual || !d->individual_index)
                return -ENOMEM;
        Path ep = PATH_KEY(NULL, "individualEnrollments");
        for (size_t i = 0; i < n; i++) {
                Path ip = PATH_INDEX(&ep, i);
                DpsEnrollment *e = d->individual + d->n_individual;
                r = parse_individual(d, json_object_array_get_idx(arr, i), &ip, reterr, e);
                d->n_individual++; /* counted even on failure, so that it gets freed */
                if (r < 0)
                        return r;
                d->individual_index[i] = e;
        }
        qsort(d->individual_index, d->n_individual, sizeof(DpsEnrollment *), individual_cmp);
        for (size_t i = 1; i < d->n_individual; i++)
                if (strcaseeq(d->individual_index[i - 1]->registration_id, d->individual_index[i]->registration_id))
                        return fail(reterr, -EEXIST, NULL,
                                    "individualEnrollments: registration id '%s' is enrolled twice",
                                    d->individual_index[i]->registration_id);

        /* groups */
        r = get_array(root, "enrollmentGroups", DPS_ENROLLMENT_GROUPS_MAX, NULL, reterr, &arr);
        if (r < 0)
                return r;
        n = arr ? json_object_array_length(arr) : 0;
        d->groups = calloc(MAX(n, 1u), sizeof(DpsEnrollment));
        if (!d->groups)
                return -ENOMEM;
        Path gp = PATH_KEY(NULL, "enrollmentGroups");
        for (size_t i = 0; i < n; i++) {
                Path ip = PATH_INDEX(&gp, i);
                DpsEnrollment *e = d->groups + d->n_groups;
                r = parse_group(d, json_object_array_get_idx(arr, i), &ip, reterr, e);
                d->n_groups++;
                if (r < 0)
                        return r;
                for (size_t j = 0; j + 1 < d->n_groups; j++)
                        if (strcaseeq(d->groups[j].enrollment_group_id, e->enrollment_group_id))
                                return fail(reterr, -EEXIST, &ip, "enrollment group id listed twice");
        }

        return 0;
}

int dps_data_from_json(struct json_object *root, DpsData **ret, char **reterr_message) {
        int r;

        if (!ret) {
                json_object_put(root);
                return -EINVAL;
        }

        DpsData *d = calloc(1, sizeof(DpsData));
        if (!d) {
                json_object_put(root);
                return -ENOMEM;
        }
        d->root = root;

        r = data_build(d, reterr_message);
        if (r < 0) {
                dps_data_free(d);
                if (r == -ENOMEM)
                        (void) fail(reterr_message, r, NULL, "out of memory");
                return r;
        }

        *ret = d;
        return 0;
}

int dps_data_new(const char *id_scope, DpsData **ret) {
        _cleanup_json_ struct json_object *root = NULL;

        if (!ret || !dps_id_scope_is_valid(id_scope))
                return -EINVAL;

        root = json_object_new_object();
        if (!root)
                return -ENOMEM;
        if (json_object_object_add(root, "idScope", json_object_new_string(id_scope)) < 0 ||
            json_object_object_add(root, "allocationPolicy", json_object_new_string("hashed")) < 0 ||
            json_object_object_add(root, "linkedHubs", json_object_new_array()) < 0 ||
            json_object_object_add(root, "individualEnrollments", json_object_new_array()) < 0 ||
            json_object_object_add(root, "enrollmentGroups", json_object_new_array()) < 0)
                return -ENOMEM;

        return dps_data_from_json(TAKE_PTR(root), ret, NULL);
}

int dps_data_parse(const void *buf, size_t len, DpsData **ret, char **reterr_message) {
        struct json_object *root = NULL;
        int r;

        if (!ret || (!buf && len > 0))
                return -EINVAL;

        r = json_parse_limited(buf, len, DPS_DATAFILE_MAX, DPS_DATAFILE_MAX_DEPTH, &root);
        if (r == -E2BIG)
                return fail(reterr_message, r, NULL, "larger than %d bytes", DPS_DATAFILE_MAX);
        if (r == -ENOMEM)
                return fail(reterr_message, r, NULL, "out of memory");
        if (r < 0)
                return fail(reterr_message, r, NULL, "not valid JSON (or nested deeper than %d levels)",
                            DPS_DATAFILE_MAX_DEPTH);

        return dps_data_from_json(root, ret, reterr_message);
}

int dps_data_load(const char *path, DpsData **ret, char **reterr_message) {
        _cleanup_free_ char *buf = NULL, *msg = NULL;
        size_t len = 0;
        int r;

        if (!path || !ret)
                return -EINVAL;

        r = read_file_full(path, DPS_DATAFILE_MAX, &buf, &len);
        if (r == -EFBIG || r == -E2BIG)
                return fail(reterr_message, -E2BIG, NULL, "%s: larger than %d bytes", path, DPS_DATAFILE_MAX);
        if (r < 0)
                return fail(reterr_message, r, NULL, "%s: %s", path, strerror(-r));

        r = dps_data_parse(buf, len, ret, &msg);
        explicit_bzero(buf, len); /* the file holds keys */
        if (r < 0)
                return fail(reterr_message, r, NULL, "%s: %s", path, msg ?: strerror(-r));
        return 0;
}

int dps_data_format(const DpsData *d, char **ret) {
        if (!d || !ret)
                return -EINVAL;

        size_t len = 0;
        const char *s = json_object_to_json_string_length(
                d->root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        if (!s)
                return -ENOMEM;

        char *out = malloc(len + 2);
        if (!out)
                return -ENOMEM;
        memcpy(out, s, len);
        out[len] = '\n';
        out[len + 1] = 0;
        /* json-c caches the serialization in the object; it contains the keys. */
        explicit_bzero((char *) s, len);

        *ret = out;
        return 0;
}

int dps_data_save(const DpsData *d, const char *path) {
        _cleanup_erase_ char *s = NULL;
        int r;

        if (!d || !path)
                return -EINVAL;

        r = dps_data_format(d, &s);
        if (r < 0)
                return r;
        return write_file_atomic(path, s, strlen(s), DPS_DATAFILE_MODE);
}

const DpsEnrollment *dps_data_find_individual(const DpsData *d, const char *registration_id) {
        if (!d || !registration_id || d->n_individual == 0)
                return NULL;

        const DpsEnrollment key = { .registration_id = registration_id }, *kp = &key;
        const DpsEnrollment **e =
                bsearch(&kp, d->individual_index, d->n_individual, sizeof(DpsEnrollment *), individual_cmp);
        return e ? *e : NULL;
}

const DpsEnrollment *dps_data_find_group(const DpsData *d, const char *enrollment_group_id) {
        if (!d || !enrollment_group_id)
                return NULL;
        for (size_t i = 0; i < d->n_groups; i++)
                if (strcaseeq(d->groups[i].enrollment_group_id, enrollment_group_id))
                        return d->groups + i;
        return NULL;
}

const DpsLinkedHub *dps_data_find_hub(const DpsData *d, const char *name) {
        if (!d || !name)
                return NULL;
        for (size_t i = 0; i < d->n_hubs; i++)
                if (strcaseeq(d->hubs[i].name, name))
                        return d->hubs + i;
        return NULL;
}

/* ---- edits ----------------------------------------------------------------------------- */

/* Validates new_root and, on success, makes it d's tree.  Takes ownership of new_root. */
static int data_replace_root(DpsData *d, struct json_object *new_root, char **reterr) {
        DpsData *n = NULL;
        int r;

        r = dps_data_from_json(new_root, &n, reterr);
        if (r < 0)
                return r;

        /* swap the contents, then free the old ones */
        DpsData tmp = *d;
        *d = *n;
        *n = tmp;
        dps_data_free(n);
        return 0;
}

static int data_copy_root(const DpsData *d, struct json_object **ret) {
        struct json_object *c = NULL;

        if (json_object_deep_copy(d->root, &c, NULL) < 0 || !c)
                return -ENOMEM;
        *ret = c;
        return 0;
}

/* The array member key of root, created when absent or null. */
static int root_array(struct json_object *root, const char *key, struct json_object **ret) {
        struct json_object *a = member(root, key);

        if (!a) {
                a = json_object_new_array();
                if (!a)
                        return -ENOMEM;
                if (json_object_object_add(root, key, a) < 0) {
                        json_object_put(a);
                        return -ENOMEM;
                }
        }
        if (!json_object_is_type(a, json_type_array))
                return -EINVAL;
        *ret = a;
        return 0;
}

int dps_data_set_id_scope(DpsData *d, const char *id_scope, char **reterr_message) {
        struct json_object *root = NULL;
        int r;

        if (!d || !id_scope)
                return -EINVAL;
        if (!dps_id_scope_is_valid(id_scope))
                return fail(reterr_message, -EINVAL, NULL, "'%s' is not a valid ID scope", id_scope);

        r = data_copy_root(d, &root);
        if (r < 0)
                return r;
        if (json_object_object_add(root, "idScope", json_object_new_string(id_scope)) < 0) {
                json_object_put(root);
                return -ENOMEM;
        }
        return data_replace_root(d, root, reterr_message);
}

int dps_data_add_hub(DpsData *d, const char *name, unsigned weight, bool apply_allocation_policy,
                     char **reterr_message) {
        _cleanup_json_ struct json_object *root = NULL, *h = NULL;
        struct json_object *arr;
        int r;

        if (!d || !name)
                return -EINVAL;
        if (dps_data_find_hub(d, name))
                return fail(reterr_message, -EEXIST, NULL, "hub '%s' is already linked", name);

        r = data_copy_root(d, &root);
        if (r < 0)
                return r;
        r = root_array(root, "linkedHubs", &arr);
        if (r < 0)
                return r;

        h = json_object_new_object();
        if (!h || json_object_object_add(h, "name", json_object_new_string(name)) < 0 ||
            json_object_object_add(h, "allocationWeight", json_object_new_int((int) MIN(weight, 100000u))) < 0 ||
            json_object_object_add(h, "applyAllocationPolicy", json_object_new_boolean(apply_allocation_policy)) < 0)
                return -ENOMEM;
        if (json_object_array_add(arr, h) < 0)
                return -ENOMEM;
        TAKE_PTR(h);

        return data_replace_root(d, TAKE_PTR(root), reterr_message);
}

static int array_remove_by(struct json_object *arr, const char *key, const char *value) {
        size_t n = json_object_array_length(arr);
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(arr, i);
                const char *s = json_get_string(e, key);
                if (s && strcaseeq(s, value))
                        return json_object_array_del_idx(arr, i, 1) < 0 ? -ENOMEM : 0;
        }
        return -ENOENT;
}

int dps_data_remove_hub(DpsData *d, const char *name, char **reterr_message) {
        _cleanup_json_ struct json_object *root = NULL;
        struct json_object *arr;
        int r;

        if (!d || !name)
                return -EINVAL;
        r = data_copy_root(d, &root);
        if (r < 0)
                return r;
        r = root_array(root, "linkedHubs", &arr);
        if (r < 0)
                return r;
        r = array_remove_by(arr, "name", name);
        if (r == -ENOENT)
                return fail(reterr_message, r, NULL, "hub '%s' is not linked", name);
        if (r < 0)
                return r;
        return data_replace_root(d, TAKE_PTR(root), reterr_message);
}

static int data_add_enrollment(DpsData *d, const char *list, struct json_object *e, char **reterr) {
        _cleanup_json_ struct json_object *root = NULL, *owned = e;
        struct json_object *arr;
        int r;

        if (!d || !e)
                return -EINVAL;
        r = data_copy_root(d, &root);
        if (r < 0)
                return r;
        r = root_array(root, list, &arr);
        if (r < 0)
                return r;
        if (json_object_array_add(arr, owned) < 0)
                return -ENOMEM;
        TAKE_PTR(owned);
        return data_replace_root(d, TAKE_PTR(root), reterr);
}

int dps_data_add_individual(DpsData *d, struct json_object *enrollment, char **reterr_message) {
        return data_add_enrollment(d, "individualEnrollments", enrollment, reterr_message);
}

int dps_data_add_group(DpsData *d, struct json_object *group, char **reterr_message) {
        return data_add_enrollment(d, "enrollmentGroups", group, reterr_message);
}

static int data_remove_enrollment(DpsData *d, const char *list, const char *key, const char *id, char **reterr) {
        _cleanup_json_ struct json_object *root = NULL;
        struct json_object *arr;
        int r;

        if (!d || !id)
                return -EINVAL;
        r = data_copy_root(d, &root);
        if (r < 0)
                return r;
        r = root_array(root, list, &arr);
        if (r < 0)
                return r;
        r = array_remove_by(arr, key, id);
        if (r == -ENOENT)
                return fail(reterr, r, NULL, "%s: no entry with %s '%s'", list, key, id);
        if (r < 0)
                return r;
        return data_replace_root(d, TAKE_PTR(root), reterr);
}

int dps_data_remove_individual(DpsData *d, const char *registration_id, char **reterr_message) {
        return data_remove_enrollment(d, "individualEnrollments", "registrationId", registration_id,
                                      reterr_message);
}

int dps_data_remove_group(DpsData *d, const char *enrollment_group_id, char **reterr_message) {
        return data_remove_enrollment(d, "enrollmentGroups", "enrollmentGroupId", enrollment_group_id,
                                      reterr_message);
}

static const struct {
        const char *list;
        const char *key;
        const char *what;
} put_table[_DPS_DATA_LIST_MAX] = {
        [DPS_DATA_LINKED_HUBS] = { "linkedHubs", "name", "linked hub" },
        [DPS_DATA_INDIVIDUAL_ENROLLMENTS] = { "individualEnrollments", "registrationId", "individual enrollment" },
        [DPS_DATA_ENROLLMENT_GROUPS] = { "enrollmentGroups", "enrollmentGroupId", "enrollment group" },
};

struct json_object *dps_data_find_json(const DpsData *d, DpsDataList list, const char *id) {
        struct json_object *arr;

        if (!d || !id || list < 0 || list >= _DPS_DATA_LIST_MAX)
                return NULL;
        arr = member(d->root, put_table[list].list);
        if (!arr || !json_object_is_type(arr, json_type_array))
                return NULL;
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                struct json_object *e = json_object_array_get_idx(arr, i);
                const char *s = json_get_string(e, put_table[list].key);
                if (s && strcaseeq(s, id))
                        return e;
        }
        return NULL;
}

int dps_data_put(DpsData *d, DpsDataList list, struct json_object *object, DpsDataPutMode mode,
                 char **reterr_message) {
        _cleanup_json_ struct json_object *root = NULL, *owned = object;
        struct json_object *arr;
        int r;

        if (!d || !object || list < 0 || list >= _DPS_DATA_LIST_MAX)
                return -EINVAL;
        if (!json_object_is_type(object, json_type_object))
                return fail(reterr_message, -EINVAL, NULL, "the %s must be a JSON object", put_table[list].what);
        const char *id = json_get_string(object, put_table[list].key);
        if (isempty(id))
                return fail(reterr_message, -EINVAL, NULL, "%s: missing (a string)", put_table[list].key);

        r = data_copy_root(d, &root);
        if (r < 0)
                return r;
        r = root_array(root, put_table[list].list, &arr);
        if (r < 0)
                return r;

        size_t n = json_object_array_length(arr), i;
        for (i = 0; i < n; i++) {
                const char *s = json_get_string(json_object_array_get_idx(arr, i), put_table[list].key);
                if (s && strcaseeq(s, id))
                        break;
        }
        if (i < n && mode == DPS_DATA_PUT_CREATE)
                return fail(reterr_message, -EEXIST, NULL, "%s '%s' exists already", put_table[list].what, id);
        if (i >= n && mode == DPS_DATA_PUT_UPDATE)
                return fail(reterr_message, -ENOENT, NULL, "no %s '%s'", put_table[list].what, id);

        if (i < n)
                r = json_object_array_put_idx(arr, i, owned);
        else
                r = json_object_array_add(arr, owned);
        if (r < 0)
                return -ENOMEM;
        TAKE_PTR(owned);
        return data_replace_root(d, TAKE_PTR(root), reterr_message);
}

int dps_data_remove(DpsData *d, DpsDataList list, const char *id, char **reterr_message) {
        _cleanup_json_ struct json_object *root = NULL;
        struct json_object *arr;
        int r;

        if (!d || !id || list < 0 || list >= _DPS_DATA_LIST_MAX)
                return -EINVAL;
        r = data_copy_root(d, &root);
        if (r < 0)
                return r;
        r = root_array(root, put_table[list].list, &arr);
        if (r < 0)
                return r;
        r = array_remove_by(arr, put_table[list].key, id);
        if (r == -ENOENT)
                return fail(reterr_message, r, NULL, "no %s '%s'", put_table[list].what, id);
        if (r < 0)
                return r;
        return data_replace_root(d, TAKE_PTR(root), reterr_message);
}

int dps_data_copy(const DpsData *d, DpsData **ret) {
        struct json_object *root = NULL;
        int r;

        if (!d || !ret)
                return -EINVAL;
        r = data_copy_root(d, &root);
        if (r < 0)
                return r;
        return dps_data_from_json(root, ret, NULL);
}
