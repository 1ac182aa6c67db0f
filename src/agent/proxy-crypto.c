/* SPDX-License-Identifier: MIT */
/* The daemon's TPM (tpm.h), X.509 identity (x509-identity.h) and shared TLS context
 * (tls-client.h): the same interfaces as the real ones, which run in edgeprov-worker
 * (worker.h).  A Tpm here is a handle to one open in the worker; X509Identity and the TLS
 * context are descriptions the worker turns into an SSL_CTX for the exchanges that name them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/tls-client.h"
#include "agent/tpm.h"
#include "agent/worker.h"
#include "agent/x509-identity.h"
#include "edgeprov/codec.h"
#include "edgeprov/json-util.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"

struct Tpm {
        int64_t handle;
        unsigned generation;
};

/* A call on an open TPM: {"h": handle} plus what the caller added. */
static int tpm_call(Tpm *t, const char *method, struct json_object *args, struct json_object **ret) {
        if (!args)
                return -ENOMEM;
        if (t->generation != worker_generation()) {
                json_object_put(args);
                return -ECONNRESET; /* the worker that opened it is gone */
        }
        int r = json_add(args, "h", json_object_new_int64(t->handle));
        if (r < 0) {
                json_object_put(args);
                return r;
        }
        return worker_call(method, args, ret);
}

int tpm_open(const char *tcti, const char *endorsement_auth, const char *owner_auth, Tpm **ret) {
        _cleanup_json_ struct json_object *reply = NULL;
        struct json_object *a = json_object_new_object(), *v;
        int r;

        if (!a)
                return -ENOMEM;
        if (json_add_string(a, "tcti", tcti) < 0 || json_add_string(a, "eauth", endorsement_auth) < 0 ||
            json_add_string(a, "oauth", owner_auth) < 0) {
                json_object_put(a);
                return -ENOMEM;
        }
        worker_hold();
        r = worker_call("tpm.open", a, &reply);
        if (r >= 0 && !json_object_object_get_ex(reply, "h", &v))
                r = -EBADMSG;
        if (r < 0) {
                worker_release();
                return r;
        }
        Tpm *t = calloc(1, sizeof(*t));
        if (!t) {
                worker_release();
                return -ENOMEM;
        }
        t->handle = json_object_get_int64(v);
        t->generation = worker_generation();
        *ret = t;
        return 0;
}

Tpm *tpm_close(Tpm *t) {
        _cleanup_json_ struct json_object *reply = NULL;

        if (!t)
                return NULL;
        if (t->generation == worker_generation() && worker_running())
                (void) tpm_call(t, "tpm.close", json_object_new_object(), &reply);
        worker_release();
        free(t);
        return NULL;
}

static int get_public(Tpm *t, const char *method, uint8_t **ret_pub, size_t *ret_len) {
        _cleanup_json_ struct json_object *reply = NULL;
        int r = tpm_call(t, method, json_object_new_object(), &reply);
        return r < 0 ? r : worker_json_get_b64(reply, "data", WORKER_MSG_MAX, ret_pub, ret_len);
}

int tpm_get_ek(Tpm *t, uint8_t **ret_pub, size_t *ret_len) {
        return get_public(t, "tpm.get_ek", ret_pub, ret_len);
}

int tpm_get_srk(Tpm *t, uint8_t **ret_pub, size_t *ret_len) {
        return get_public(t, "tpm.get_srk", ret_pub, ret_len);
}

int tpm_check_ek_cert(Tpm *t, const uint8_t *ek_pub, size_t ek_len, const char *ca_file, char **ret_message) {
        _cleanup_json_ struct json_object *reply = NULL;
        struct json_object *a = json_object_new_object();
        int r;

        if (a && (worker_json_add_b64(a, "ek", ek_pub, ek_len) < 0 || json_add_string(a, "ca_file", ca_file) < 0)) {
                json_object_put(a);
                return -ENOMEM;
        }
        r = tpm_call(t, "tpm.check_ek_cert", a, &reply);
        if (r == -EKEYREJECTED || r >= 0) {
                /* the outcome's description comes with the reply, also for a mismatch */
                const char *m = reply ? json_get_string(reply, "message") : NULL;
                if (ret_message && m && !(*ret_message = strdup(m)))
                        return -ENOMEM;
        }
        return r;
}

int tpm_registration_id_from_ek(const uint8_t *ek_pub, size_t len, char **ret) {
        _cleanup_json_ struct json_object *reply = NULL;
        struct json_object *a = json_object_new_object();
        int r;

        if (a && worker_json_add_b64(a, "ek", ek_pub, len) < 0) {
                json_object_put(a);
                return -ENOMEM;
        }
        r = worker_call("tpm.regid", a, &reply);
        if (r < 0)
                return r;
        const char *id = json_get_string(reply, "registration_id");
        if (!id)
                return -EBADMSG;
        *ret = strdup(id);
        return *ret ? 0 : -ENOMEM;
}

int tpm_activate_blob(Tpm *t, const void *blob, size_t len, uint32_t slot) {
        _cleanup_json_ struct json_object *reply = NULL;
        struct json_object *a = json_object_new_object();

        if (a && (worker_json_add_b64(a, "blob", blob, len) < 0 || json_add(a, "slot", json_object_new_int64(slot)) < 0)) {
                json_object_put(a);
                return -ENOMEM;
        }
        return tpm_call(t, "tpm.activate_blob", a, &reply);
}

static int get_mac(struct json_object *o, uint8_t ret[32]) {
        _cleanup_free_ uint8_t *mac = NULL;
        size_t len = 0;
        const char *s = json_object_get_string(o);
        int r = s ? base64_decode(s, strlen(s), &mac, &len) : -EBADMSG;
        if (r >= 0 && len != 32)
                r = -EBADMSG;
        if (r >= 0)
                memcpy(ret, mac, 32);
        if (mac)
                explicit_bzero(mac, len);
        return r;
}

int tpm_hmac(Tpm *t, uint32_t slot, const void *data, size_t len, uint8_t ret[32]) {
        _cleanup_json_ struct json_object *reply = NULL;
        struct json_object *a = json_object_new_object(), *v;
        int r;

        if (a && (worker_json_add_b64(a, "data", data, len) < 0 || json_add(a, "slot", json_object_new_int64(slot)) < 0)) {
                json_object_put(a);
                return -ENOMEM;
        }
        r = tpm_call(t, "tpm.hmac", a, &reply);
        if (r < 0)
                return r;
        r = json_object_object_get_ex(reply, "mac", &v) ? get_mac(v, ret) : -EBADMSG;
        worker_wipe_secrets(reply);
        return r;
}

int tpm_hmac_with_blob(Tpm *t, const void *blob, size_t blob_len, const char *const *data, size_t n,
                       uint8_t (*ret)[32]) {
        _cleanup_json_ struct json_object *reply = NULL;
        struct json_object *a = json_object_new_object(), *list = json_object_new_array(), *v;
        int r;

        if (!a || !list || worker_json_add_b64(a, "blob", blob, blob_len) < 0) {
                json_object_put(a);
                json_object_put(list);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                if (json_object_array_add(list, json_object_new_string(data[i])) < 0) {
                        json_object_put(a);
                        json_object_put(list);
                        return -ENOMEM;
                }
        if (json_add(a, "data", list) < 0) {
                json_object_put(a);
                return -ENOMEM;
        }
        r = tpm_call(t, "tpm.hmac_with_blob", a, &reply);
        if (r < 0)
                return r;
        if (!json_object_object_get_ex(reply, "macs", &v) || json_object_array_length(v) != n)
                r = -EBADMSG;
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = get_mac(json_object_array_get_idx(v, i), ret[i]);
        worker_wipe_secrets(reply);
        return r;
}

int tpm_seal_hmac_key(Tpm *t, const void *key, size_t len, uint8_t **ret_blob, size_t *ret_len) {
        _cleanup_json_ struct json_object *reply = NULL;
        struct json_object *a = json_object_new_object();
        int r;

        if (a && worker_json_add_b64(a, "key", key, len) < 0) {
                json_object_put(a);
                return -ENOMEM;
        }
        r = tpm_call(t, "tpm.seal_hmac_key", a, &reply);
        return r < 0 ? r : worker_json_get_b64(reply, "blob", WORKER_MSG_MAX, ret_blob, ret_len);
}

/* ---- X.509 identity ---- */

struct X509Identity {
        WorkerTls tls;          /* first: DpsClientParams.ssl_ctx points here */
        char *registration_id, *thumbprint;
};

int x509_identity_load(const Config *c, X509Identity **ret, char **reterr_message) {
        _cleanup_json_ struct json_object *reply = NULL;
        struct json_object *desc = json_object_new_object();
        int r = 0;

        if (!desc)
                return -ENOMEM;
        /* what x509-identity.c reads from the configuration, for the worker to load the same */
        r |= json_add_string(desc, "kind", "x509");
        r |= json_add_string(desc, "path", c->path);
        r |= json_add_string(desc, "certificate_file", c->certificate_file);
        r |= json_add_string(desc, "key_file", c->key_file);
        r |= json_add_string(desc, "tpm_tcti", c->tpm_tcti);
        r |= json_add_string(desc, "registration_id", c->registration_id);
        r |= json_add_string(desc, "endpoint", c->endpoint);
        r |= json_add_string(desc, "ca_file", c->ca_file);
        if (r < 0) {
                json_object_put(desc);
                return -ENOMEM;
        }
        worker_hold();
        r = worker_call("x509.load", json_object_get(desc), &reply);
        worker_release();
        if (r < 0) {
                const char *m = reply ? json_get_string(reply, "error") : NULL;
                if (reterr_message)
                        *reterr_message = strdup(m ?: worker_last_error());
                json_object_put(desc);
                return r;
        }
        X509Identity *x = calloc(1, sizeof(*x));
        if (!x) {
                json_object_put(desc);
                return -ENOMEM;
        }
        x->tls = (WorkerTls) { .magic = WORKER_TLS_MAGIC, .desc = desc };
        x->registration_id = strdup(strempty(json_get_string(reply, "registration_id")));
        x->thumbprint = strdup(strempty(json_get_string(reply, "thumbprint")));
        if (!x->registration_id || !x->thumbprint) {
                x509_identity_free(x);
                return -ENOMEM;
        }
        *ret = x;
        return 0;
}

X509Identity *x509_identity_free(X509Identity *x) {
        if (!x)
                return NULL;
        json_object_put(x->tls.desc);
        free(x->registration_id);
        free(x->thumbprint);
        free(x);
        return NULL;
}

const char *x509_identity_registration_id(const X509Identity *x) {
        return x->registration_id;
}

const char *x509_identity_thumbprint(const X509Identity *x) {
        return x->thumbprint;
}

void *x509_identity_ssl_ctx(const X509Identity *x) {
        return (void *) &x->tls;
}


/* ---- the downstream sensors' shared TLS context ---- */

int tls_client_ctx_new(const char *ca_file, const char *endpoint, void **ret) {
        WorkerTls *t = calloc(1, sizeof(*t));
        struct json_object *desc = json_object_new_object();

        if (!t || !desc || json_add_string(desc, "kind", "shared") < 0 || json_add_string(desc, "ca_file", ca_file) < 0 ||
            json_add_string(desc, "endpoint", endpoint) < 0) {
                free(t);
                json_object_put(desc);
                return -ENOMEM;
        }
        *t = (WorkerTls) { .magic = WORKER_TLS_MAGIC, .desc = desc };
        *ret = t;
        return 0;
}

void *tls_client_ctx_free(void *ctx) {
        WorkerTls *t = ctx;
        if (t) {
                json_object_put(t->desc);
                free(t);
        }
        return NULL;
}
