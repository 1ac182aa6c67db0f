/* SPDX-License-Identifier: MIT */
/* edgeprov-dps-httpd: the HTTPS front of the local provisioning service (dps-protocol.md §3).
 *
 * libmicrohttpd with TLS (its GnuTLS backend) in MHD_USE_EPOLL mode without any thread: MHD's
 * epoll fd is an sd-event I/O source and MHD_get_timeout() drives an sd-event timer, so the
 * daemon has one event loop, like edgeprovd, and never blocks in it.  Requests go through
 * src/dps/rest.c to the same core (libdpscore) and SQLite store as the mosquitto plugin. */
#include <arpa/inet.h>
#include <getopt.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "dps/rest.h"
#include "dps/service.h"
#include "edgeprov/codec.h"
#include "edgeprov/dps.h"
#include "edgeprov/fileio.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/time-util.h"

#define PEM_FILE_MAX (1024 * 1024)
#define PEER_CHAIN_MAX 8
#define DRAIN_MAX (1024 * 1024) /* oversize bodies up to this are read (and dropped) before the 413 */

typedef struct Args {
        const char *data_file, *db_file, *address, *cert_file, *key_file, *client_ca_file, *id_scope;
        unsigned port, retry_after, per_minute, max_connections, per_ip, timeout, header_limit, request_timeout;
} Args;

/* A connection, for the absolute request deadline: MHD's own timeout is an idle timeout, so a
 * client trickling a header line now and then would keep its slot for ever.  `since` is when
 * the connection was accepted or its last request completed; a request not complete (answer
 * sent included) request_timeout after that has its socket shut down, which MHD sees as the
 * peer going away and closes the connection itself. */
typedef struct Conn {
        struct Conn *prev, *next;
        int fd;
        uint64_t since;
        bool cut;
} Conn;

typedef struct Server {
        sd_event *event;
        struct MHD_Daemon *mhd;
        sd_event_source *io, *timer, *process, *deadline;
        DpsService *service;
        DpsRest *rest;
        uint64_t requests, cut;
        uint64_t request_timeout_usec;
        Conn *conns;
} Server;

typedef struct Request {
        char *body;
        size_t len, drained;
        bool too_large;
} Request;

static void help(void) {
        printf("Usage: edgeprov-dps-httpd --data FILE --cert FILE --key FILE [OPTIONS]\n\n"
               "The HTTPS front of the local DPS-compatible provisioning service.\n\n"
               "  --data FILE              enrollment data file (edgeprov-dpsctl --data FILE)\n"
               "  --db FILE                registration records (SQLite, shared with the mosquitto plugin)\n"
               "  --cert FILE, --key FILE  server certificate chain and key (PEM)\n"
               "  --client-ca FILE         request TLS client certificates (X.509 attestation), CA names from FILE\n"
               "  --address ADDR           listen address (default 0.0.0.0; :: for both families)\n"
               "  --port N                 TCP port (default 443; 0: any, printed on stdout)\n"
               "  --id-scope SCOPE         override the data file's ID scope\n"
               "  --retry-after SEC        retry-after of 202 answers (default %d)\n"
               "  --registrations-per-minute N  429 beyond N register requests a minute (0: no limit)\n"
               "  --max-connections N      concurrent connections (default 512)\n"
               "  --per-ip-connections N   concurrent connections per client address (default 64)\n"
               "  --timeout SEC            idle timeout of a connection (default 15)\n"
               "  --request-timeout SEC    time for a whole request, answer included (default 30)\n"
               "  --header-limit BYTES     memory for one request's headers (default 16384)\n"
               "  --version, --help\n",
               DPS_RETRY_AFTER_DEFAULT);
}


static int parse_args(int argc, char **argv, Args *a) {
        enum {
                ARG_DATA = 0x100, ARG_DB, ARG_CERT, ARG_KEY, ARG_CLIENT_CA, ARG_ADDRESS, ARG_PORT, ARG_SCOPE,
                ARG_RETRY, ARG_PER_MINUTE, ARG_MAXCONN, ARG_PERIP, ARG_TIMEOUT, ARG_HEADER, ARG_REQUEST_TIMEOUT,
                ARG_VERSION,
        };
        static const struct option options[] = {
                { "data", required_argument, NULL, ARG_DATA },
                { "db", required_argument, NULL, ARG_DB },
                { "cert", required_argument, NULL, ARG_CERT },
                { "key", required_argument, NULL, ARG_KEY },
                { "client-ca", required_argument, NULL, ARG_CLIENT_CA },
                { "address", required_argument, NULL, ARG_ADDRESS },
                { "port", required_argument, NULL, ARG_PORT },
                { "id-scope", required_argument, NULL, ARG_SCOPE },
                { "retry-after", required_argument, NULL, ARG_RETRY },
                { "registrations-per-minute", required_argument, NULL, ARG_PER_MINUTE },
                { "max-connections", required_argument, NULL, ARG_MAXCONN },
                { "per-ip-connections", required_argument, NULL, ARG_PERIP },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "header-limit", required_argument, NULL, ARG_HEADER },
                { "request-timeout", required_argument, NULL, ARG_REQUEST_TIMEOUT },
                { "version", no_argument, NULL, ARG_VERSION },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;

        *a = (Args) { .address = "0.0.0.0", .port = 443, .retry_after = DPS_RETRY_AFTER_DEFAULT,
                      .max_connections = 512, .per_ip = 64, .timeout = 15, .header_limit = 16384,
                      .request_timeout = 30 };
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                int r = 0;
                switch (c) {
                case ARG_DATA: a->data_file = optarg; break;
                case ARG_DB: a->db_file = optarg; break;
                case ARG_CERT: a->cert_file = optarg; break;
                case ARG_KEY: a->key_file = optarg; break;
                case ARG_CLIENT_CA: a->client_ca_file = optarg; break;
                case ARG_ADDRESS: a->address = optarg; break;
                case ARG_SCOPE: a->id_scope = optarg; break;
                case ARG_PORT: r = parse_uint_range(optarg, 0, 65535, &a->port); break;
                case ARG_RETRY: r = parse_uint_range(optarg, 1, DPS_RETRY_AFTER_MAX, &a->retry_after); break;
                case ARG_PER_MINUTE: r = parse_uint_range(optarg, 0, 1000000, &a->per_minute); break;
                case ARG_MAXCONN: r = parse_uint_range(optarg, 1, 65536, &a->max_connections); break;
                case ARG_PERIP: r = parse_uint_range(optarg, 1, 65536, &a->per_ip); break;
                case ARG_TIMEOUT: r = parse_uint_range(optarg, 1, 3600, &a->timeout); break;
                case ARG_HEADER: r = parse_uint_range(optarg, 4096, 1024 * 1024, &a->header_limit); break;
                case ARG_REQUEST_TIMEOUT: r = parse_uint_range(optarg, 1, 3600, &a->request_timeout); break;
                case ARG_VERSION:
                        printf("edgeprov-dps-httpd %s\n", PACKAGE_VERSION);
                        return 0;
                case 'h':
                        help();
                        return 0;
                default:
                        return -EINVAL;
                }
                if (r < 0) {
                        log_error("Invalid value for --%s: '%s'.", options[c - ARG_DATA].name, optarg);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                log_error("Unexpected argument '%s'.", argv[optind]);
                return -EINVAL;
        }
        if (!a->data_file || !a->cert_file || !a->key_file) {
                log_error("--data, --cert and --key are required (see --help).");
                return -EINVAL;
        }
        if (a->id_scope && !dps_id_scope_is_valid(a->id_scope)) {
                log_error("--id-scope: '%s' is not a valid ID scope.", a->id_scope);
                return -EINVAL;
        }
        return 1;
}

/* ---- requests ---- */

static enum MHD_Result queue_reply(struct MHD_Connection *conn, const DpsRestReply *r) {
        struct MHD_Response *resp;
        enum MHD_Result ret;
        char num[32];

        resp = MHD_create_response_from_buffer(r->body_len, r->body, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return MHD_NO;
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json; charset=utf-8");
        if (r->retry_after >= 0) {
                snprintf(num, sizeof(num), "%d", r->retry_after);
                (void) MHD_add_response_header(resp, "Retry-After", num);
        }
        if (r->error_code) {
                snprintf(num, sizeof(num), "%" PRIi64, r->error_code);
                (void) MHD_add_response_header(resp, "x-ms-error-code", num);
        }
        if (r->location)
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
        if (r->allow)
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
        ret = MHD_queue_response(conn, r->status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result queue_error(struct MHD_Connection *conn, unsigned status, int64_t code, const char *message) {
        _cleanup_(dps_rest_reply_done) DpsRestReply r = { .retry_after = -1 };
        if (dps_rest_error(status, code, -1, message, &r) < 0)
                return MHD_NO;
        return queue_reply(conn, &r);
}

/* The TLS client certificate chain as DER blobs pointing into GnuTLS' session (valid while
 * the request is handled). */
static size_t peer_chain(struct MHD_Connection *conn, const uint8_t **der, size_t *len) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        const gnutls_datum_t *certs;
        unsigned n = 0;

        if (!ci || !ci->tls_session)
                return 0;
        certs = gnutls_certificate_get_peers((gnutls_session_t) ci->tls_session, &n);
        if (!certs)
                return 0;
        n = MIN(n, (unsigned) PEER_CHAIN_MAX);
        for (unsigned i = 0; i < n; i++) {
                der[i] = certs[i].data;
                len[i] = certs[i].size;
        }
        return n;
}

static void process_soon(Server *s);

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        Server *s = cls;
        Request *rq = *con_cls;

        if (!rq) {
                const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
                rq = calloc(1, sizeof(Request));
                if (!rq)
                        return MHD_NO;
                *con_cls = rq;
                /* An announced oversize body: up to DRAIN_MAX it is read and dropped, so that the
                 * client (still sending) can read the 413; beyond, refused at once and the
                 * connection closed. */
                if (cl && (strlen(cl) > 9 || strtoull(cl, NULL, 10) > DPS_BODY_MAX)) {
                        rq->too_large = true;
                        if (strlen(cl) > 9 || strtoull(cl, NULL, 10) > DRAIN_MAX)
                                return queue_error(conn, 413, DPS_ERROR_TOO_LARGE, "Request body too large.");
                }
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                rq->drained += *upload_data_size;
                if (rq->too_large && rq->drained > DRAIN_MAX) {
                        *upload_data_size = 0;
                        return queue_error(conn, 413, DPS_ERROR_TOO_LARGE, "Request body too large.");
                }
                if (!rq->too_large && rq->len + *upload_data_size <= DPS_BODY_MAX) {
                        char *b = realloc(rq->body, rq->len + *upload_data_size + 1);
                        if (!b)
                                return MHD_NO;
                        memcpy(b + rq->len, upload_data, *upload_data_size);
                        rq->body = b;
                        rq->len += *upload_data_size;
                        rq->body[rq->len] = 0;
                } else
                        rq->too_large = true; /* chunked upload beyond the limit: drain, then 413 */
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (rq->too_large)
                return queue_error(conn, 413, DPS_ERROR_TOO_LARGE, "Request body too large.");

        _cleanup_(dps_rest_reply_done) DpsRestReply reply = { .retry_after = -1 };
        _cleanup_free_ char *api_version = NULL;
        const char *av = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "api-version");
        const uint8_t *der[PEER_CHAIN_MAX];
        size_t der_len[PEER_CHAIN_MAX];
        int r;

        /* URLs reach us undecoded (no-op unescape callback): decode the one argument we use */
        if (av && url_decode(av, strlen(av), &api_version) < 0)
                api_version = NULL;
        DpsRestRequest req = {
                .conn = rq,
                .method = method,
                .path = url,
                .api_version = api_version,
                .authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
                .content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
                .body = rq->body,
                .body_len = rq->len,
                .peer_der = der,
                .peer_der_len = der_len,
        };
        req.n_peer = peer_chain(conn, der, der_len);
        s->requests++;
        r = dps_rest_handle(s->rest, &req, &reply);
        if (r < 0) {
                log_error_errno(r, "Failed to handle %s request: %m", method);
                return queue_error(conn, 500, DPS_ERROR_INTERNAL, "Internal error.");
        }
        log_debug("%s %s → %u", method, url, reply.status);
        process_soon(s);
        return queue_reply(conn, &reply);
}


static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        Request *rq = *con_cls;

        if (ci && ci->socket_context)
                ((Conn *) ci->socket_context)->since = clock_now_usec(CLOCK_MONOTONIC); /* the next request's clock */
        if (!rq)
                return;
        free(rq->body);
        free(rq);
        *con_cls = NULL;
}

/* Keeps the URL as sent: rest.c decodes each path segment itself (a decoded '/' inside an id
 * must not change the path's structure). */
static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s) {
        return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
        char buf[512];
        vsnprintf(buf, sizeof(buf), fmt, ap);
        buf[strcspn(buf, "\n")] = 0;
        log_debug("libmicrohttpd: %s", buf);
}

/* ---- request deadline ---- */

static int on_deadline(sd_event_source *src, uint64_t usec, void *userdata);

/* Arms the timer for the earliest deadline of a connection not cut yet; off when none. */
static void deadline_arm(Server *s) {
        uint64_t next = UINT64_MAX;
        for (Conn *c = s->conns; c; c = c->next)
                if (!c->cut && c->since + s->request_timeout_usec < next)
                        next = c->since + s->request_timeout_usec;
        if (!s->deadline)
                return;
        if (next == UINT64_MAX) {
                (void) sd_event_source_set_enabled(s->deadline, SD_EVENT_OFF);
                return;
        }
        if (sd_event_source_set_time(s->deadline, next) < 0 ||
            sd_event_source_set_enabled(s->deadline, SD_EVENT_ONESHOT) < 0)
                log_error("Failed to arm the request deadline timer.");
}

static int on_deadline(sd_event_source *src, uint64_t usec, void *userdata) {
        Server *s = userdata;
        uint64_t now = clock_now_usec(CLOCK_MONOTONIC);

        for (Conn *c = s->conns; c; c = c->next) {
                if (c->cut || now < c->since + s->request_timeout_usec)
                        continue;
                c->cut = true;
                s->cut++;
                (void) shutdown(c->fd, SHUT_RDWR);
                log_info("Closing a connection whose request was not complete after %" PRIu64 " s (%" PRIu64
                         " so far).",
                         s->request_timeout_usec / 1000000, s->cut);
        }
        deadline_arm(s);
        return 0;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
        Server *s = cls;
        Conn *c = *socket_context;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
                c = ci ? calloc(1, sizeof(Conn)) : NULL;
                if (!c)
                        return;         /* no deadline for this one: its idle timeout still applies */
                c->fd = ci->connect_fd;
                c->since = clock_now_usec(CLOCK_MONOTONIC);
                c->next = s->conns;
                if (s->conns)
                        s->conns->prev = c;
                s->conns = c;
                *socket_context = c;
                deadline_arm(s);
                return;
        }
        if (!c)
                return;
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        free(c);
        *socket_context = NULL;
}

/* ---- the event loop ---- */

static int on_mhd_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Server *s = userdata;
        (void) MHD_run(s->mhd);
        return 0;
}

static int on_mhd_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Server *s = userdata;
        (void) MHD_run(s->mhd);
        return 0;
}

/* Custom-allocation webhooks and geoLatency probes advance in the core without blocking; the
 * plugin drives them from mosquitto's tick (at most 100 ms apart), this front at the same pace
 * while there is something to advance, and not at all otherwise: a request (which can start a
 * webhook or load hubs to probe) starts the tick again. */
#define PROCESS_INTERVAL_USEC (100 * 1000ULL)

static int on_process(sd_event_source *src, uint64_t usec, void *userdata) {
        Server *s = userdata;
        int r = dps_service_process(s->service);
        if (r < 0)
                log_error_errno(r, "Failed to advance custom allocation and latency probes: %m");
        if (!dps_service_has_pending_work(s->service))
                return sd_event_source_set_enabled(src, SD_EVENT_OFF);
        return sd_event_source_set_time_relative(src, PROCESS_INTERVAL_USEC);
}

static void process_soon(Server *s) {
        int enabled = SD_EVENT_OFF;
        if (sd_event_source_get_enabled(s->process, &enabled) >= 0 && enabled != SD_EVENT_OFF)
                return;
        if (sd_event_source_set_time_relative(s->process, 0) < 0 ||
            sd_event_source_set_enabled(s->process, SD_EVENT_ON) < 0)
                log_error("Failed to schedule custom allocation and latency probes.");
}

/* Before the loop sleeps: arm the timer for MHD's next deadline (connection timeouts, and 0
 * when MHD has work queued that the epoll fd does not show). */
static int on_prepare(sd_event_source *src, void *userdata) {
        Server *s = userdata;
        MHD_UNSIGNED_LONG_LONG ms = 0;

        if (MHD_get_timeout(s->mhd, &ms) != MHD_YES)
                return sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_time_relative(s->timer, (uint64_t) MIN(ms, (MHD_UNSIGNED_LONG_LONG) 3600000) * 1000);
        return sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

int main(int argc, char **argv) {
        _cleanup_free_ char *cert = NULL, *trust = NULL, *msg = NULL;
        _cleanup_erase_ char *key = NULL;
        Server s = {};
        Args a;
        int r, ret = EXIT_FAILURE;

        log_setup("edgeprov-dps-httpd");
        r = parse_args(argc, argv, &a);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        s.request_timeout_usec = (uint64_t) a.request_timeout * 1000000ULL;

        r = read_file_full(a.cert_file, PEM_FILE_MAX, &cert, NULL);
        if (r < 0) {
                log_error_errno(r, "Cannot read the certificate %s: %m", a.cert_file);
                return EXIT_FAILURE;
        }
        r = read_secret_file(a.key_file, PEM_FILE_MAX, &key);
        if (r < 0) {
                log_error_errno(r, "Cannot use the key %s: %m%s", a.key_file,
                                r == -EPERM ? " (it is accessible to other users: chmod o-rwx)" : "");
                return EXIT_FAILURE;
        }
        if (a.client_ca_file) {
                r = read_file_full(a.client_ca_file, PEM_FILE_MAX, &trust, NULL);
                if (r < 0) {
                        log_error_errno(r, "Cannot read %s: %m", a.client_ca_file);
                        return EXIT_FAILURE;
                }
        }

        r = dps_service_new(&s.service);
        if (r < 0)
                goto finish;
        (void) dps_service_set_retry_after(s.service, a.retry_after);
        if (a.id_scope && dps_service_set_id_scope(s.service, a.id_scope) < 0)
                goto finish;
        DpsServiceLimits limits = DPS_LIMITS_DEFAULT;
        limits.registrations_per_minute = a.per_minute;
        dps_service_set_limits(s.service, &limits);
        if (a.db_file) {
                r = dps_service_open_store(s.service, a.db_file, &msg);
                if (r < 0) {
                        log_error_errno(r, "Failed to open the registration records: %s", msg ?: strerror(-r));
                        goto finish;
                }
        }
        r = dps_service_load(s.service, a.data_file, &msg);
        if (r < 0) {
                log_error_errno(r, "Failed to load the enrollment data: %s", msg ?: strerror(-r));
                goto finish;
        }
        r = dps_rest_new(s.service, &s.rest);
        if (r < 0)
                goto finish;

        /* the listening address */
        struct sockaddr_storage ss = {};
        struct sockaddr_in *in4 = (struct sockaddr_in *) &ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
        unsigned flags = MHD_USE_EPOLL | MHD_USE_TLS | MHD_USE_ERROR_LOG;
        if (inet_pton(AF_INET, a.address, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons(a.port);
        } else if (inet_pton(AF_INET6, a.address, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(a.port);
                flags |= MHD_USE_IPv6;
                if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
                        flags |= MHD_USE_DUAL_STACK;
        } else {
                log_error("--address: '%s' is not an IPv4 or IPv6 address.", a.address);
                goto finish;
        }

        struct MHD_OptionItem opts[] = {
                { MHD_OPTION_EXTERNAL_LOGGER, (intptr_t) mhd_log, NULL },
                { MHD_OPTION_SOCK_ADDR, 0, &ss },
                { MHD_OPTION_HTTPS_MEM_CERT, 0, cert },
                { MHD_OPTION_HTTPS_MEM_KEY, 0, key },
                { MHD_OPTION_HTTPS_PRIORITIES, 0, (void *) "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2" },
                { MHD_OPTION_CONNECTION_LIMIT, a.max_connections, NULL },
                { MHD_OPTION_PER_IP_CONNECTION_LIMIT, a.per_ip, NULL },
                { MHD_OPTION_CONNECTION_TIMEOUT, a.timeout, NULL },
                { MHD_OPTION_CONNECTION_MEMORY_LIMIT, a.header_limit, NULL },
                { MHD_OPTION_NOTIFY_COMPLETED, (intptr_t) on_completed, NULL },
                { MHD_OPTION_NOTIFY_CONNECTION, (intptr_t) on_connection, &s },
                { MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t) unescape_none, NULL },
                { trust ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0, trust },
                { MHD_OPTION_END, 0, NULL },
        };
        s.mhd = MHD_start_daemon(flags, (uint16_t) a.port, NULL, NULL, on_request, &s, MHD_OPTION_ARRAY, opts,
                                 MHD_OPTION_END);
        key = erase_and_free(key);
        if (!s.mhd) {
                log_error("Failed to start the HTTPS listener on %s port %u (address in use? certificate and key "
                          "not matching?).",
                          a.address, a.port);
                goto finish;
        }
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(s.mhd, MHD_DAEMON_INFO_BIND_PORT);
        unsigned port = di ? di->port : a.port;
        di = MHD_get_daemon_info(s.mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (!di) {
                log_error("libmicrohttpd has no epoll fd.");
                goto finish;
        }

        r = sd_event_default(&s.event);
        if (r < 0)
                goto finish;
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (sd_event_add_signal(s.event, NULL, SIGTERM, NULL, NULL) < 0 ||
            sd_event_add_signal(s.event, NULL, SIGINT, NULL, NULL) < 0 ||
            sd_event_add_io(s.event, &s.io, di->epoll_fd, EPOLLIN, on_mhd_io, &s) < 0 ||
            sd_event_add_time_relative(s.event, &s.timer, CLOCK_MONOTONIC, 0, 1000, on_mhd_timer, &s) < 0 ||
            sd_event_add_time_relative(s.event, &s.process, CLOCK_MONOTONIC, PROCESS_INTERVAL_USEC,
                                       10 * 1000ULL, on_process, &s) < 0 ||
            sd_event_source_set_enabled(s.process, SD_EVENT_ON) < 0 ||
            sd_event_add_time(s.event, &s.deadline, CLOCK_MONOTONIC, UINT64_MAX, 100 * 1000ULL, on_deadline, &s) < 0 ||
            sd_event_source_set_prepare(s.io, on_prepare) < 0 || sd_event_set_watchdog(s.event, true) < 0) {
                log_error("Failed to set up the event loop.");
                goto finish;
        }

        const DpsData *d = dps_service_get_data(s.service);
        log_info("Serving ID scope '%s' over HTTPS on %s port %u from %s: %zu linked hubs, %zu individual "
                 "enrollments, %zu enrollment groups, retry-after %us%s.",
                 dps_service_get_id_scope(s.service), a.address, port, a.data_file, d->n_hubs, d->n_individual,
                 d->n_groups, a.retry_after, trust ? ", client certificates requested" : "");
        if (a.port == 0) {
                printf("%u\n", port);
                fflush(stdout);
        }
        (void) sd_notifyf(false, "READY=1\nSTATUS=Serving on port %u", port);

        r = sd_event_loop(s.event);
        (void) sd_notify(false, "STOPPING=1");
        log_info("Stopping after %" PRIu64 " requests.", s.requests);
        ret = r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

finish:
        s.io = sd_event_source_disable_unref(s.io);
        s.timer = sd_event_source_disable_unref(s.timer);
        s.process = sd_event_source_disable_unref(s.process);
        s.deadline = sd_event_source_disable_unref(s.deadline);
        if (s.mhd)
                MHD_stop_daemon(s.mhd);
        dps_rest_free(s.rest);
        dps_service_free(s.service);
        sd_event_unref(s.event);
        return ret;
}
