/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeprov/codec.h"
#include "edgeprov/dps.h"
#include "edgeprov/macro.h"

/* A rid is echoed byte for byte into the response topic, so it must be something that can
 * live in a topic's property bag: printable ASCII without the MQTT wildcards and without
 * the property separator. */
static bool rid_is_valid_n(const char *rid, size_t l) {
        if (l == 0 || l > DPS_RID_MAX)
                return false;
        for (size_t i = 0; i < l; i++) {
                unsigned char c = rid[i];
                if (c <= 0x20 || c >= 0x7f || c == '#' || c == '+' || c == '&')
                        return false;
        }
        return true;
}

/* Decoded operation ids: printable ASCII, no spaces. */
static bool operation_id_is_valid(const char *op) {
        size_t l = strlen(op);
        if (l == 0 || l > DPS_OPERATION_ID_MAX)
                return false;
        for (const unsigned char *i = (const unsigned char *) op; *i; i++)
                if (*i <= 0x20 || *i >= 0x7f)
                        return false;
        return true;
}

typedef struct QueryField {
        const char *key;
        bool case_insensitive;
        const char *value; /* points into the input */
        size_t value_len;
        bool found;
} QueryField;

/* Splits q (up to its NUL) into k=v pairs separated by '&'.  Known keys may appear at most
 * once; unknown keys are ignored; every segment must have the form k=v with a non-empty k. */
static int query_parse(const char *q, QueryField *fields, size_t n_fields) {
        if (!*q)
                return 0;

        for (const char *p = q;;) {
                size_t fl = strcspn(p, "&");
                const char *eq = memchr(p, '=', fl);
                if (!eq || eq == p)
                        return -EINVAL;

                size_t kl = eq - p;
                for (size_t i = 0; i < n_fields; i++) {
                        QueryField *f = fields + i;
                        if (kl != strlen(f->key))
                                continue;
                        if (f->case_insensitive ? strncasecmp(p, f->key, kl) != 0 : strncmp(p, f->key, kl) != 0)
                                continue;
                        if (f->found)
                                return -EINVAL;
                        f->found = true;
                        f->value = eq + 1;
                        f->value_len = fl - kl - 1;
                        break;
                }

                if (!p[fl])
                        break;
                p += fl + 1;
        }
        return 0;
}

void dps_request_topic_done(DpsRequestTopic *t) {
        if (!t)
                return;
        free(t->rid);
        free(t->operation_id);
        *t = (DpsRequestTopic) { .type = _DPS_REQUEST_TYPE_INVALID };
}

int dps_request_topic_parse(const char *topic, DpsRequestTopic *ret) {
        _cleanup_(dps_request_topic_done) DpsRequestTopic t = { .type = _DPS_REQUEST_TYPE_INVALID };
        const char *q;
        int r;

        if (!topic || !ret)
                return -EINVAL;
        if (strnlen(topic, DPS_TOPIC_MAX + 1) > DPS_TOPIC_MAX)
                return -E2BIG;

        if ((q = startswith(topic, DPS_REGISTER_TOPIC_PREFIX)))
                t.type = DPS_REQUEST_REGISTER;
        else if ((q = startswith(topic, DPS_POLL_TOPIC_PREFIX)))
                t.type = DPS_REQUEST_OPERATION_STATUS;
        else
                return -EINVAL;

        QueryField fields[] = {
                { .key = "$rid" },
                { .key = "operationId" },
        };
        r = query_parse(q, fields, ELEMENTSOF(fields));
        if (r < 0)
                return r;

        if (!fields[0].found || !rid_is_valid_n(fields[0].value, fields[0].value_len))
                return -EINVAL;
        t.rid = strndup(fields[0].value, fields[0].value_len);
        if (!t.rid)
                return -ENOMEM;

        if (t.type == DPS_REQUEST_OPERATION_STATUS) {
                if (!fields[1].found)
                        return -EINVAL;
                /* Python URL-quotes the operation id, the others send it raw. */
                r = url_decode(fields[1].value, fields[1].value_len, &t.operation_id);
                if (r < 0)
                        return r;
                if (!operation_id_is_valid(t.operation_id))
                        return -EINVAL;
        }
        /* An operationId on a register topic means nothing: ignored. */

        *ret = t;
        t = (DpsRequestTopic) {};
        return 0;
}

int dps_register_topic_format(const char *rid, char **ret) {
        char *s;

        if (!rid || !ret || !rid_is_valid_n(rid, strlen(rid)))
                return -EINVAL;

        if (asprintf(&s, DPS_REGISTER_TOPIC_PREFIX "$rid=%s", rid) < 0)
                return -ENOMEM;

        *ret = s;
        return 0;
}

int dps_poll_topic_format(const char *rid, const char *operation_id, char **ret) {
        _cleanup_free_ char *op = NULL, *s = NULL;
        int r;

        if (!rid || !operation_id || !ret || !rid_is_valid_n(rid, strlen(rid)) ||
            !operation_id_is_valid(operation_id))
                return -EINVAL;

        /* A no-op for the ids DPS (and our service) hands out: [A-Za-z0-9.-]. */
        r = url_encode(operation_id, /* lower= */ false, &op);
        if (r < 0)
                return r;

        if (asprintf(&s, DPS_POLL_TOPIC_PREFIX "$rid=%s&operationId=%s", rid, op) < 0) {
                s = NULL;
                return -ENOMEM;
        }
        if (strlen(s) > DPS_TOPIC_MAX)
                return -E2BIG;

        *ret = TAKE_PTR(s);
        return 0;
}

void dps_response_topic_done(DpsResponseTopic *t) {
        if (!t)
                return;
        free(t->rid);
        *t = (DpsResponseTopic) { .retry_after = -1 };
}

static int parse_seconds(const char *s, size_t l, int *ret) {
        long long v = 0;

        if (l == 0 || l > 10)
                return -EINVAL;
        for (size_t i = 0; i < l; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (s[i] - '0');
        }
        if (v > INT_MAX)
                return -EINVAL;
        *ret = (int) v;
        return 0;
}

int dps_response_topic_parse(const char *topic, DpsResponseTopic *ret) {
        _cleanup_(dps_response_topic_done) DpsResponseTopic t = { .retry_after = -1 };
        const char *p;
        int r;

        if (!topic || !ret)
                return -EINVAL;
        if (strnlen(topic, DPS_TOPIC_MAX + 1) > DPS_TOPIC_MAX)
                return -E2BIG;

        p = startswith(topic, DPS_RESPONSE_TOPIC_PREFIX);
        if (!p)
                return -EINVAL;

        /* exactly three digits, 100..599 */
        for (size_t i = 0; i < 3; i++)
                if (p[i] < '0' || p[i] > '9')
                        return -EINVAL;
        t.status = (unsigned) (p[0] - '0') * 100 + (unsigned) (p[1] - '0') * 10 + (unsigned) (p[2] - '0');
        if (t.status < 100 || t.status > 599)
                return -EINVAL;

        p = startswith(p + 3, "/?");
        if (!p)
                return -EINVAL;

        QueryField fields[] = {
                { .key = "$rid" },
                { .key = "retry-after", .case_insensitive = true },
        };
        r = query_parse(p, fields, ELEMENTSOF(fields));
        if (r < 0)
                return r;

        if (!fields[0].found || !rid_is_valid_n(fields[0].value, fields[0].value_len))
                return -EINVAL;
        if (fields[1].found) {
                r = parse_seconds(fields[1].value, fields[1].value_len, &t.retry_after);
                if (r < 0)
                        return r;
        }

        t.rid = strndup(fields[0].value, fields[0].value_len);
        if (!t.rid)
                return -ENOMEM;

        *ret = t;
        t = (DpsResponseTopic) {};
        return 0;
}

int dps_response_topic_format(unsigned status, const char *rid, int retry_after, char **ret) {
        char *s;
        int r;

        if (status < 100 || status > 599 || !rid || !ret || !rid_is_valid_n(rid, strlen(rid)))
                return -EINVAL;

        if (retry_after >= 0)
                r = asprintf(&s, DPS_RESPONSE_TOPIC_PREFIX "%u/?$rid=%s&retry-after=%d", status, rid, retry_after);
        else
                r = asprintf(&s, DPS_RESPONSE_TOPIC_PREFIX "%u/?$rid=%s", status, rid);
        if (r < 0)
                return -ENOMEM;

        *ret = s;
        return 0;
}
