/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <limits.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/conf.h"
#include "edgeprov/codec.h"
#include "edgeprov/dps.h"
#include "edgeprov/fileio.h"
#include "edgeprov/json-util.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/sha256.h"

static const char *const attestation_table[_ATTESTATION_MAX] = {
        [ATTESTATION_SYMMETRIC_KEY] = "symmetric_key",
        [ATTESTATION_TPM] = "tpm",
        [ATTESTATION_X509] = "x509",
};

const char *attestation_method_to_string(AttestationMethod m) {
        if (m < 0 || m >= _ATTESTATION_MAX)
                return NULL;
        return attestation_table[m];
}

AttestationMethod attestation_method_from_string(const char *s) {
        if (!s)
                return _ATTESTATION_INVALID;
        for (int i = 0; i < _ATTESTATION_MAX; i++)
                if (streq(s, attestation_table[i]))
                        return (AttestationMethod) i;
        return _ATTESTATION_INVALID;
}

void conf_init(Config *c) {
        *c = (Config) {
                .port = 8883,
                .sas_lifetime = 3600,
                .attestation = _ATTESTATION_INVALID,
                .retry_initial = 2,
                .retry_max = 300,
                .request_timeout = 30,
                .downstream_concurrency = 8,
                .downstream_rate = 1000,
        };
}

void conf_done(Config *c) {
        if (!c)
                return;
        free(c->endpoint);
        free(c->transport);
        free(c->id_scope);
        free(c->registration_id);
        free(c->api_version);
        free(c->ca_file);
        free(c->payload);
        free(c->key_file);
        free(c->certificate_file);
        free(c->tpm_tcti);
        free(c->tpm_endorsement_auth_file);
        free(c->tpm_owner_auth_file);
        free(c->tpm_ek_ca_file);
        free(c->tpm_slot_a);
        free(c->tpm_slot_b);
        free(c->state_directory);
        free(c->log_level);
        free(c->admin_group);
        free(c->downstream_group_key_file);
        if (c->downstream_sensors)
                for (char **p = c->downstream_sensors; *p; p++)
                        free(*p);
        free(c->downstream_sensors);
        free(c->path);
        conf_init(c);
}

/* ---- schema ------------------------------------------------------------- */

typedef enum ConfType {
        CONF_GROUP,
        CONF_STRING,
        CONF_INT,
        CONF_BOOL,
        CONF_STRV,      /* a list or array of strings, replaced as a whole */
} ConfType;

typedef struct ConfItem ConfItem;
/* Validators get the parsed value and return NULL or a static message "must be ...". */
typedef const char *(*ConfCheckString)(const char *v);
typedef struct ConfItem {
        const char *path;
        ConfType type;
        ssize_t offset;         /* -1 for groups */
        ConfCheckString check;  /* strings */
        long long min, max;     /* ints */
} ConfItem;

static const char *check_nonempty(const char *v) {
        return isempty(v) ? "must not be empty" : NULL;
}

static const char *check_host(const char *v) {
        if (isempty(v) || strlen(v) > 253)
                return "must be a host name or address of 1 to 253 characters";
        for (const char *p = v; *p; p++)
                if ((unsigned char) *p <= ' ' || strchr("/?#@", *p))
                        return "must be a bare host name or address (no scheme, port, path or spaces)";
        return NULL;
}

static const char *check_transport(const char *v) {
        return streq(v, "mqtt") || streq(v, "https") ? NULL : "must be \"mqtt\" or \"https\"";
}

/* Azure DPS is reachable (with a verified certificate) only under its own names:
 * global.azure-devices-provisioning.net, <name>.azure-devices-provisioning.net and the
 * sovereign clouds' .azure-devices-provisioning.{cn,us,de}. */
bool conf_endpoint_is_azure(const char *host) {
        static const char *const suffixes[] = {
                ".azure-devices-provisioning.net", ".azure-devices-provisioning.cn",
                ".azure-devices-provisioning.us", ".azure-devices-provisioning.de",
        };
        size_t n = host ? strlen(host) : 0;

        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                size_t l = strlen(suffixes[i]);
                if (n > l && strcasecmp(host + n - l, suffixes[i]) == 0)
                        return true;
        }
        return false;
}

const char *conf_transport(const Config *c) {
        if (c->transport)
                return c->transport;
        /* TPM: Azure offers it over HTTPS only (dps-protocol.md §2.11); any other endpoint is
         * not Azure DPS and so ours, where TPM over MQTT is the tested default. */
        if (c->attestation == ATTESTATION_TPM && conf_endpoint_is_azure(c->endpoint))
                return "https";
        return "mqtt";
}

int conf_port(const Config *c) {
        if (c->port_set)
                return c->port;
        return streq(conf_transport(c), "https") ? 443 : 8883;
}

static const char *check_scope(const char *v) {
        return dps_id_scope_is_valid(v) ? NULL : "must be a DPS ID scope such as \"0ne00000A0A\"";
}

static const char *check_regid(const char *v) {
        return dps_registration_id_is_valid(v)
                ? NULL
                : "must be 1 to 128 characters of A-Z a-z 0-9 . : _ -, starting and ending alphanumeric";
}

static const char *check_api_version(const char *v) {
        /* YYYY-MM-DD with an optional -preview suffix */
        int y, m, d, n = 0;
        if (sscanf(v, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10 || y < 2017 || m < 1 || m > 12 ||
            d < 1 || d > 31)
                return "must be an API version such as \"2019-03-31\"";
        if (v[10] && !streq(v + 10, "-preview"))
                return "must be an API version such as \"2019-03-31\"";
        return NULL;
}

static const char *check_json(const char *v) {
        struct json_object *o = NULL;
        if (json_parse_limited(v, strlen(v), 16 * 1024, 16, &o) < 0)
                return "must be valid JSON of at most 16 KiB";
        json_object_put(o);
        return NULL;
}

static const char *check_method(const char *v) {
        return attestation_method_from_string(v) >= 0
                ? NULL
                : "must be \"symmetric_key\", \"tpm\" or \"x509\"";
}

/* a persistent handle for the TPM key slots: 0x81000002..0x817fffff, not the EK or SRK */
int conf_parse_tpm_slot(const char *v, uint32_t *ret) {
        char *end = NULL;
        unsigned long h;

        if (isempty(v) || !startswith(v, "0x"))
                return -EINVAL;
        errno = 0;
        h = strtoul(v, &end, 16);
        if (errno != 0 || !end || *end || h < 0x81000002UL || h > 0x817fffffUL || h == 0x81010001UL)
                return -EINVAL;
        *ret = (uint32_t) h;
        return 0;
}

static const char *check_tpm_slot(const char *v) {
        uint32_t h;
        return conf_parse_tpm_slot(v, &h) >= 0
                ? NULL
                : "must be a persistent handle in hex, 0x81000002..0x817fffff, not the EK (0x81010001)";
}

static const char *check_tcti(const char *v) {
        return isempty(v) || strlen(v) > 1024 || strchr(v, '\n') ? "must be a TCTI string such as "
                                                                  "\"device:/dev/tpmrm0\" or "
                                                                  "\"swtpm:host=127.0.0.1,port=2321\""
                                                                : NULL;
}

static const char *check_abs_path(const char *v) {
        return v[0] == '/' ? NULL : "must be an absolute path";
}

static const char *check_log_level(const char *v) {
        return log_level_from_string(v) >= 0 ? NULL
                                             : "must be one of debug, info, notice, warning, err";
}

#define S(p, field, chk) { p, CONF_STRING, offsetof(Config, field), chk, 0, 0 }
#define I(p, field, lo, hi) { p, CONF_INT, offsetof(Config, field), NULL, lo, hi }
#define B(p, field) { p, CONF_BOOL, offsetof(Config, field), NULL, 0, 0 }
#define G(p) { p, CONF_GROUP, -1, NULL, 0, 0 }

static const ConfItem schema[] = {
        G("provisioning"),
        S("provisioning.endpoint", endpoint, check_host),
        I("provisioning.port", port, 1, 65535),
        S("provisioning.transport", transport, check_transport),
        S("provisioning.id_scope", id_scope, check_scope),
        S("provisioning.registration_id", registration_id, check_regid),
        S("provisioning.api_version", api_version, check_api_version),
        S("provisioning.ca_file", ca_file, check_nonempty),
        S("provisioning.payload", payload, check_json),
        I("provisioning.sas_lifetime", sas_lifetime, 60, 7 * 24 * 3600),
        G("provisioning.attestation"),
        { "provisioning.attestation.method", CONF_STRING, offsetof(Config, attestation), check_method, 0, 0 },
        S("provisioning.attestation.key_file", key_file, check_nonempty),
        S("provisioning.attestation.certificate_file", certificate_file, check_nonempty),
        G("tpm"),
        S("tpm.tcti", tpm_tcti, check_tcti),
        S("tpm.endorsement_auth_file", tpm_endorsement_auth_file, check_nonempty),
        S("tpm.owner_auth_file", tpm_owner_auth_file, check_nonempty),
        S("tpm.ek_ca_file", tpm_ek_ca_file, check_abs_path),
        S("tpm.key_slot_a", tpm_slot_a, check_tpm_slot),
        S("tpm.key_slot_b", tpm_slot_b, check_tpm_slot),
        G("agent"),
        S("agent.state_directory", state_directory, check_abs_path),
        I("agent.retry_initial", retry_initial, 1, 3600),
        I("agent.retry_max", retry_max, 1, 7 * 24 * 3600),
        I("agent.request_timeout", request_timeout, 1, 600),
        B("agent.fail_fast", fail_fast),
        S("agent.log_level", log_level, check_log_level),
        S("agent.admin_group", admin_group, check_nonempty),
        G("downstream"),
        S("downstream.group_key_file", downstream_group_key_file, check_nonempty),
        B("downstream.group_key_in_tpm", downstream_group_key_in_tpm),
        I("downstream.concurrency", downstream_concurrency, 1, 1024),
        I("downstream.rate", downstream_rate, 1, 1000000),
        { "downstream.sensors", CONF_STRV, offsetof(Config, downstream_sensors), check_nonempty, 0, 10000 },
};

static const ConfItem *schema_find(const char *path) {
        for (size_t i = 0; i < ELEMENTSOF(schema); i++)
                if (streq(schema[i].path, path))
                        return &schema[i];
        return NULL;
}

static const char *type_name(ConfType t) {
        switch (t) {
        case CONF_GROUP:
                return "a group { ... }";
        case CONF_STRING:
                return "a string";
        case CONF_INT:
                return "an integer";
        case CONF_BOOL:
                return "true or false";
        case CONF_STRV:
                return "a list of strings ( \"a\", \"b\" )";
        }
        return "?";
}

_printf_(4, 5) static int conf_error(char **reterr, const char *file, int line, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        if (!reterr)
                return -EINVAL;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        free(*reterr);
        *reterr = NULL;
        if (line > 0) {
                if (asprintf(reterr, "%s:%d: %s", strempty(file), line, strempty(msg)) < 0)
                        *reterr = NULL;
        } else if (asprintf(reterr, "%s: %s", strempty(file), strempty(msg)) < 0)
                *reterr = NULL;
        return -EINVAL;
}

static int apply_setting(Config *c, config_setting_t *s, const char *prefix, const char *file, char **reterr);

static int apply_group(Config *c, config_setting_t *g, const char *prefix, const char *file, char **reterr) {
        int n = config_setting_length(g);
        for (int i = 0; i < n; i++) {
                config_setting_t *s = config_setting_get_elem(g, (unsigned) i);
                int r = apply_setting(c, s, prefix, file, reterr);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int apply_setting(Config *c, config_setting_t *s, const char *prefix, const char *file, char **reterr) {
        char path[256];
        const char *name = config_setting_name(s);
        int line = (int) config_setting_source_line(s);
        const ConfItem *item;

        if (!name)
                return conf_error(reterr, file, line, "unnamed setting in '%s'", prefix);
        if (snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", name) >= (int) sizeof(path))
                return conf_error(reterr, file, line, "setting name too long");

        item = schema_find(path);
        if (!item)
                return conf_error(reterr, file, line, "unknown setting '%s'", path);

        int t = config_setting_type(s);
        bool ok = (item->type == CONF_GROUP && t == CONFIG_TYPE_GROUP) ||
                  (item->type == CONF_STRING && t == CONFIG_TYPE_STRING) ||
                  (item->type == CONF_INT && (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)) ||
                  (item->type == CONF_BOOL && t == CONFIG_TYPE_BOOL) ||
                  (item->type == CONF_STRV && (t == CONFIG_TYPE_LIST || t == CONFIG_TYPE_ARRAY));
        if (!ok)
                return conf_error(reterr, file, line, "%s= must be %s", path, type_name(item->type));

        switch (item->type) {
        case CONF_GROUP:
                return apply_group(c, s, path, file, reterr);
        case CONF_STRING: {
                const char *v = config_setting_get_string(s);
                const char *why;
                if (!v || strlen(v) > 4096)
                        return conf_error(reterr, file, line, "%s= must be at most 4096 characters", path);
                why = item->check ? item->check(v) : NULL;
                if (why)
                        return conf_error(reterr, file, line, "%s= %s (got '%s')", path, why, v);
                if (streq(item->path, "provisioning.attestation.method")) {
                        c->attestation = attestation_method_from_string(v);
                        return 0;
                }
                char **field = (char **) ((uint8_t *) c + item->offset);
                char *dup = strdup(v);
                if (!dup)
                        return -ENOMEM;
                free(*field);
                *field = dup;
                return 0;
        }
        case CONF_INT: {
                long long v = config_setting_get_int64(s);
                if (v < item->min || v > item->max)
                        return conf_error(reterr, file, line, "%s= must be between %lld and %lld (got %lld)", path,
                                          item->min, item->max, v);
                *(int *) ((uint8_t *) c + item->offset) = (int) v;
                if (item->offset == offsetof(Config, port))
                        c->port_set = true;
                return 0;
        }
        case CONF_BOOL:
                *(bool *) ((uint8_t *) c + item->offset) = config_setting_get_bool(s);
                return 0;
        case CONF_STRV: {
                int n = config_setting_length(s);
                char ***field = (char ***) ((uint8_t *) c + item->offset);
                char **v;
                if (n < 0 || n > item->max)
                        return conf_error(reterr, file, line, "%s= must have at most %lld entries", path, item->max);
                v = calloc((size_t) n + 1, sizeof(char *));
                if (!v)
                        return -ENOMEM;
                for (int i = 0; i < n; i++) {
                        config_setting_t *e = config_setting_get_elem(s, (unsigned) i);
                        const char *x = e && config_setting_type(e) == CONFIG_TYPE_STRING ? config_setting_get_string(e)
                                                                                          : NULL;
                        const char *why = !x ? "must hold strings only"
                                          : strlen(x) > 4096 ? "entries must be at most 4096 characters"
                                          : item->check ? item->check(x) : NULL;
                        if (why || !(v[i] = strdup(x))) {
                                for (int j = 0; j < i; j++)
                                        free(v[j]);
                                free(v);
                                return why ? conf_error(reterr, file, e ? (int) config_setting_source_line(e) : line,
                                                        "%s= %s", path, why)
                                           : -ENOMEM;
                        }
                }
                if (*field)
                        for (char **p = *field; *p; p++)
                                free(*p);
                free(*field);
                *field = v;
                return 0;
        }
        }
        return -EINVAL;
}

int conf_apply_string(Config *c, const char *text, const char *filename, char **reterr_message) {
        config_t cfg;
        int r;

        if (strlen(text) > CONF_FILE_MAX)
                return conf_error(reterr_message, filename, 0, "file larger than %d bytes", CONF_FILE_MAX);

        config_init(&cfg);
        /* @include would let a drop-in pull in arbitrary files behind the schema's back */
        config_set_include_dir(&cfg, "/nonexistent-include-dir");
        if (config_read_string(&cfg, text) != CONFIG_TRUE) {
                int line = config_error_line(&cfg);
                r = conf_error(reterr_message, filename, line, "syntax error: %s",
                               strna(config_error_text(&cfg)));
                config_destroy(&cfg);
                return r;
        }
        r = apply_group(c, config_root_setting(&cfg), "", filename, reterr_message);
        config_destroy(&cfg);
        return r;
}

int conf_verify(const Config *c, char **reterr_message) {
        static const struct {
                size_t offset;
                const char *name;
        } required[] = {
                { offsetof(Config, endpoint), "provisioning.endpoint" },
                { offsetof(Config, id_scope), "provisioning.id_scope" },
                { offsetof(Config, registration_id), "provisioning.registration_id" },
        };
        const char *file = strna(c->path);

        for (size_t i = 0; i < ELEMENTSOF(required); i++)
                if (!*(char *const *) ((const uint8_t *) c + required[i].offset) &&
                    /* TPM attestation derives it from the EK when not configured (§6.3) */
                    /* ... and X.509 takes it from the certificate's CN (dps-protocol.md §5.1) */
                    !(required[i].offset == offsetof(Config, registration_id) &&
                      (c->attestation == ATTESTATION_TPM || c->attestation == ATTESTATION_X509)))
                        return conf_error(reterr_message, file, 0, "%s= is required", required[i].name);
        if (c->attestation < 0)
                return conf_error(reterr_message, file, 0, "provisioning.attestation.method= is required");
        if (c->attestation == ATTESTATION_SYMMETRIC_KEY && !c->key_file)
                return conf_error(reterr_message, file, 0,
                                  "provisioning.attestation.key_file= is required for symmetric_key attestation");
        if (c->attestation == ATTESTATION_X509 && (!c->key_file || !c->certificate_file))
                return conf_error(reterr_message, file, 0,
                                  "provisioning.attestation.certificate_file= and key_file= are required for x509 "
                                  "attestation");
        if (c->tpm_slot_a && c->tpm_slot_b && strcaseeq(c->tpm_slot_a, c->tpm_slot_b))
                return conf_error(reterr_message, file, 0, "tpm.key_slot_a= and tpm.key_slot_b= must differ");
        if (c->downstream_group_key_file && c->downstream_group_key_in_tpm)
                return conf_error(reterr_message, file, 0,
                                  "downstream.group_key_file= and downstream.group_key_in_tpm= exclude each other");
        if (c->retry_max < c->retry_initial)
                return conf_error(reterr_message, file, 0,
                                  "agent.retry_max= (%d) must not be smaller than agent.retry_initial= (%d)",
                                  c->retry_max, c->retry_initial);
        return 0;
}

static int apply_file(Config *c, const char *path, char **reterr) {
        _cleanup_free_ char *text = NULL;
        int r = read_file_full(path, CONF_FILE_MAX, &text, NULL);
        if (r == -EFBIG)
                return conf_error(reterr, path, 0, "file larger than %d bytes", CONF_FILE_MAX);
        if (r < 0) {
                if (reterr) {
                        free(*reterr);
                        if (asprintf(reterr, "%s: cannot read: %s", path, strerror(-r)) < 0)
                                *reterr = NULL;
                }
                return r;
        }
        return conf_apply_string(c, text, path, reterr);
}

static int dropin_filter(const struct dirent *de) {
        size_t l = strlen(de->d_name);
        return de->d_name[0] != '.' && l > 5 && streq(de->d_name + l - 5, ".conf");
}

int conf_load(const char *path, Config *ret, char **reterr_message) {
        Config c;
        _cleanup_free_ char *dropin_dir = NULL;
        struct dirent **list = NULL;
        int r, n;

        conf_init(&c);
        c.path = strdup(path);
        if (!c.path)
                return -ENOMEM;

        r = apply_file(&c, path, reterr_message);
        if (r < 0)
                goto fail;

        if (asprintf(&dropin_dir, "%s.d", path) < 0) {
                r = -ENOMEM;
                goto fail;
        }
        n = scandir(dropin_dir, &list, dropin_filter, alphasort);
        if (n < 0 && errno != ENOENT && errno != ENOTDIR) {
                r = -errno;
                conf_error(reterr_message, dropin_dir, 0, "cannot read drop-in directory: %s", strerror(errno));
                goto fail;
        }
        if (n > CONF_DROPINS_MAX) {
                r = conf_error(reterr_message, dropin_dir, 0, "more than %d drop-in files", CONF_DROPINS_MAX);
                goto fail_list;
        }
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", dropin_dir, list[i]->d_name) < 0) {
                        r = -ENOMEM;
                        goto fail_list;
                }
                r = apply_file(&c, p, reterr_message);
                if (r < 0)
                        goto fail_list;
        }
        for (int i = 0; i < n; i++)
                free(list[i]);
        free(list);
        list = NULL;

        r = conf_verify(&c, reterr_message);
        if (r < 0)
                goto fail;

        *ret = c;
        return 0;

fail_list:
        for (int i = 0; i < n; i++)
                free(list[i]);
        free(list);
fail:
        conf_done(&c);
        return r;
}

int conf_key_path(const Config *c, char **ret) {
        const char *base;
        _cleanup_free_ char *dir = NULL;
        char *p;

        if (!c->key_file)
                return -ENOENT;
        if (c->key_file[0] == '/') {
                p = strdup(c->key_file);
                if (!p)
                        return -ENOMEM;
                *ret = p;
                return 0;
        }
        base = secure_getenv("CREDENTIALS_DIRECTORY");
        if (!base) {
                dir = strdup(c->path ?: ".");
                if (!dir)
                        return -ENOMEM;
                char *slash = strrchr(dir, '/');
                if (slash)
                        *slash = 0;
                else {
                        free(dir);
                        dir = strdup(".");
                        if (!dir)
                                return -ENOMEM;
                }
                base = dir;
        }
        if (asprintf(&p, "%s/%s", base, c->key_file) < 0)
                return -ENOMEM;
        *ret = p;
        return 0;
}

int conf_identity_fingerprint(const Config *c, const char *key_b64, char **ret_hex) {
        uint8_t md[SHA256_DIGEST_SIZE];
        _cleanup_free_ char *text = NULL;
        int r;

        /* The key enters through a keyed hash so that the fingerprint reveals nothing about it. */
        uint8_t keytag[32];
        r = hmac_sha256(key_b64 ? key_b64 : "", key_b64 ? strlen(key_b64) : 0, "edgeprov-identity", 17, keytag);
        if (r < 0)
                return r;
        _cleanup_free_ char *keyhex = NULL;
        r = hex_encode(keytag, sizeof(keytag), &keyhex);
        explicit_bzero(keytag, sizeof(keytag));
        if (r < 0)
                return r;

        if (asprintf(&text, "v1\n%s\n%d\n%s\n%s\n%s\n%s\n", strempty(c->endpoint), c->port, strempty(c->id_scope),
                     strempty(c->registration_id), strempty(attestation_method_to_string(c->attestation)),
                     keyhex) < 0)
                return -ENOMEM;
        sha256(text, strlen(text), md);
        return hex_encode(md, sizeof(md), ret_hex);
}

#define KEY_FILE_MAX 4096

int conf_read_key(const Config *c, char **ret_key_b64, char **reterr_message) {
        _cleanup_free_ char *path = NULL;
        _cleanup_free_ uint8_t *raw = NULL;
        size_t rawlen = 0;
        char *key = NULL;
        int r;

        r = conf_key_path(c, &path);
        if (r < 0)
                return conf_error(reterr_message, strna(c->path), 0,
                                  "provisioning.attestation.key_file= cannot be resolved");
        r = read_secret_file(path, KEY_FILE_MAX, &key);
        if (r == -EPERM) {
                conf_error(reterr_message, path, 0,
                           "refusing to use the key file: it is accessible to other users "
                           "(chmod o-rwx, or pass it with LoadCredential=)");
                return -EPERM;
        }
        if (r < 0) {
                conf_error(reterr_message, path, 0, "cannot read the key file: %s", strerror(-r));
                return r;
        }
        r = base64_decode(key, strlen(key), &raw, &rawlen);
        if (raw)
                explicit_bzero(raw, rawlen);
        if (r < 0 || rawlen < 16 || rawlen > 64) {
                erase_and_free(key);
                return conf_error(reterr_message, path, 0, "the key file does not hold a base64 key of 16 to 64 bytes");
        }
        *ret_key_b64 = key;
        return 0;
}
