/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "edgeprov/codec.h"
#include "edgeprov/dps-rest.h"
#include "edgeprov/dps.h"
#include "edgeprov/macro.h"

static const char *const method_table[_DPS_REST_OP_MAX] = {
        [DPS_REST_REGISTER] = "PUT",
        [DPS_REST_OPERATION_STATUS] = "GET",
        [DPS_REST_DEVICE_STATUS] = "POST",
};

const char *dps_rest_op_method(DpsRestOp op) {
        return op >= 0 && op < _DPS_REST_OP_MAX ? method_table[op] : NULL;
}

void dps_rest_path_done(DpsRestPath *p) {
        if (!p)
                return;
        free(p->id_scope);
        free(p->registration_id);
        free(p->operation_id);
        *p = (DpsRestPath) { .op = _DPS_REST_OP_INVALID };
}

static bool segment_is_clean(const char *s) {
        for (; s && *s; s++)
                if (*s == '/' || (unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

int dps_rest_path_parse(const char *path, DpsRestPath *ret) {
        const char *seg[6];
        size_t seglen[6], n = 0;
        DpsRestPath p = { .op = _DPS_REST_OP_INVALID };
        int r;

        if (!path || !ret)
                return -EINVAL;
        size_t len = strnlen(path, DPS_REST_PATH_MAX + 1);
        if (len > DPS_REST_PATH_MAX)
                return -E2BIG;
        if (path[0] != '/' || strchr(path, '?') || strchr(path, '#'))
                return -EINVAL;

        /* split into at most 5 segments; empty segments (//, trailing /) are refused */
        const char *s = path + 1;
        for (;;) {
                const char *e = strchr(s, '/');
                size_t l = e ? (size_t) (e - s) : strlen(s);
                if (l == 0 || n == 5)
                        return -EINVAL;
                seg[n] = s;
                seglen[n] = l;
                n++;
                if (!e)
                        break;
                s = e + 1;
        }
        if (n < 3 || seglen[1] != strlen("registrations") || strncmp(seg[1], "registrations", seglen[1]) != 0)
                return -EINVAL;
        if (n == 3)
                p.op = DPS_REST_DEVICE_STATUS;
        else if (n == 4 && seglen[3] == 8 && strncmp(seg[3], "register", 8) == 0)
                p.op = DPS_REST_REGISTER;
        else if (n == 5 && seglen[3] == 10 && strncmp(seg[3], "operations", 10) == 0)
                p.op = DPS_REST_OPERATION_STATUS;
        else
                return -EINVAL;

        r = url_decode(seg[0], seglen[0], &p.id_scope);
        if (r >= 0)
                r = url_decode(seg[2], seglen[2], &p.registration_id);
        if (r >= 0 && p.op == DPS_REST_OPERATION_STATUS)
                r = url_decode(seg[4], seglen[4], &p.operation_id);
        if (r >= 0 && (isempty(p.id_scope) || isempty(p.registration_id) ||
                       (p.op == DPS_REST_OPERATION_STATUS && isempty(p.operation_id))))
                r = -EINVAL;
        /* a decoded '/' or control byte would make a different path than the one sent */
        if (r >= 0 && (!segment_is_clean(p.id_scope) || !segment_is_clean(p.registration_id) ||
                       !segment_is_clean(p.operation_id)))
                r = -EINVAL;
        if (r < 0) {
                dps_rest_path_done(&p);
                return r == -ENOMEM ? r : -EINVAL;
        }
        *ret = p;
        return 0;
}

int dps_rest_path_format(DpsRestOp op, const char *id_scope, const char *registration_id,
                         const char *operation_id, const char *api_version, char **ret) {
        _cleanup_free_ char *s = NULL, *id = NULL, *o = NULL, *v = NULL;
        char *p = NULL;
        int r;

        if (!id_scope || !registration_id || !api_version || !ret)
                return -EINVAL;
        if (op == DPS_REST_OPERATION_STATUS && isempty(operation_id))
                return -EINVAL;
        r = url_encode(id_scope, true, &s);
        if (r >= 0)
                r = url_encode(registration_id, true, &id);
        if (r >= 0)
                r = url_encode(api_version, true, &v);
        if (r >= 0 && op == DPS_REST_OPERATION_STATUS)
                r = url_encode(operation_id, true, &o);
        if (r < 0)
                return r;
        switch (op) {
        case DPS_REST_REGISTER:
                r = asprintf(&p, "/%s/registrations/%s/register?api-version=%s", s, id, v);
                break;
        case DPS_REST_OPERATION_STATUS:
                r = asprintf(&p, "/%s/registrations/%s/operations/%s?api-version=%s", s, id, o, v);
                break;
        case DPS_REST_DEVICE_STATUS:
                r = asprintf(&p, "/%s/registrations/%s?api-version=%s", s, id, v);
                break;
        default:
                return -EINVAL;
        }
        if (r < 0)
                return -ENOMEM;
        /* what dps_rest_path_parse() accepts back: the path part within DPS_REST_PATH_MAX */
        if (strcspn(p, "?") > DPS_REST_PATH_MAX || strlen(p) > DPS_REST_PATH_MAX + 256) {
                free(p);
                return -E2BIG;
        }
        *ret = p;
        return 0;
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

int dps_http_retry_after_parse(const char *value, size_t len) {
        long long v = 0;
        size_t i = 0;

        if (!value)
                return -EINVAL;
        while (len > 0 && is_blank(value[len - 1]))
                len--;
        while (i < len && is_blank(value[i]))
                i++;
        if (i == len || len - i > 18)
                return -EINVAL;
        for (; i < len; i++) {
                if (value[i] < '0' || value[i] > '9')
                        return -EINVAL;
                v = v * 10 + (value[i] - '0');
        }
        return (int) MIN(v, 86400LL);
}

int dps_http_header_parse(const char *line, size_t len, const char **ret_name, size_t *ret_name_len,
                          const char **ret_value, size_t *ret_value_len) {
        if (!line || !ret_name || !ret_name_len || !ret_value || !ret_value_len)
                return -EINVAL;
        if (len > DPS_HTTP_HEADER_LINE_MAX)
                return -EINVAL;
        /* strip the line end */
        if (len > 0 && line[len - 1] == '\n')
                len--;
        if (len > 0 && line[len - 1] == '\r')
                len--;
        if (len == 0)
                return 0;
        if (len >= 5 && strncmp(line, "HTTP/", 5) == 0)
                return 0;

        const char *colon = memchr(line, ':', len);
        if (!colon || colon == line)
                return -EINVAL;
        for (const char *c = line; c < colon; c++)
                if ((unsigned char) *c <= ' ' || (unsigned char) *c >= 0x7f)
                        return -EINVAL;
        const char *v = colon + 1, *end = line + len;
        for (const char *c = v; c < end; c++)
                if (*c == 0 || *c == '\r' || *c == '\n')
                        return -EINVAL;
        while (v < end && is_blank(*v))
                v++;
        while (end > v && is_blank(end[-1]))
                end--;
        *ret_name = line;
        *ret_name_len = (size_t) (colon - line);
        *ret_value = v;
        *ret_value_len = (size_t) (end - v);
        return 1;
}

bool dps_http_header_name_is(const char *name, size_t name_len, const char *want) {
        return name && want && strlen(want) == name_len && strncasecmp(name, want, name_len) == 0;
}
