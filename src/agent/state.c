/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/state.h"
#include "edgeprov/fileio.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"

void gateway_state_done(GatewayState *s) {
        if (!s)
                return;
        free(s->registration_id);
        free(s->device_id);
        free(s->assigned_hub);
        free(s->substatus);
        free(s->operation_id);
        free(s->attestation);
        free(s->fingerprint);
        free(s->endpoint);
        free(s->id_scope);
        free(s->tpm_key_slot);
        *s = (GatewayState) {};
}

bool gateway_state_is_committed(const GatewayState *s) {
        return s && !isempty(s->registration_id) && !isempty(s->device_id) && !isempty(s->assigned_hub);
}

static const struct {
        const char *name;
        size_t offset;
} string_fields[] = {
        { "registrationId", offsetof(GatewayState, registration_id) },
        { "deviceId", offsetof(GatewayState, device_id) },
        { "assignedHub", offsetof(GatewayState, assigned_hub) },
        { "substatus", offsetof(GatewayState, substatus) },
        { "operationId", offsetof(GatewayState, operation_id) },
        { "attestation", offsetof(GatewayState, attestation) },
        { "fingerprint", offsetof(GatewayState, fingerprint) },
        { "endpoint", offsetof(GatewayState, endpoint) },
        { "idScope", offsetof(GatewayState, id_scope) },
        { "tpmKeySlot", offsetof(GatewayState, tpm_key_slot) },
};

int gateway_state_parse(const char *buf, size_t len, GatewayState *ret) {
        _cleanup_json_ struct json_object *root = NULL;
        struct json_object *gw, *v;
        GatewayState s = {};
        int r;

        r = json_parse_limited(buf, len, STATE_FILE_MAX, 8, &root);
        if (r < 0)
                return -EBADMSG;
        if (!json_object_is_type(root, json_type_object))
                return -EBADMSG;
        if (!json_object_object_get_ex(root, "version", &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) != STATE_VERSION)
                return -EBADMSG;
        if (!json_object_object_get_ex(root, "gateway", &gw)) {
                *ret = s; /* a valid document without an assignment */
                return 0;
        }
        if (!json_object_is_type(gw, json_type_object))
                return -EBADMSG;

        for (size_t i = 0; i < ELEMENTSOF(string_fields); i++) {
                char *dup = NULL;
                r = json_dup_string(gw, string_fields[i].name, &dup);
                if (r < 0 || (dup && strlen(dup) > 4096)) {
                        free(dup);
                        gateway_state_done(&s);
                        return -EBADMSG;
                }
                *(char **) ((uint8_t *) &s + string_fields[i].offset) = dup;
        }
        if (json_object_object_get_ex(gw, "provisionedAt", &v)) {
                if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
                        gateway_state_done(&s);
                        return -EBADMSG;
                }
                s.provisioned_at = (uint64_t) json_object_get_int64(v);
        }
        /* half an assignment is no assignment */
        if ((s.registration_id || s.device_id || s.assigned_hub) && !gateway_state_is_committed(&s)) {
                gateway_state_done(&s);
                return -EBADMSG;
        }
        *ret = s;
        return 0;
}

int gateway_state_format(const GatewayState *s, char **ret) {
        _cleanup_json_ struct json_object *root = json_object_new_object();
        struct json_object *gw;
        char *text;

        if (!root)
                return -ENOMEM;
        if (json_object_object_add(root, "version", json_object_new_int(STATE_VERSION)) < 0)
                return -ENOMEM;
        if (gateway_state_is_committed(s)) {
                gw = json_object_new_object();
                if (!gw || json_object_object_add(root, "gateway", gw) < 0) {
                        json_object_put(gw);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < ELEMENTSOF(string_fields); i++) {
                        const char *v = *(char *const *) ((const uint8_t *) s + string_fields[i].offset);
                        if (v && json_object_object_add(gw, string_fields[i].name, json_object_new_string(v)) < 0)
                                return -ENOMEM;
                }
                if (json_object_object_add(gw, "provisionedAt", json_object_new_int64((int64_t) s->provisioned_at)) < 0)
                        return -ENOMEM;
        }
        text = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

int gateway_state_load(const char *dir, GatewayState *ret) {
        _cleanup_free_ char *path = NULL, *buf = NULL;
        size_t len;
        int r;

        if (asprintf(&path, "%s/%s", dir, STATE_FILE_NAME) < 0)
                return -ENOMEM;
        r = read_file_full(path, STATE_FILE_MAX, &buf, &len);
        if (r == -EFBIG)
                return -EBADMSG;
        if (r < 0)
                return r;
        return gateway_state_parse(buf, len, ret);
}

int gateway_state_save(const char *dir, const GatewayState *s) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        int r;

        r = gateway_state_format(s, &text);
        if (r < 0)
                return r;
        r = mkdir_p(dir, 0700);
        if (r < 0)
                return r;
        if (asprintf(&path, "%s/%s", dir, STATE_FILE_NAME) < 0)
                return -ENOMEM;
        /* text is small; add the trailing newline in place */
        size_t len = strlen(text);
        char *t2 = realloc(text, len + 2);
        if (!t2)
                return -ENOMEM;
        text = t2;
        text[len] = '\n';
        text[len + 1] = 0;
        return write_file_atomic(path, text, len + 1, 0600);
}
