/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <json-c/json.h>

#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_tokener *, json_tokener_free);

static bool char_is_json_ws(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int json_parse_limited(const void *buf, size_t len, size_t max_len, int max_depth, struct json_object **ret) {
        if (!ret || (!buf && len > 0) || max_depth <= 0)
                return -EINVAL;
        if (len > max_len || len >= INT_MAX)
                return -E2BIG;
        /* JSON text never contains a raw NUL; json-c would stop there. */
        if (len == 0 || memchr(buf, 0, len))
                return -EINVAL;

        /* json-c needs the terminating NUL to know that a trailing number is complete. */
        _cleanup_free_ char *copy = malloc(len + 1);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, buf, len);
        copy[len] = 0;

        /* Depth as json-c counts it: every nested value is a level, scalars included, so
         * [[1]] is 3 deep and [[]] is 2. */
        _cleanup_(json_tokener_freep) struct json_tokener *tok = json_tokener_new_ex(max_depth);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);

        _cleanup_json_ struct json_object *o = json_tokener_parse_ex(tok, copy, (int) len + 1);
        if (json_tokener_get_error(tok) != json_tokener_success)
                return -EINVAL;

        /* Only whitespace may follow the value. */
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
                if (!char_is_json_ws(copy[i]))
                        return -EINVAL;

        /* A literal top-level "null" yields success with o == NULL. */
        *ret = TAKE_PTR(o);
        return 0;
}

int64_t json_get_int64(struct json_object *o, const char *key, int64_t dflt) {
        struct json_object *v;

        if (!o || !key || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v) ||
            !json_object_is_type(v, json_type_int))
                return dflt;
        return json_object_get_int64(v);
}

const char *json_get_string(struct json_object *o, const char *key) {
        struct json_object *v;

        if (!o || !key || !json_object_is_type(o, json_type_object))
                return NULL;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

int json_dup_string(struct json_object *o, const char *key, char **ret) {
        struct json_object *v = NULL;

        if (!key || !ret)
                return -EINVAL;
        if (o && !json_object_is_type(o, json_type_object))
                return -EINVAL;

        /* Absent and JSON null are the same thing here. */
        if (!o || !json_object_object_get_ex(o, key, &v) || !v) {
                *ret = NULL;
                return 0;
        }
        if (!json_object_is_type(v, json_type_string))
                return -EINVAL;

        const char *s = json_object_get_string(v);
        int l = json_object_get_string_len(v);
        if (!s || l < 0 || strlen(s) != (size_t) l) /* embedded \u0000 */
                return -EINVAL;

        char *d = strdup(s);
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

int json_add(struct json_object *o, const char *key, struct json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int json_add_string(struct json_object *o, const char *key, const char *value) {
        return value ? json_add(o, key, json_object_new_string(value)) : 0;
}
