/* SPDX-License-Identifier: MIT */
/* edgeprov_dps: the local provisioning service as a mosquitto 2.0 plugin (plugin API v5).
 *
 *   plugin /usr/lib/.../edgeprov/edgeprov_dps.so
 *   plugin_opt_data_file /var/lib/edgeprov-dps/data.json   (required)
 *   plugin_opt_id_scope 0ne00000A0A                         (optional, overrides the file's)
 *   plugin_opt_retry_after 3                                (seconds, 1..300)
 *   plugin_opt_admin_username dps-admin                      (optional: the admin API identity)
 *   plugin_opt_admin_password_file /etc/edgeprov/dps-admin.password
 *                          (the admin's password; the first line of the file)
 *   plugin_opt_registrations_per_minute 1000                (0, the default: no limit; 429 beyond)
 *   plugin_opt_webhook_timeout 10                           (seconds a custom allocation webhook may take,
 *                          1..60; default 10)
 *   plugin_opt_webhook_cafile /etc/ssl/certs/webhook-ca.pem  (CA of https webhooks; default: the system's)
 *   plugin_opt_latency_probe_interval 30                    (seconds between TCP connect probes of the
 *                          hubs' probeAddress for geoLatency, 1..3600; default 30)
 *   plugin_opt_latency_probe_timeout 3                      (seconds a probe may take, 1..60; default 3)
 *   plugin_opt_operation_lifetime 600                       (seconds an operation id can be polled,
 *                          1..86400; default 600)
 *   plugin_opt_registrations_db /var/lib/edgeprov-dps/registrations.db
 *                          (optional: durable registration records, SQLite WAL; see store.h)
 *   plugin_opt_clock_offset -7200                            (tests only: seconds the service's
 *                          clock runs ahead (or behind, negative) of the system clock)
 *
 * Connections whose username is a DPS username ({scope}/registrations/{id}/api-version=...)
 * are ours.  They are accepted even with a bad SAS token, so that the device gets a clear 401
 * on its first request; they are refused at CONNECT (not authorised) only when the client id
 * is not the registration id or the ID scope is not the one served here.  Every other username
 * (or none) is left to the broker and other plugins (MOSQ_ERR_PLUGIN_DEFER).
 *
 * Our clients may only publish to $dps/registrations/ (not under res/) and subscribe to
 * $dps/registrations/res/...; other clients may not touch $dps/ at all.  Requests are handed to
 * the core (service.c), the reply is published to the requesting client id only, and the
 * request itself is dropped (MOSQ_ERR_ACL_DENIED), so nothing is ever routed to subscribers.
 *
 * The data file is read again when it changes (checked on DPS connections, at most once a
 * second) and on SIGHUP; a broken file is logged and the previous data stays in use.
 *
 * Must be loaded with per_listener_settings false (the default) so that one instance serves
 * every listener.  MOSQ_EVT_TICK drives the custom allocation webhooks (libcurl multi, never
 * blocking): mosquitto 2.0.11 calls it once per main-loop pass, i.e. after every batch of socket
 * events and at least every 100 ms (its epoll wait times out after 100 ms). */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "dps/admin.h"
#include "dps/service.h"
#include "edgeprov/codec.h"
#include "edgeprov/dps.h"
#include "edgeprov/fileio.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"

#define DPS_TOPIC_PREFIX "$dps/"
#define DPS_REQUEST_NAMESPACE "$dps/registrations/"

#define ADMIN_CONNECTIONS_MAX 16

typedef struct Plugin {
        mosquitto_plugin_id_t *id;
        DpsService *service;
        char *admin_username;
        char *admin_password;      /* wiped on free */
        const void *admins[ADMIN_CONNECTIONS_MAX]; /* connections authenticated as the admin */
        int64_t clock_offset_usec; /* plugin_opt_clock_offset: tests of a far-off clock */
} Plugin;

static uint64_t plugin_clock(void *userdata) {
        const Plugin *p = userdata;
        struct timespec ts;
        int64_t t;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        t = (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + p->clock_offset_usec;
        return t < 0 ? 0 : (uint64_t) t;
}

static bool is_admin(const Plugin *p, const void *client) {
        for (size_t i = 0; i < ADMIN_CONNECTIONS_MAX; i++)
                if (client && p->admins[i] == client)
                        return true;
        return false;
}

static void admin_forget(Plugin *p, const void *client) {
        for (size_t i = 0; i < ADMIN_CONNECTIONS_MAX; i++)
                if (p->admins[i] == client)
                        p->admins[i] = NULL;
}

/* The admin identity: username and password (constant-time compare); at most
 * ADMIN_CONNECTIONS_MAX admin connections at a time. */
static int admin_auth(Plugin *p, const void *client, const char *password) {
        admin_forget(p, client);
        if (!p->admin_password || !password || strlen(password) != strlen(p->admin_password) ||
            CRYPTO_memcmp(password, p->admin_password, strlen(password)) != 0) {
                log_warning("Admin connection refused: wrong password.");
                return MOSQ_ERR_AUTH;
        }
        for (size_t i = 0; i < ADMIN_CONNECTIONS_MAX; i++)
                if (!p->admins[i]) {
                        p->admins[i] = client;
                        return MOSQ_ERR_SUCCESS;
                }
        log_warning("Admin connection refused: %d admin connections already.", ADMIN_CONNECTIONS_MAX);
        return MOSQ_ERR_AUTH;
}

/* The broker loads one instance; the log sink has no userdata, hence no state is needed there. */
static void log_to_mosquitto(int level, const char *message) {
        int l;

        if (level <= LOG_ERR)
                l = MOSQ_LOG_ERR;
        else if (level == LOG_WARNING)
                l = MOSQ_LOG_WARNING;
        else if (level == LOG_NOTICE)
                l = MOSQ_LOG_NOTICE;
        else if (level == LOG_INFO)
                l = MOSQ_LOG_INFO;
        else
                l = MOSQ_LOG_DEBUG;
        mosquitto_log_printf(l, "edgeprov-dps: %s", message);
}

static bool topic_is_dps(const char *topic) {
        return topic && startswith(topic, DPS_TOPIC_PREFIX);
}

static int on_basic_auth(int event, void *event_data, void *userdata) {
        struct mosquitto_evt_basic_auth *ed = event_data;
        Plugin *p = userdata;
        int r;

        if (!ed->username)
                return MOSQ_ERR_PLUGIN_DEFER;
        if (p->admin_username && streq(ed->username, p->admin_username))
                return admin_auth(p, ed->client, ed->password);

        const char *password = ed->password;
        /* X.509 (issue 6): on a listener with require_certificate, mosquitto has verified the
         * chain against its cafile and gives us the leaf; the service builds the chain again from
         * its CA certificates and the groups' signing certificates (attest-x509.c). */
        STACK_OF(X509) *chain = NULL;
        X509 *leaf = mosquitto_client_certificate(ed->client);
        if (leaf && (!(chain = sk_X509_new_null()) || !sk_X509_push(chain, leaf))) {
                X509_free(leaf);
                sk_X509_free(chain);
                return MOSQ_ERR_NOMEM;
        }
        r = dps_service_connect_x509(p->service, ed->client, mosquitto_client_id(ed->client), ed->username, password,
                                     password ? strlen(password) : 0, chain, NULL);
        if (r < 0) {
                log_error_errno(r, "Failed to set up the DPS connection: %m");
                return MOSQ_ERR_AUTH;
        }
        switch ((DpsConnectResult) r) {
        case DPS_CONNECT_ACCEPTED:
                return MOSQ_ERR_SUCCESS;
        case DPS_CONNECT_REJECTED:
                return MOSQ_ERR_AUTH;
        case DPS_CONNECT_NOT_OURS:
        case _DPS_CONNECT_RESULT_MAX:
                break;
        }
        return MOSQ_ERR_PLUGIN_DEFER;
}

static bool filter_is_response(const char *topic) {
        return topic && startswith(topic, DPS_RESPONSE_TOPIC_PREFIX);
}

static int on_acl_check(int event, void *event_data, void *userdata) {
        struct mosquitto_evt_acl_check *ed = event_data;
        Plugin *p = userdata;

        if (ed->topic && (streq(ed->topic, DPS_ADMIN_TOPIC) || streq(ed->topic, DPS_ADMIN_RESPONSE_TOPIC)))
                /* the admin API: requests and (targeted) responses, for the admin only */
                return is_admin(p, ed->client) && ed->access != MOSQ_ACL_READ ? MOSQ_ERR_SUCCESS
                                                                                 : MOSQ_ERR_ACL_DENIED;
        if (is_admin(p, ed->client))
                return MOSQ_ERR_ACL_DENIED; /* the admin identity is for the admin API only */

        if (!dps_service_get_client(p->service, ed->client))
                /* Not ours: keep everybody else away from $dps/ entirely, decide nothing else. */
                return topic_is_dps(ed->topic) ? MOSQ_ERR_ACL_DENIED : MOSQ_ERR_PLUGIN_DEFER;

        switch (ed->access) {
        case MOSQ_ACL_WRITE:
                /* Requests.  Anything under $dps/registrations/ except res/ reaches on_message,
                 * which answers malformed ones with a 400 and never routes them. */
                if (ed->topic && startswith(ed->topic, DPS_REQUEST_NAMESPACE) && !filter_is_response(ed->topic))
                        return MOSQ_ERR_SUCCESS;
                return MOSQ_ERR_ACL_DENIED;
        case MOSQ_ACL_SUBSCRIBE:
        case MOSQ_ACL_UNSUBSCRIBE:
                /* $dps/registrations/res/# or an exact response topic (mosquitto_rr).  Only
                 * targeted replies are ever published there. */
                return filter_is_response(ed->topic) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
        default:
                /* READ: replies are targeted and bypass this check; nothing else is for them. */
                return MOSQ_ERR_ACL_DENIED;
        }
}

static int on_message(int event, void *event_data, void *userdata) {
        _cleanup_(dps_reply_done) DpsReply reply = {};
        struct mosquitto_evt_message *ed = event_data;
        Plugin *p = userdata;
        int r;

        DpsClient *c = dps_service_get_client(p->service, ed->client);
        if (!c)
                /* The ACL keeps other clients off $dps/; drop anything that got here anyway.
                 * Everything else is none of our business.  (Only ACL_DENIED drops a message,
                 * any other error would disconnect the publisher.) */
                return topic_is_dps(ed->topic) ? MOSQ_ERR_ACL_DENIED : MOSQ_ERR_SUCCESS;

        if (!topic_is_dps(ed->topic))
                return MOSQ_ERR_ACL_DENIED; /* not allowed by the ACL either */

        const char *client_id = mosquitto_client_id(ed->client);
        if (!client_id)
                return MOSQ_ERR_ACL_DENIED;

        r = dps_client_handle_request(c, ed->topic, ed->payload, ed->payloadlen, &reply);
        if (r < 0) {
                log_error_errno(r, "Failed to answer DPS request of '%s': %m", client_id);
                return MOSQ_ERR_ACL_DENIED;
        }
        if (reply.body_len > INT_MAX)
                return MOSQ_ERR_ACL_DENIED;

        /* To this client id only: bypasses subscriptions and ACLs. */
        r = mosquitto_broker_publish_copy(client_id, reply.topic, (int) reply.body_len, reply.body, 1, false, NULL);
        if (r != MOSQ_ERR_SUCCESS)
                log_error("Failed to publish the DPS reply to '%s': %s", client_id, mosquitto_strerror(r));

        /* Never route the request to subscribers. */
        return MOSQ_ERR_ACL_DENIED;
}

/* $CONTROL/edgeprov-dps/v1: only the broker's control path gets here (MESSAGE is not called
 * for $CONTROL topics), after the ACL check let only the admin publish. */
static int on_control(int event, void *event_data, void *userdata) {
        struct mosquitto_evt_control *ed = event_data;
        _cleanup_free_ char *out = NULL;
        Plugin *p = userdata;
        size_t out_len = 0;
        int r;

        const char *client_id = mosquitto_client_id(ed->client);
        if (!is_admin(p, ed->client) || !client_id)
                return MOSQ_ERR_ACL_DENIED;

        r = dps_admin_handle(p->service, ed->payload, ed->payloadlen, &out, &out_len);
        if (r < 0) {
                log_error_errno(r, "Failed to answer an admin request: %m");
                return MOSQ_ERR_NOMEM;
        }
        if (out_len > INT_MAX)
                return MOSQ_ERR_NOMEM;
        r = mosquitto_broker_publish_copy(client_id, DPS_ADMIN_RESPONSE_TOPIC, (int) out_len, out, 1, false, NULL);
        if (r != MOSQ_ERR_SUCCESS)
                log_error("Failed to publish the admin response: %s", mosquitto_strerror(r));
        return MOSQ_ERR_SUCCESS;
}

static int on_disconnect(int event, void *event_data, void *userdata) {
        struct mosquitto_evt_disconnect *ed = event_data;
        Plugin *p = userdata;

        admin_forget(p, ed->client);
        dps_service_disconnect(p->service, ed->client);
        return MOSQ_ERR_SUCCESS;
}

/* Custom allocation webhooks advance here without blocking (curl_multi_perform). */
static int on_tick(int event, void *event_data, void *userdata) {
        Plugin *p = userdata;
        int r = dps_service_process(p->service);
        if (r < 0)
                log_error_errno(r, "Failed to process the custom allocation webhooks: %m");
        return MOSQ_ERR_SUCCESS;
}

/* SIGHUP: read the data file again even if it looks unchanged. */
static int on_reload(int event, void *event_data, void *userdata) {
        _cleanup_free_ char *msg = NULL;
        Plugin *p = userdata;
        int r;

        r = dps_service_reload_if_changed(p->service, /* force= */ true, &msg);
        if (r < 0)
                log_error_errno(r, "Failed to reload the enrollment data, keeping the previous data: %s",
                                msg ?: strerror(-r));
        else {
                const DpsData *d = dps_service_get_data(p->service);
                log_info("Reloaded the enrollment data: %zu linked hubs, %zu individual enrollments, "
                         "%zu enrollment groups.",
                         d->n_hubs, d->n_individual, d->n_groups);
        }
        /* anything but DEFER would stop the broker from reloading the other plugins */
        return MOSQ_ERR_PLUGIN_DEFER;
}


static Plugin *plugin_free(Plugin *p) {
        if (!p)
                return NULL;
        dps_service_free(p->service);
        free(p->admin_username);
        if (p->admin_password) {
                explicit_bzero(p->admin_password, strlen(p->admin_password));
                free(p->admin_password);
        }
        free(p);
        return NULL;
}

static const struct {
        int event;
        MOSQ_FUNC_generic_callback cb;
} callbacks[] = {
        { MOSQ_EVT_BASIC_AUTH, on_basic_auth },
        { MOSQ_EVT_ACL_CHECK, on_acl_check },
        { MOSQ_EVT_MESSAGE, on_message },
        { MOSQ_EVT_DISCONNECT, on_disconnect },
        { MOSQ_EVT_RELOAD, on_reload },
        { MOSQ_EVT_TICK, on_tick },
};

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions) {
        return 5;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
                          int option_count) {
        _cleanup_free_ char *msg = NULL;
        const char *data_file = NULL, *id_scope = NULL, *registrations_db = NULL, *admin_username = NULL,
                   *admin_password_file = NULL;
        unsigned retry_after = DPS_RETRY_AFTER_DEFAULT, per_minute = 0, operation_lifetime = 0, webhook_timeout = 0;
        const char *webhook_cafile = NULL;
        unsigned probe_interval = 0, probe_timeout = 0;
        long long clock_offset = 0;
        Plugin *p;
        int r;

        log_set_sink(log_to_mosquitto);
        log_set_max_level(LOG_DEBUG); /* the broker's log_type decides */

        for (int i = 0; i < option_count; i++) {
                const char *k = options[i].key, *v = options[i].value;
                if (!k)
                        continue;
                if (streq(k, "data_file"))
                        data_file = v;
                else if (streq(k, "id_scope"))
                        id_scope = v;
                else if (streq(k, "registrations_db"))
                        registrations_db = v;
                else if (streq(k, "admin_username"))
                        admin_username = v;
                else if (streq(k, "admin_password_file"))
                        admin_password_file = v;
                else if (streq(k, "latency_probe_interval") || streq(k, "latency_probe_timeout")) {
                        bool interval = streq(k, "latency_probe_interval");
                        if (parse_uint_range(v, 1, interval ? 3600 : 60, interval ? &probe_interval : &probe_timeout) < 0) {
                                log_error("plugin_opt_%s: '%s' is not a number of seconds in 1..%d.", k, strna(v),
                                          interval ? 3600 : 60);
                                return MOSQ_ERR_INVAL;
                        }
                } else if (streq(k, "webhook_cafile"))
                        webhook_cafile = v;
                else if (streq(k, "webhook_timeout")) {
                        if (parse_uint_range(v, 1, 60, &webhook_timeout) < 0) {
                                log_error("plugin_opt_webhook_timeout: '%s' is not a number of seconds in 1..60.",
                                          strna(v));
                                return MOSQ_ERR_INVAL;
                        }
                } else if (streq(k, "operation_lifetime")) {
                        if (parse_uint_range(v, 1, 86400, &operation_lifetime) < 0) {
                                log_error("plugin_opt_operation_lifetime: '%s' is not a number of seconds in 1..86400.",
                                          strna(v));
                                return MOSQ_ERR_INVAL;
                        }
                } else if (streq(k, "registrations_per_minute")) {
                        if (parse_uint_range(v, 0, 1000000, &per_minute) < 0) {
                                log_error("plugin_opt_registrations_per_minute: '%s' is not a number in 0..1000000.",
                                          strna(v));
                                return MOSQ_ERR_INVAL;
                        }
                }
                else if (streq(k, "retry_after")) {
                        if (parse_uint_range(v, 1, DPS_RETRY_AFTER_MAX, &retry_after) < 0) {
                                log_error("plugin_opt_retry_after: '%s' is not a number of seconds in 1..%d.",
                                          strna(v), DPS_RETRY_AFTER_MAX);
                                return MOSQ_ERR_INVAL;
                        }
                } else if (streq(k, "clock_offset")) {
                        /* for tests: the service's clock runs this many seconds ahead (or behind) */
                        char *end = NULL;
                        errno = 0;
                        clock_offset = v ? strtoll(v, &end, 10) : 0;
                        if (!v || end == v || *end || errno || llabs(clock_offset) > 20LL * 365 * 86400) {
                                log_error("plugin_opt_clock_offset: '%s' is not a number of seconds within 20 years.",
                                          strna(v));
                                return MOSQ_ERR_INVAL;
                        }
                } else
                        log_warning("Unknown option plugin_opt_%s, ignoring.", k);
        }

        if (isempty(data_file)) {
                log_error("plugin_opt_data_file is required.");
                return MOSQ_ERR_INVAL;
        }
        if (id_scope && !dps_id_scope_is_valid(id_scope)) {
                log_error("plugin_opt_id_scope: '%s' is not a valid ID scope.", id_scope);
                return MOSQ_ERR_INVAL;
        }

        p = calloc(1, sizeof(Plugin));
        if (!p)
                return MOSQ_ERR_NOMEM;
        p->id = identifier;

        r = dps_service_new(&p->service);
        if (r < 0) {
                plugin_free(p);
                return MOSQ_ERR_NOMEM;
        }
        (void) dps_service_set_retry_after(p->service, retry_after);
        if (clock_offset != 0) {
                p->clock_offset_usec = (int64_t) clock_offset * 1000000;
                dps_service_set_clock(p->service, plugin_clock, p);
                log_warning("plugin_opt_clock_offset: the service's clock runs %lld s off the system clock.", clock_offset);
        }
        if (id_scope && dps_service_set_id_scope(p->service, id_scope) < 0) {
                plugin_free(p);
                return MOSQ_ERR_NOMEM;
        }

        if (!isempty(admin_username)) {
                if (isempty(admin_password_file)) {
                        log_error("plugin_opt_admin_username needs plugin_opt_admin_password_file.");
                        plugin_free(p);
                        return MOSQ_ERR_INVAL;
                }
                p->admin_username = strdup(admin_username);
                r = read_secret_file(admin_password_file, 4096, &p->admin_password);
                if (r >= 0)
                        p->admin_password[strcspn(p->admin_password, "\r\n")] = 0;
                if (!p->admin_username || r < 0 || isempty(p->admin_password)) {
                        log_error("Failed to read plugin_opt_admin_password_file %s: %s", admin_password_file,
                                  r < 0 ? strerror(-r) : "empty");
                        plugin_free(p);
                        return MOSQ_ERR_INVAL;
                }
        }

        DpsServiceLimits limits = DPS_LIMITS_DEFAULT;
        limits.registrations_per_minute = per_minute;
        if (operation_lifetime > 0)
                limits.operation_lifetime_usec = (uint64_t) operation_lifetime * 1000000;
        dps_service_set_latency_options(p->service, (uint64_t) probe_interval * 1000000,
                                        (uint64_t) probe_timeout * 1000000);
        if (dps_service_set_webhook_options(p->service, webhook_timeout * 1000, webhook_cafile) < 0) {
                plugin_free(p);
                return MOSQ_ERR_NOMEM;
        }
        dps_service_set_limits(p->service, &limits);

        if (!isempty(registrations_db)) {
                r = dps_service_open_store(p->service, registrations_db, &msg);
                if (r < 0) {
                        log_error_errno(r, "Failed to open the registration records: %s", msg ?: strerror(-r));
                        plugin_free(p);
                        return MOSQ_ERR_INVAL;
                }
        }

        r = dps_service_load(p->service, data_file, &msg);
        if (r < 0) {
                log_error_errno(r, "Failed to load the enrollment data: %s", msg ?: strerror(-r));
                plugin_free(p);
                return MOSQ_ERR_INVAL;
        }

        for (size_t i = 0; i < ELEMENTSOF(callbacks); i++) {
                r = mosquitto_callback_register(identifier, callbacks[i].event, callbacks[i].cb, NULL, p);
                if (r != MOSQ_ERR_SUCCESS) {
                        log_error("Failed to register callback for event %d: %s", callbacks[i].event,
                                  mosquitto_strerror(r));
                        for (size_t j = 0; j < i; j++)
                                (void) mosquitto_callback_unregister(identifier, callbacks[j].event,
                                                                     callbacks[j].cb, NULL);
                        plugin_free(p);
                        return r;
                }
        }

        if (p->admin_username) {
                r = mosquitto_callback_register(identifier, MOSQ_EVT_CONTROL, on_control, DPS_ADMIN_TOPIC, p);
                if (r != MOSQ_ERR_SUCCESS) {
                        log_error("Failed to register %s: %s", DPS_ADMIN_TOPIC, mosquitto_strerror(r));
                        for (size_t j = 0; j < ELEMENTSOF(callbacks); j++)
                                (void) mosquitto_callback_unregister(identifier, callbacks[j].event,
                                                                     callbacks[j].cb, NULL);
                        plugin_free(p);
                        return r;
                }
                log_info("Admin API on %s for user '%s'.", DPS_ADMIN_TOPIC, p->admin_username);
        }

        const DpsData *d = dps_service_get_data(p->service);
        log_info("Serving ID scope '%s' from %s: %zu linked hubs, %zu individual enrollments, %zu enrollment groups, "
                 "retry-after %us.",
                 dps_service_get_id_scope(p->service), data_file, d->n_hubs, d->n_individual, d->n_groups,
                 retry_after);

        *userdata = p;
        return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count) {
        Plugin *p = userdata;

        if (!p)
                return MOSQ_ERR_SUCCESS;
        for (size_t i = 0; i < ELEMENTSOF(callbacks); i++)
                (void) mosquitto_callback_unregister(p->id, callbacks[i].event, callbacks[i].cb, NULL);
        if (p->admin_username)
                (void) mosquitto_callback_unregister(p->id, MOSQ_EVT_CONTROL, on_control, DPS_ADMIN_TOPIC);
        plugin_free(p);
        log_set_sink(NULL);
        return MOSQ_ERR_SUCCESS;
}
