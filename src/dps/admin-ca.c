/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dps/admin-ca.h"
#include "dps/attest-x509.h"
#include "edgeprov/codec.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"
#include "edgeprov/x509-util.h"

static void format_usec(uint64_t usec, char buf[static 32]) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;
        if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, 32, "-");
}

static const char *get_str(struct json_object *cmd, const char *key, size_t max) {
        struct json_object *v;
        if (!json_object_object_get_ex(cmd, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        const char *s = json_object_get_string(v);
        return isempty(s) || strlen(s) > max ? NULL : s;
}

static int add_info(struct json_object *o, const DpsCaInfo *i) {
        _cleanup_free_ char *pem = NULL;
        char c[32], u[32];

        if (x509_to_pem(i->cert, &pem) < 0)
                return -ENOMEM;
        format_usec(i->created_usec, c);
        format_usec(i->updated_usec, u);
        if (json_add_string(o, "name", i->name) < 0 ||
            json_add_string(o, "status", i->verified ? "Verified" : "Unverified") < 0 ||
            json_add(o, "isVerified", json_object_new_boolean(i->verified)) < 0 ||
            json_add_string(o, "subject", i->subject) < 0 || json_add_string(o, "thumbprint", i->thumbprint) < 0 ||
            json_add_string(o, "sha256Thumbprint", i->sha256) < 0 ||
            json_add_string(o, "notBefore", i->not_before) < 0 || json_add_string(o, "expiry", i->not_after) < 0 ||
            json_add_string(o, "created", c) < 0 || json_add_string(o, "updated", u) < 0 ||
            json_add(o, "verificationCodePending", json_object_new_boolean(i->code_pending)) < 0 ||
            json_add_string(o, "certificate", pem) < 0)
                return -ENOMEM;
        return 0;
}

static int add_info_object(struct json_object *data, const char *key, const DpsCaInfo *i) {
        struct json_object *o = json_object_new_object();
        if (!o || json_add(data, key, o) < 0)
                return -ENOMEM;
        return add_info(o, i);
}

/* "certificate": PEM text, or base64 of DER (a .cer file). */
static int get_cert(struct json_object *cmd, uint8_t **ret, size_t *ret_len) {
        const char *s = get_str(cmd, "certificate", X509_INPUT_MAX);
        if (!s)
                return -EINVAL;
        if (strstr(s, "-----BEGIN")) {
                *ret = (uint8_t *) strdup(s);
                if (!*ret)
                        return -ENOMEM;
                *ret_len = strlen(s);
                return 0;
        }
        int r = base64_decode(s, strlen(s), ret, ret_len);
        return r == -ENOMEM ? r : r < 0 ? -EINVAL : 0;
}

static int set_error(char **ret_error, const char *msg) {
        *ret_error = strdup(msg);
        return *ret_error ? 1 : -ENOMEM;
}

static int ca_command(DpsService *s, const char *name, struct json_object *cmd, struct json_object *data,
                      char **ret_error) {
        static const char *const commands[] = { "listCaCertificates",       "getCaCertificate",
                                                "addCaCertificate",         "generateVerificationCode",
                                                "verifyCaCertificate",      "deleteCaCertificate" };
        DpsCaStore *cas = dps_service_get_ca_store(s);
        _cleanup_free_ uint8_t *cert = NULL;
        _cleanup_free_ char *msg = NULL;
        size_t cert_len = 0;
        DpsCaInfo info;
        bool known = false;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (streq(name, commands[i]))
                        known = true;
        if (!known)
                return 0;
        if (!cas)
                return set_error(ret_error, "Internal error");

        if (streq(name, "listCaCertificates")) {
                struct json_object *a = json_object_new_array();
                if (json_add(data, "certificates", a) < 0)
                        return -ENOMEM;
                size_t n = dps_ca_count(cas);
                for (size_t i = 0; i < n; i++) {
                        struct json_object *o = json_object_new_object();
                        if (!o || json_object_array_add(a, o) < 0) {
                                json_object_put(o);
                                return -ENOMEM;
                        }
                        if (dps_ca_get(cas, i, &info) < 0 || add_info(o, &info) < 0)
                                return -ENOMEM;
                }
                return 1;
        }

        const char *ca = get_str(cmd, "name", DPS_CA_NAME_MAX);
        if (!ca)
                return set_error(ret_error, "Invalid/missing name");

        if (streq(name, "getCaCertificate")) {
                if (dps_ca_find(cas, ca, &info) < 0)
                        return set_error(ret_error, "Not found");
                return add_info_object(data, "certificate", &info) < 0 ? -ENOMEM : 1;
        }
        if (streq(name, "deleteCaCertificate")) {
                r = dps_ca_delete(cas, ca);
                if (r == -ENOENT)
                        return set_error(ret_error, "Not found");
                return r < 0 ? set_error(ret_error, "Internal error") : 1;
        }
        if (streq(name, "generateVerificationCode")) {
                char code[2 * DPS_CA_CODE_BYTES + 1], e[32];
                uint64_t expiry = 0;
                r = dps_ca_generate_code(cas, ca, code, &expiry);
                if (r == -ENOENT)
                        return set_error(ret_error, "Not found");
                if (r < 0)
                        return set_error(ret_error, "Internal error");
                format_usec(expiry, e);
                if (json_add_string(data, "verificationCode", code) < 0 ||
                    json_add_string(data, "verificationCodeExpiry", e) < 0 || dps_ca_find(cas, ca, &info) < 0 ||
                    add_info_object(data, "certificate", &info) < 0)
                        return -ENOMEM;
                return 1;
        }

        /* add and verify carry a certificate */
        r = get_cert(cmd, &cert, &cert_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return set_error(ret_error, "Invalid/missing certificate (PEM or base64 DER)");

        if (streq(name, "addCaCertificate")) {
                struct json_object *v = NULL;
                bool verified = json_object_object_get_ex(cmd, "verified", &v) &&
                                json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
                r = dps_ca_add(cas, ca, cert, cert_len, verified, &msg);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return set_error(ret_error, msg ?: "Internal error");
        } else {
                r = dps_ca_verify(cas, ca, cert, cert_len, &msg);
                if (r == -ENOMEM)
                        return r;
                if (r == -ENOENT)
                        return set_error(ret_error, "Not found");
                if (r < 0) {
                        if (asprintf(ret_error, "Verification failed: %s", msg ?: "internal error") < 0) {
                                *ret_error = NULL;
                                return -ENOMEM;
                        }
                        return 1;
                }
        }
        if (dps_ca_find(cas, ca, &info) < 0 || add_info_object(data, "certificate", &info) < 0)
                return -ENOMEM;
        return 1;
}

#define DEFINE_CA_HANDLER(func, command)                                                                  \
        static int func(DpsService *s, struct json_object *cmd, struct json_object *data, char **ret_error) { \
                int r = ca_command(s, command, cmd, data, ret_error);                                      \
                return r < 0 ? r : 0;                                                                      \
        }
DEFINE_CA_HANDLER(cmd_list_ca, "listCaCertificates")
DEFINE_CA_HANDLER(cmd_get_ca, "getCaCertificate")
DEFINE_CA_HANDLER(cmd_add_ca, "addCaCertificate")
DEFINE_CA_HANDLER(cmd_code_ca, "generateVerificationCode")
DEFINE_CA_HANDLER(cmd_verify_ca, "verifyCaCertificate")
DEFINE_CA_HANDLER(cmd_delete_ca, "deleteCaCertificate")

const DpsAdminCommand dps_admin_ca_commands[] = {
        { "listCaCertificates", cmd_list_ca },
        { "getCaCertificate", cmd_get_ca },
        { "addCaCertificate", cmd_add_ca },
        { "generateVerificationCode", cmd_code_ca },
        { "verifyCaCertificate", cmd_verify_ca },
        { "deleteCaCertificate", cmd_delete_ca },
        {}
};
