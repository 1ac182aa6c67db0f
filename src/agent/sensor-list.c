/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/sensor-list.h"
#include "edgeprov/dps.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"

static int set_err(const char **reterr, const char *why) {
        if (reterr)
                *reterr = why;
        return -EINVAL;
}

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        c = (char) tolower((unsigned char) c);
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

/* n octets, either "aabbcc…" or separated by ':' or '-' (all the same); lowercase hex out. */
static bool parse_octets(const char *s, size_t n, char *out /* 2n+1 */) {
        size_t len = strlen(s), k = 0;
        if (len == 2 * n) {
                for (size_t i = 0; i < len; i++) {
                        if (hexval(s[i]) < 0)
                                return false;
                        out[k++] = (char) tolower((unsigned char) s[i]);
                }
        } else if (len == 3 * n - 1) {
                char sep = s[2];
                if (sep != ':' && sep != '-')
                        return false;
                for (size_t i = 0; i < n; i++) {
                        const char *p = s + 3 * i;
                        if (hexval(p[0]) < 0 || hexval(p[1]) < 0 || (i + 1 < n && p[2] != sep))
                                return false;
                        out[k++] = (char) tolower((unsigned char) p[0]);
                        out[k++] = (char) tolower((unsigned char) p[1]);
                }
        } else
                return false;
        out[k] = 0;
        return true;
}

static int normalize_modbus(const char *s, char **ret_id, const char **reterr) {
        const char *at = strchr(s, '@');
        char *end = NULL, bus[96];
        size_t k = 0;

        if (!at || at == s)
                return set_err(reterr, "a Modbus id must be UNIT@BUS, e.g. 3@/dev/ttyUSB0");
        errno = 0;
        unsigned long unit = strtoul(s, &end, 10);
        if (errno || end != at || unit > 255 || !isdigit((unsigned char) s[0]))
                return set_err(reterr, "the Modbus unit must be a number from 0 to 255");
        const char *b = at + 1;
        if (startswith(b, "/dev/"))
                b += 5;
        if (!*b)
                return set_err(reterr, "the Modbus bus name is empty");
        for (const char *p = b; *p; p++) {
                char c = (char) tolower((unsigned char) *p);
                if (!isalnum((unsigned char) c))
                        c = '-';
                if (c == '-' && (k == 0 || bus[k - 1] == '-'))
                        continue;
                if (k >= sizeof(bus) - 1)
                        return set_err(reterr, "the Modbus bus name is too long");
                bus[k++] = c;
        }
        while (k > 0 && bus[k - 1] == '-')
                k--;
        bus[k] = 0;
        if (k == 0)
                return set_err(reterr, "the Modbus bus name has no letters or digits");
        char *id;
        if (asprintf(&id, "modbus-%s-%lu", bus, unit) < 0)
                return -ENOMEM;
        if (!dps_registration_id_is_valid(id)) {
                free(id);
                return set_err(reterr, "the Modbus id does not make a valid registration id");
        }
        *ret_id = id;
        return 0;
}

int sensor_id_normalize(const char *input, char **ret_id, const char **ret_protocol, const char **reterr) {
        char hex[17];
        const char *s = input, *kind = NULL;
        char *id;

        if (!input || strlen(input) > 256)
                return set_err(reterr, "a sensor id must be 1 to 256 characters");
        if (startswith(s, "ble:"))
                kind = "ble", s += 4;
        else if (startswith(s, "zigbee:"))
                kind = "zigbee", s += 7;
        else if (startswith(s, "modbus:"))
                kind = "modbus", s += 7;

        if ((!kind || streq(kind, "ble")) && parse_octets(s, 6, hex)) {
                if (asprintf(&id, "ble-%s", hex) < 0)
                        return -ENOMEM;
                *ret_id = id;
                *ret_protocol = "ble";
                return 0;
        }
        if ((!kind || streq(kind, "zigbee")) && parse_octets(s, 8, hex)) {
                if (asprintf(&id, "zigbee-%s", hex) < 0)
                        return -ENOMEM;
                *ret_id = id;
                *ret_protocol = "zigbee";
                return 0;
        }
        if (kind && streq(kind, "ble"))
                return set_err(reterr, "a BLE id must be a 6-octet MAC address such as AA:BB:CC:DD:EE:FF");
        if (kind && streq(kind, "zigbee"))
                return set_err(reterr, "a Zigbee id must be an EUI-64 such as 00:12:4B:00:01:02:03:04");
        if ((kind && streq(kind, "modbus")) || strchr(s, '@')) {
                int r = normalize_modbus(s, ret_id, reterr);
                if (r < 0)
                        return r;
                *ret_protocol = "modbus";
                return 0;
        }
        if (!dps_registration_id_is_valid(s))
                return set_err(reterr, "not a valid registration id (1 to 128 characters of A-Z a-z 0-9 . : _ -, "
                                       "starting and ending alphanumeric), a MAC, an EUI-64 or UNIT@BUS");
        id = strdup(s);
        if (!id)
                return -ENOMEM;
        *ret_id = id;
        *ret_protocol = NULL;
        return 0;
}

static void entry_done(SensorEntry *e) {
        free(e->id);
        for (size_t i = 0; i < e->n_options; i++) {
                free(e->keys[i]);
                free(e->values[i]);
        }
        free(e->keys);
        free(e->values);
}

void sensor_list_done(SensorList *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                entry_done(&l->entries[i]);
        free(l->entries);
        *l = (SensorList) {};
}

_printf_(2, 3) static int list_error(char **reterr, const char *fmt, ...) {
        va_list ap;
        if (reterr) {
                free(*reterr);
                va_start(ap, fmt);
                if (vasprintf(reterr, fmt, ap) < 0)
                        *reterr = NULL;
                va_end(ap);
        }
        return -EINVAL;
}

static bool option_key_valid(const char *k) {
        size_t l = strlen(k);
        if (l == 0 || l > SENSOR_OPTION_KEY_MAX || !isalpha((unsigned char) k[0]))
                return false;
        for (const char *p = k; *p; p++)
                if (!isalnum((unsigned char) *p) && *p != '_' && *p != '-' && *p != '.')
                        return false;
        return true;
}

static int entry_add_option(SensorEntry *e, const char *k, size_t klen, const char *v, size_t vlen) {
        if (e->n_options >= SENSOR_OPTIONS_MAX)
                return -E2BIG;
        char **nk = realloc(e->keys, (e->n_options + 1) * sizeof(char *));
        if (!nk)
                return -ENOMEM;
        e->keys = nk;
        char **nv = realloc(e->values, (e->n_options + 1) * sizeof(char *));
        if (!nv)
                return -ENOMEM;
        e->values = nv;
        char *ks = strndup(k, klen), *vs = strndup(v, vlen);
        if (!ks || !vs) {
                free(ks);
                free(vs);
                return -ENOMEM;
        }
        e->keys[e->n_options] = ks;
        e->values[e->n_options] = vs;
        e->n_options++;
        return 0;
}

static int list_push(SensorList *l, SensorEntry *e) {
        if (l->n >= SENSOR_FILE_ENTRIES_MAX)
                return -E2BIG;
        if ((l->n & (l->n - 1)) == 0) {         /* grow at powers of two */
                size_t cap = l->n ? l->n * 2 : 16;
                SensorEntry *n = realloc(l->entries, cap * sizeof(SensorEntry));
                if (!n)
                        return -ENOMEM;
                l->entries = n;
        }
        l->entries[l->n++] = *e;
        *e = (SensorEntry) {};
        return 0;
}

static int parse_json(const char *buf, size_t len, SensorList *l, char **reterr) {
        struct json_object *root = NULL;
        int r = json_parse_limited(buf, len, SENSOR_FILE_MAX, 8, &root);
        if (r < 0)
                return list_error(reterr, "not valid JSON (or deeper than 8 levels)");
        if (!json_object_is_type(root, json_type_array)) {
                json_object_put(root);
                return list_error(reterr, "a JSON sensor file must be an array");
        }
        size_t n = json_object_array_length(root);
        for (size_t i = 0; i < n; i++) {
                struct json_object *o = json_object_array_get_idx(root, i), *opts = NULL, *idv = NULL;
                SensorEntry e = {};
                const char *id;

                if (json_object_is_type(o, json_type_string))
                        id = json_object_get_string(o);
                else if (json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, "id", &idv) &&
                         json_object_is_type(idv, json_type_string)) {
                        id = json_object_get_string(idv);
                        json_object_object_get_ex(o, "options", &opts);
                        if (opts && !json_object_is_type(opts, json_type_object)) {
                                json_object_put(root);
                                return list_error(reterr, "entry %zu: \"options\" must be an object", i + 1);
                        }
                } else {
                        json_object_put(root);
                        return list_error(reterr, "entry %zu: must be a string or an object with a string \"id\"",
                                          i + 1);
                }
                if (isempty(id) || strlen(id) > 256) {
                        json_object_put(root);
                        return list_error(reterr, "entry %zu: the id must be 1 to 256 characters", i + 1);
                }
                e.id = strdup(id);
                r = e.id ? 0 : -ENOMEM;
                if (opts && r >= 0) {
                        json_object_object_foreach(opts, k, v) {
                                const char *vs;
                                if (!option_key_valid(k)) {
                                        r = list_error(reterr, "entry %zu: bad option name", i + 1);
                                        break;
                                }
                                if (json_object_is_type(v, json_type_string) || json_object_is_type(v, json_type_int) ||
                                    json_object_is_type(v, json_type_double) ||
                                    json_object_is_type(v, json_type_boolean))
                                        vs = json_object_get_string(v);
                                else {
                                        r = list_error(reterr, "entry %zu: option '%s' must be a string, number or boolean",
                                                       i + 1, k);
                                        break;
                                }
                                if (strlen(vs) > SENSOR_OPTION_VALUE_MAX) {
                                        r = list_error(reterr, "entry %zu: option '%s' is too long", i + 1, k);
                                        break;
                                }
                                r = entry_add_option(&e, k, strlen(k), vs, strlen(vs));
                                if (r == -E2BIG)
                                        r = list_error(reterr, "entry %zu: more than %d options", i + 1,
                                                       SENSOR_OPTIONS_MAX);
                                if (r < 0)
                                        break;
                        }
                }
                if (r >= 0) {
                        r = list_push(l, &e);
                        if (r == -E2BIG)
                                r = list_error(reterr, "more than %d sensors", SENSOR_FILE_ENTRIES_MAX);
                }
                if (r < 0) {
                        entry_done(&e);
                        json_object_put(root);
                        return r;
                }
        }
        json_object_put(root);
        return 0;
}

static const char *trim(const char *s, const char *end, const char **ret_end) {
        while (s < end && (*s == ' ' || *s == '\t'))
                s++;
        while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
                end--;
        *ret_end = end;
        return s;
}

static int parse_csv(const char *buf, size_t len, SensorList *l, char **reterr) {
        const char *p = buf, *end = buf + len;
        unsigned line = 0;
        bool seen_data = false;
        int r;

        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t) (end - p)) ?: end;
                const char *le, *ls = trim(p, eol, &le);
                line++;
                p = eol < end ? eol + 1 : end;
                if (ls == le || *ls == '#')
                        continue;
                if (memchr(ls, 0, (size_t) (le - ls)))
                        return list_error(reterr, "line %u: NUL byte", line);
                if (!seen_data) {
                        seen_data = true;
                        const char *c = memchr(ls, ',', (size_t) (le - ls)) ?: le, *he;
                        const char *hs = trim(ls, c, &he);
                        size_t hl = (size_t) (he - hs);
                        if ((hl == 2 && !memcmp(hs, "id", 2)) || (hl == 15 && !memcmp(hs, "registration_id", 15)) ||
                            (hl == 14 && !memcmp(hs, "registrationId", 14)))
                                continue;       /* header */
                }
                SensorEntry e = {};
                const char *f = ls;
                bool first = true;
                r = 0;
                while (f <= le && r >= 0) {
                        const char *comma = memchr(f, ',', (size_t) (le - f)) ?: le;
                        const char *fe, *fs = trim(f, comma, &fe);
                        size_t fl = (size_t) (fe - fs);
                        if (first) {
                                if (fl == 0 || fl > 256)
                                        r = list_error(reterr, "line %u: the id must be 1 to 256 characters", line);
                                else if ((e.id = strndup(fs, fl)) == NULL)
                                        r = -ENOMEM;
                                first = false;
                        } else if (fl > 0) {
                                const char *eq = memchr(fs, '=', fl);
                                _cleanup_free_ char *k = eq ? strndup(fs, (size_t) (eq - fs)) : NULL;
                                if (!eq)
                                        r = list_error(reterr, "line %u: options must be key=value", line);
                                else if (!k)
                                        r = -ENOMEM;
                                else if (!option_key_valid(k))
                                        r = list_error(reterr, "line %u: bad option name", line);
                                else if ((size_t) (fe - eq - 1) > SENSOR_OPTION_VALUE_MAX)
                                        r = list_error(reterr, "line %u: option value too long", line);
                                else {
                                        r = entry_add_option(&e, fs, (size_t) (eq - fs), eq + 1, (size_t) (fe - eq - 1));
                                        if (r == -E2BIG)
                                                r = list_error(reterr, "line %u: more than %d options", line,
                                                               SENSOR_OPTIONS_MAX);
                                }
                        }
                        f = comma + 1;
                }
                if (r >= 0) {
                        r = list_push(l, &e);
                        if (r == -E2BIG)
                                r = list_error(reterr, "more than %d sensors", SENSOR_FILE_ENTRIES_MAX);
                }
                if (r < 0) {
                        entry_done(&e);
                        return r;
                }
        }
        return 0;
}

int sensor_list_parse(const char *buf, size_t len, SensorList *ret, char **reterr) {
        SensorList l = {};
        size_t i = 0;
        int r;

        if (len > SENSOR_FILE_MAX)
                return list_error(reterr, "larger than %d bytes", SENSOR_FILE_MAX);
        while (i < len && strchr(" \t\r\n", buf[i]) && buf[i])
                i++;
        if (i < len && (buf[i] == '[' || buf[i] == '{'))
                r = parse_json(buf, len, &l, reterr);
        else
                r = parse_csv(buf, len, &l, reterr);
        if (r < 0) {
                sensor_list_done(&l);
                return r;
        }
        *ret = l;
        return 0;
}
