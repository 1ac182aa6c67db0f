/* SPDX-License-Identifier: MIT */
/* edgeprov-worker: the half of the agent that needs OpenSSL, libmosquitto, libcurl and
 * tpm2-tss (worker.h).  Started by edgeprovd with its end of a socket pair as fd 3; serves
 * the daemon's requests until that socket closes, then exits.  Not meant to be run by hand. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/conf.h"
#include "agent/dps-client.h"
#include "agent/tls-client.h"
#include "agent/tpm.h"
#include "agent/worker.h"
#include "agent/x509-identity.h"
#include "edgeprov/codec.h"
#include "edgeprov/json-util.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"

#define MAX_TPMS 4
#define MAX_EXCHANGES 4096
#define MAX_HMAC_ITEMS 256

typedef struct Exchange {
        struct Exchange *prev, *next;
        int64_t id;
        DpsClient *client;
} Exchange;

static struct {
        sd_event *event;
        int fd;
        Exchange *exchanges;
        unsigned n_exchanges;
        Tpm *tpms[MAX_TPMS];
        /* the TLS contexts the exchanges name, built once each */
        void *shared_ctx;
        char *shared_desc;
        X509Identity *x509;
        char *x509_desc;
} s = { .fd = WORKER_FD };

static void send_msg(struct json_object *o) {
        int r = worker_send_fd(s.fd, o);
        if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                log_error_errno(r, "Cannot send to edgeprovd: %m");
        json_object_put(o);
}

/* ---- exchanges ---- */

static Exchange *exchange_find(int64_t id) {
        for (Exchange *x = s.exchanges; x; x = x->next)
                if (x->id == id)
                        return x;
        return NULL;
}

static void exchange_free(Exchange *x) {
        if (x->prev)
                x->prev->next = x->next;
        else
                s.exchanges = x->next;
        if (x->next)
                x->next->prev = x->prev;
        dps_client_free(x->client);
        s.n_exchanges--;
        free(x);
}

static void send_result(int64_t id, const DpsResult *res) {
        struct json_object *o = json_object_new_object();
        int r = 0;

        if (!o)
                return;
        r |= json_add_string(o, "ev", "result");
        r |= json_add(o, "x", json_object_new_int64(id));
        r |= json_add_string(o, "outcome", dps_outcome_to_string(res->outcome));
        r |= json_add(o, "status", json_object_new_int64(res->status));
        r |= json_add(o, "retry_after", json_object_new_int(res->retry_after));
        r |= json_add_string(o, "operation_id", res->operation_id);
        r |= json_add_string(o, "registration_id", res->registration_id);
        r |= json_add_string(o, "assigned_hub", res->assigned_hub);
        r |= json_add_string(o, "device_id", res->device_id);
        r |= json_add_string(o, "substatus", res->substatus);
        r |= json_add_string(o, "dps_status", res->dps_status);
        r |= json_add(o, "error_code", json_object_new_int64(res->error_code));
        r |= json_add_string(o, "error_message", res->error_message);
        r |= json_add_string(o, "tracking_id", res->tracking_id);
        r |= json_add_string(o, "authentication_key", res->authentication_key);
        if (r < 0) {
                /* still end the exchange for the daemon */
                json_object_put(o);
                o = json_object_new_object();
                if (!o || json_add_string(o, "ev", "result") < 0 || json_add(o, "x", json_object_new_int64(id)) < 0 ||
                    json_add_string(o, "outcome", "transient") < 0 ||
                    json_add_string(o, "error_message", "out of memory in the exchange helper") < 0) {
                        json_object_put(o);
                        return;
                }
        }
        send_msg(o);
}

static void on_result(DpsClient *c, const DpsResult *res, void *userdata) {
        Exchange *x = userdata;
        send_result(x->id, res);
        exchange_free(x); /* frees c: the result is sent, nothing refers to it any more */
}

static void on_accepted(DpsClient *c, const char *operation_id, int retry_after, void *userdata) {
        Exchange *x = userdata;
        struct json_object *o = json_object_new_object();

        if (!o || json_add_string(o, "ev", "accepted") < 0 || json_add(o, "x", json_object_new_int64(x->id)) < 0 ||
            json_add_string(o, "operation_id", operation_id) < 0 ||
            json_add(o, "retry_after", json_object_new_int(retry_after)) < 0) {
                json_object_put(o);
                return;
        }
        send_msg(o);
}

static int tls_config(struct json_object *desc, Config *c) {
        static const struct {
                const char *key;
                size_t offset;
        } fields[] = {
                { "path", offsetof(Config, path) },
                { "certificate_file", offsetof(Config, certificate_file) },
                { "key_file", offsetof(Config, key_file) },
                { "tpm_tcti", offsetof(Config, tpm_tcti) },
                { "registration_id", offsetof(Config, registration_id) },
                { "endpoint", offsetof(Config, endpoint) },
                { "ca_file", offsetof(Config, ca_file) },
        };
        conf_init(c);
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                int r = json_dup_string(desc, fields[i].key, (char **) ((uint8_t *) c + fields[i].offset));
                if (r < 0)
                        return r;
        }
        c->attestation = ATTESTATION_X509;
        return 0;
}

static int x509_load(struct json_object *desc, char **reterr) {
        const char *key = json_object_to_json_string_ext(desc, JSON_C_TO_STRING_PLAIN);
        Config c;
        int r;

        if (!key)
                return -ENOMEM;
        if (s.x509 && streq_ptr(key, s.x509_desc))
                return 0;
        s.x509 = x509_identity_free(s.x509);
        free(s.x509_desc);
        s.x509_desc = strdup(key);
        if (!s.x509_desc)
                return -ENOMEM;
        r = tls_config(desc, &c);
        if (r >= 0)
                r = x509_identity_load(&c, &s.x509, reterr);
        conf_done(&c);
        return r;
}

/* The SSL_CTX an exchange names: none (libmosquitto's own), the X.509 identity, or the context
 * shared by the downstream sensors. */
static int exchange_tls(struct json_object *m, void **ret, char **reterr) {
        struct json_object *desc;

        *ret = NULL;
        if (!json_object_object_get_ex(m, "tls", &desc))
                return 0;
        const char *kind = json_get_string(desc, "kind");
        if (streq_ptr(kind, "x509")) {
                int r = x509_load(desc, reterr);
                if (r < 0)
                        return r;
                *ret = x509_identity_ssl_ctx(s.x509);
                return 0;
        }
        if (!streq_ptr(kind, "shared"))
                return -EINVAL;
        const char *key = json_object_to_json_string_ext(desc, JSON_C_TO_STRING_PLAIN);
        if (!key)
                return -ENOMEM;
        if (!s.shared_ctx || !streq_ptr(key, s.shared_desc)) {
                s.shared_ctx = tls_client_ctx_free(s.shared_ctx);
                free(s.shared_desc);
                s.shared_desc = strdup(key);
                if (!s.shared_desc)
                        return -ENOMEM;
                int r = tls_client_ctx_new(json_get_string(desc, "ca_file"), json_get_string(desc, "endpoint"),
                                           &s.shared_ctx);
                if (r < 0)
                        return r;
        }
        *ret = s.shared_ctx;
        return 0;
}

static void handle_exchange(struct json_object *m) {
        _cleanup_free_ char *tls_error = NULL;
        int64_t id = json_get_int64(m, "x", 0);
        const char *transport = json_get_string(m, "transport");
        void *ctx = NULL;
        char msg[512];
        int r;

        if (id <= 0 || exchange_find(id))
                return;
        DpsResult fail = { .outcome = DPS_OUTCOME_TRANSIENT, .retry_after = -1, .error_message = msg };
        if (s.n_exchanges >= MAX_EXCHANGES) {
                snprintf(msg, sizeof(msg), "too many registrations at once in the exchange helper");
                send_result(id, &fail);
                return;
        }
        r = exchange_tls(m, &ctx, &tls_error);
        if (r < 0) {
                snprintf(msg, sizeof(msg), "%s", tls_error ?: strerror(-r));
                send_result(id, &fail);
                return;
        }
        DpsClientParams p = {
                .host = json_get_string(m, "host"),
                .port = (int) json_get_int64(m, "port", 0),
                .ca_file = json_get_string(m, "ca_file"),
                .id_scope = json_get_string(m, "id_scope"),
                .registration_id = json_get_string(m, "registration_id"),
                .api_version = json_get_string(m, "api_version"),
                .password = json_get_string(m, "password"),
                .payload_json = json_get_string(m, "payload_json"),
                .tpm_ek_b64 = json_get_string(m, "tpm_ek_b64"),
                .tpm_srk_b64 = json_get_string(m, "tpm_srk_b64"),
                .ssl_ctx = ctx,
                .operation_id = json_get_string(m, "operation_id"),
                .request_timeout_usec = (uint64_t) json_get_int64(m, "request_timeout_usec", 0),
                .transport = transport ? dps_transport_from_string(transport) : DPS_TRANSPORT_MQTT,
        };
        if (p.transport < 0) {
                snprintf(msg, sizeof(msg), "unknown transport '%s'", transport);
                send_result(id, &fail);
                return;
        }
        Exchange *x = calloc(1, sizeof(*x));
        if (!x) {
                snprintf(msg, sizeof(msg), "out of memory in the exchange helper");
                send_result(id, &fail);
                return;
        }
        x->id = id;
        r = dps_client_new(s.event, &p, on_result, x, &x->client);
        if (r < 0) {
                free(x);
                snprintf(msg, sizeof(msg), "cannot create the DPS client: %s", strerror(-r));
                send_result(id, &fail);
                return;
        }
        x->next = s.exchanges;
        if (s.exchanges)
                s.exchanges->prev = x;
        s.exchanges = x;
        s.n_exchanges++;
        dps_client_set_accepted_callback(x->client, on_accepted);
        r = dps_client_start(x->client);
        if (r < 0) {
                exchange_free(x);
                snprintf(msg, sizeof(msg), "cannot start the registration: %s", strerror(-r));
                send_result(id, &fail);
        }
}

/* ---- synchronous calls: TPM and X.509 ---- */

static Tpm *tpm_from(struct json_object *m, int *ret_index) {
        int64_t h = json_get_int64(m, "h", -1);
        if (h < 0 || h >= MAX_TPMS || !s.tpms[h])
                return NULL;
        if (ret_index)
                *ret_index = (int) h;
        return s.tpms[h];
}

static int call_tpm(const char *method, struct json_object *m, struct json_object *reply) {
        _cleanup_free_ uint8_t *data = NULL, *blob = NULL;
        size_t len = 0, blob_len = 0;
        int index = -1, r;

        if (streq(method, "tpm.open")) {
                for (int i = 0; i < MAX_TPMS; i++)
                        if (!s.tpms[i]) {
                                r = tpm_open(json_get_string(m, "tcti") ?: TPM_TCTI_DEFAULT, json_get_string(m, "eauth"),
                                             json_get_string(m, "oauth"), &s.tpms[i]);
                                return r < 0 ? r : json_add(reply, "h", json_object_new_int(i));
                        }
                return -EMFILE;
        }
        if (streq(method, "tpm.regid")) {
                _cleanup_free_ char *id = NULL;
                r = worker_json_get_b64(m, "ek", 4096, &data, &len);
                if (r >= 0)
                        r = tpm_registration_id_from_ek(data, len, &id);
                return r < 0 ? r : json_add_string(reply, "registration_id", id);
        }
        Tpm *t = tpm_from(m, &index);
        if (!t)
                return -EBADF;
        if (streq(method, "tpm.close")) {
                s.tpms[index] = tpm_close(t);
                return 0;
        }
        if (streq(method, "tpm.get_ek") || streq(method, "tpm.get_srk")) {
                r = streq(method, "tpm.get_ek") ? tpm_get_ek(t, &data, &len) : tpm_get_srk(t, &data, &len);
                return r < 0 ? r : worker_json_add_b64(reply, "data", data, len);
        }
        if (streq(method, "tpm.check_ek_cert")) {
                _cleanup_free_ char *message = NULL;
                r = worker_json_get_b64(m, "ek", 4096, &data, &len);
                if (r < 0)
                        return r;
                r = tpm_check_ek_cert(t, data, len, json_get_string(m, "ca_file"), &message);
                if (json_add_string(reply, "message", message) < 0)
                        return -ENOMEM;
                return r;
        }
        if (streq(method, "tpm.activate_blob")) {
                r = worker_json_get_b64(m, "blob", 8192, &blob, &blob_len);
                return r < 0 ? r : tpm_activate_blob(t, blob, blob_len, (uint32_t) json_get_int64(m, "slot", 0));
        }
        if (streq(method, "tpm.hmac")) {
                uint8_t mac[32];
                r = worker_json_get_b64(m, "data", 1024, &data, &len);
                if (r >= 0)
                        r = tpm_hmac(t, (uint32_t) json_get_int64(m, "slot", 0), data, len, mac);
                if (r >= 0)
                        r = worker_json_add_b64(reply, "mac", mac, sizeof(mac));
                explicit_bzero(mac, sizeof(mac));
                return r;
        }
        if (streq(method, "tpm.seal_hmac_key")) {
                r = worker_json_get_b64(m, "key", 1024, &data, &len);
                if (r >= 0)
                        r = tpm_seal_hmac_key(t, data, len, &blob, &blob_len);
                if (data)
                        explicit_bzero(data, len);
                return r < 0 ? r : worker_json_add_b64(reply, "blob", blob, blob_len);
        }
        if (streq(method, "tpm.hmac_with_blob")) {
                struct json_object *list, *macs;
                r = worker_json_get_b64(m, "blob", 8192, &blob, &blob_len);
                if (r < 0)
                        return r;
                if (!json_object_object_get_ex(m, "data", &list) || !json_object_is_type(list, json_type_array))
                        return -EINVAL;
                size_t n = json_object_array_length(list);
                if (n == 0 || n > MAX_HMAC_ITEMS)
                        return -E2BIG;
                const char *items[MAX_HMAC_ITEMS];
                for (size_t i = 0; i < n; i++)
                        if (!(items[i] = json_object_get_string(json_object_array_get_idx(list, i))))
                                return -EINVAL;
                uint8_t (*out)[32] = calloc(n, 32);
                if (!out)
                        return -ENOMEM;
                r = tpm_hmac_with_blob(t, blob, blob_len, items, n, out);
                macs = json_object_new_array();
                for (size_t i = 0; r >= 0 && i < n; i++) {
                        _cleanup_erase_ char *v = NULL;
                        r = base64_encode(out[i], 32, &v);
                        if (r >= 0 && (!macs || json_object_array_add(macs, json_object_new_string(v)) < 0))
                                r = -ENOMEM;
                }
                explicit_bzero(out, n * 32);
                free(out);
                if (r < 0) {
                        json_object_put(macs);
                        return r;
                }
                return json_add(reply, "macs", macs);
        }
        return -EOPNOTSUPP;
}

static int call_x509(struct json_object *m, struct json_object *reply) {
        _cleanup_free_ char *error = NULL;
        int r = x509_load(m, &error);
        if (r < 0) {
                (void) json_add_string(reply, "error", error);
                return r;
        }
        if (json_add_string(reply, "registration_id", x509_identity_registration_id(s.x509)) < 0 ||
            json_add_string(reply, "thumbprint", x509_identity_thumbprint(s.x509)) < 0)
                return -ENOMEM;
        return 0;
}

static void handle_call(const char *method, struct json_object *m) {
        struct json_object *reply = json_object_new_object();
        int r;

        if (!reply)
                return;
        if (startswith(method, "tpm."))
                r = call_tpm(method, m, reply);
        else if (streq(method, "x509.load"))
                r = call_x509(m, reply);
        else
                r = -EOPNOTSUPP;
        struct json_object *id;
        if (json_object_object_get_ex(m, "id", &id))
                (void) json_add(reply, "id", json_object_get(id));
        (void) json_add(reply, "r", json_object_new_int(r < 0 ? r : 0));
        send_msg(reply);
}

static void handle(struct json_object *m) {
        const char *method = json_get_string(m, "m");

        if (!method)
                log_warning("Ignoring a message from edgeprovd without a method.");
        else if (streq(method, "exchange"))
                handle_exchange(m);
        else if (streq(method, "cancel")) {
                Exchange *x = exchange_find(json_get_int64(m, "x", 0));
                if (x)
                        exchange_free(x);
        } else
                handle_call(method, m);
}

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        for (;;) {
                struct json_object *m = NULL;
                int r = worker_recv(fd, MSG_DONTWAIT, &m);
                if (r == -EAGAIN)
                        return 0;
                if (r == -EBADMSG) {
                        log_error("Refusing an oversized or malformed message from edgeprovd.");
                        continue;
                }
                if (r <= 0)
                        /* edgeprovd closed its end (or is gone): nothing left to do */
                        return sd_event_exit(s.event, 0);
                handle(m);
                worker_wipe_secrets(m);
                json_object_put(m);
        }
}

int main(int argc, char *argv[]) {
        struct stat st;
        int r;

        log_setup("edgeprov-worker");
        if (argc > 1 || fstat(WORKER_FD, &st) < 0 || !S_ISSOCK(st.st_mode)) {
                fprintf(stderr, "edgeprov-worker is started by edgeprovd (it does the TLS, TPM and X.509 work "
                                "of the agent); it is not meant to be run by hand.\n");
                return 2;
        }
        /* The daemon ends us by closing the socket, and a daemon that dies closes it too.  A stop
         * of the unit signals every process of it at once: SIGTERM is ignored here, so that the
         * daemon, not the signal, decides when its exchanges end (and a stop logs no "helper
         * died").  Should the daemon vanish while we are stuck in a call, SIGKILL. */
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
                return 0; /* edgeprovd is already gone */
        (void) signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&s.event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate the event loop: %m"), 1;
        (void) signal(SIGTERM, SIG_IGN);
        (void) signal(SIGINT, SIG_IGN);
        r = sd_event_add_io(s.event, NULL, WORKER_FD, EPOLLIN, on_io, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to watch edgeprovd's socket: %m"), 1;
        r = sd_event_loop(s.event);

        while (s.exchanges)
                exchange_free(s.exchanges);
        for (int i = 0; i < MAX_TPMS; i++)
                s.tpms[i] = tpm_close(s.tpms[i]);
        s.shared_ctx = tls_client_ctx_free(s.shared_ctx);
        s.x509 = x509_identity_free(s.x509);
        free(s.shared_desc);
        free(s.x509_desc);
        s.event = sd_event_unref(s.event);
        return r < 0 ? 1 : 0;
}
