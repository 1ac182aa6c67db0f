/* SPDX-License-Identifier: MIT */
/* What both ends of the daemon ↔ worker socket use (worker.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "agent/worker.h"
#include "edgeprov/codec.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"

#ifndef PKGLIBEXECDIR
#define PKGLIBEXECDIR "/usr/libexec/edgeprov"
#endif

const char *worker_path(void) {
        const char *p = secure_getenv("EDGEPROV_WORKER");
        return p && *p ? p : PKGLIBEXECDIR "/edgeprov-worker";
}

int worker_recv(int fd, int flags, struct json_object **ret) {
        ssize_t n;

        /* the datagram's size first, so that no buffer of WORKER_MSG_MAX stays resident */
        n = recv(fd, NULL, 0, MSG_PEEK | MSG_TRUNC | flags);
        if (n < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
        if (n == 0) {
                char c;
                /* an empty datagram or EOF: consume it, tell them apart by what recv says */
                n = recv(fd, &c, 0, flags);
                if (n < 0)
                        return -errno;
                *ret = NULL;
                return 0;
        }
        if (n > WORKER_MSG_MAX) {
                char c;
                (void) recv(fd, &c, 1, flags); /* drop it */
                return -EBADMSG;
        }
        _cleanup_free_ char *buf = malloc((size_t) n);
        if (!buf)
                return -ENOMEM;
        ssize_t k = recv(fd, buf, (size_t) n, flags);
        if (k < 0)
                return -errno;
        struct json_object *o = NULL;
        int r = json_parse_limited(buf, (size_t) k, WORKER_MSG_MAX, 8, &o);
        explicit_bzero(buf, (size_t) k); /* may carry a token or a key */
        if (r < 0 || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return -EBADMSG;
        }
        *ret = o;
        return 1;
}

static const char *const secret_keys[] = { "password", "eauth", "oauth", "key", "mac", "macs", "keys" };

static void wipe_string(struct json_object *v) {
        if (json_object_is_type(v, json_type_string))
                explicit_bzero((char *) json_object_get_string(v), (size_t) json_object_get_string_len(v));
}

void worker_wipe_secrets(struct json_object *o) {
        struct json_object *v;

        if (!o)
                return;
        for (size_t i = 0; i < ELEMENTSOF(secret_keys); i++) {
                if (!json_object_object_get_ex(o, secret_keys[i], &v))
                        continue;
                if (json_object_is_type(v, json_type_array))
                        for (size_t j = 0; j < json_object_array_length(v); j++)
                                wipe_string(json_object_array_get_idx(v, j));
                else
                        wipe_string(v);
        }
}

int worker_send_fd(int fd, struct json_object *o) {
        size_t len = 0;
        const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
        int r = 0;

        if (!s)
                return -ENOMEM;
        if (len > WORKER_MSG_MAX)
                r = -E2BIG;
        else if (send(fd, s, len, MSG_NOSIGNAL) < 0)
                r = -errno;
        /* wipe the serialisation and the secret members before the object is released */
        explicit_bzero((char *) s, len);
        worker_wipe_secrets(o);
        return r;
}

int worker_json_add_b64(struct json_object *o, const char *key, const void *data, size_t len) {
        _cleanup_erase_ char *v = NULL;
        int r = base64_encode(data, len, &v);
        return r < 0 ? r : json_add_string(o, key, v);
}

int worker_json_get_b64(struct json_object *o, const char *key, size_t max, uint8_t **ret, size_t *ret_len) {
        const char *v = json_get_string(o, key);
        if (!v)
                return -EBADMSG;
        size_t n = strlen(v);
        if (n > (max + 2) / 3 * 4)
                return -E2BIG;
        return base64_decode(v, n, ret, ret_len);
}
