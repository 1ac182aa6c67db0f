/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include <json-c/json.h>

#include "dps/datafile.h"
#include "dps/service.h"
#include "dps/store.h"
#include "edgeprov/codec.h"
#include "edgeprov/dps.h"
#include "edgeprov/json-util.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/sas.h"
#include "edgeprov/time-util.h"
#include "dps/attest-tpm.h"
#include "dps/webhook.h"
#include "dps/latency.h"
#include "dps/attest-x509.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define RELOAD_CHECK_INTERVAL_USEC USEC_PER_SEC

typedef struct DpsOperation DpsOperation;

typedef struct DpsRegistration {
        char *registration_id;     /* as first registered */
        char *device_id;
        char *assigned_hub;
        char *enrollment_group_id;
        char *initial_hub;         /* of the first assignment */
        char *substatus;           /* NULL unless assigned */
        char *initial_twin;        /* JSON, or NULL */
        char *etag;                /* of the last outcome (the store has it too) */
        DpsStatus status;
        uint64_t created_usec;
        uint64_t last_updated_usec;
        unsigned n_operations;
        TAILQ_HEAD(, DpsOperation) operations; /* oldest first */
} DpsRegistration;

struct DpsOperation {
        char *id;
        DpsRegistration *registration;
        uint64_t created_usec;
        char *body;                /* the final (200) reply */
        size_t body_len;
        TAILQ_ENTRY(DpsOperation) by_age;
        TAILQ_ENTRY(DpsOperation) by_registration;
};

typedef enum DpsAuth {
        DPS_AUTH_OK,
        DPS_AUTH_NOT_ENROLLED,
        DPS_AUTH_NO_TOKEN,
        DPS_AUTH_MALFORMED_TOKEN,
        DPS_AUTH_WRONG_RESOURCE,
        DPS_AUTH_EXPIRED,
        DPS_AUTH_BAD_SIGNATURE,
        DPS_AUTH_NO_GROUP_MATCH,
        DPS_AUTH_UNSUPPORTED_ATTESTATION,
        DPS_AUTH_INTERNAL,
        DPS_AUTH_TPM_CHALLENGE,    /* TPM enrollment, no password: a register gets the 401 challenge */
        DPS_AUTH_TPM_NO_CHALLENGE, /* TPM enrollment, a password but no key issued (any more) */
        DPS_AUTH_X509,             /* X.509 refused: the reason is in c->x509_message (attest-x509.c) */
        _DPS_AUTH_MAX,
} DpsAuth;

static const char *const auth_message_table[_DPS_AUTH_MAX] = {
        [DPS_AUTH_OK] = "OK",
        [DPS_AUTH_NOT_ENROLLED] = "No enrollment found for this registration id",
        [DPS_AUTH_NO_TOKEN] = "Unauthorized: no SAS token (MQTT password) was presented",
        [DPS_AUTH_MALFORMED_TOKEN] = "Unauthorized: malformed SAS token",
        [DPS_AUTH_WRONG_RESOURCE] = "Unauthorized: the SAS token is for another resource",
        [DPS_AUTH_EXPIRED] = "Unauthorized: SAS token expired",
        [DPS_AUTH_BAD_SIGNATURE] = "Unauthorized: SAS token signature does not match the enrollment's keys",
        [DPS_AUTH_NO_GROUP_MATCH] =
                "Unauthorized: no individual enrollment, and the SAS token matches no enrollment group",
        [DPS_AUTH_UNSUPPORTED_ATTESTATION] = "Unauthorized: the enrollment's attestation type is not supported over MQTT",
        [DPS_AUTH_INTERNAL] = "Internal error",
        [DPS_AUTH_TPM_CHALLENGE] = "Unauthorized: TPM attestation, register with tpm.endorsementKey and "
                                   "tpm.storageRootKey to get the challenge",
        [DPS_AUTH_TPM_NO_CHALLENGE] = "Unauthorized: no TPM challenge is outstanding for this registration (never "
                                      "issued, expired, replaced or already used); connect without a password and "
                                      "register again",
        [DPS_AUTH_X509] = "Unauthorized: the client certificate was refused",
};

struct DpsClient {
        DpsService *service;
        const void *conn;
        char *registration_id;
        char *password;            /* the SAS token, wiped on free */
        size_t password_len;
        uint64_t auth_generation;  /* s->generation when auth was computed */
        DpsAuth auth;
        const DpsEnrollment *enrollment; /* valid while auth_generation == s->generation */
        uint64_t expiry;           /* se of the token, seconds */
        STACK_OF(X509) *x509_chain; /* the TLS client certificate chain, leaf first, or NULL */
        char *x509_message;        /* why X.509 authentication failed */
        bool poll_vouched;         /* HTTPS front (rest.c): may poll, see dps_client_vouch_for_poll */
};

struct DpsService {
        DpsWebhook *webhook;       /* custom allocation (created on first use) */
        unsigned webhook_timeout_msec;
        char *webhook_cafile;
        DpsLatency *latency;       /* geoLatency probes (created when a hub has a probeAddress) */
        uint64_t latency_generation; /* of the data the probes were synced to */
        uint64_t latency_interval_usec, latency_timeout_usec;
        bool freeing;
        DpsData *data;
        uint64_t generation;

        char *data_path;
        struct stat data_stat;     /* of the loaded file */
        struct stat failed_stat;   /* of the last file that failed to load */
        bool have_failed_stat;
        uint64_t last_reload_check_usec;

        char *id_scope_override;
        DpsStore *store;           /* durable registration records, or NULL: in memory only */
        uint64_t rate_budget_usec; /* registration rate limit (token bucket) */
        uint64_t rate_last_usec;
        unsigned retry_after;
        DpsServiceLimits limits;
        DpsClockFunc clock;
        void *clock_userdata;

        void *clients;             /* tsearch tree of DpsClient by conn */
        size_t n_clients;
        void *registrations;       /* tsearch tree of DpsRegistration by id, case-insensitive */
        size_t n_registrations;
        void *operations;          /* tsearch tree of DpsOperation by id */
        size_t n_operations;
        size_t operation_bytes;
        TAILQ_HEAD(, DpsOperation) operation_queue; /* oldest first */
        DpsTpmKeys *tpm_keys;      /* issued TPM challenge keys (src/dps/attest-tpm.c) */
        DpsCaStore *ca_store;      /* CA certificates for X.509 (src/dps/attest-x509.c) */
        STACK_OF(X509) *pending_chain; /* handed from dps_service_connect_x509 to dps_service_connect */
};

/* ---- small helpers -------------------------------------------------------------------- */

static uint64_t now_usec(const DpsService *s) {
        struct timespec ts;

        if (s->clock)
                return s->clock(s->clock_userdata);
        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
                return 0;
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* 2020-04-10T03:11:13.0276997Z, as DPS writes it (100 ns resolution). */
static int format_timestamp(uint64_t usec, char buf[static 32]) {
        struct tm tm;
        time_t t = (time_t) (usec / USEC_PER_SEC);

        if (!gmtime_r(&t, &tm))
                return -EINVAL;
        size_t l = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
        if (l == 0 || l > 20)
                return -EINVAL;
        snprintf(buf + l, 32 - l, ".%07uZ", (unsigned) (usec % USEC_PER_SEC) * 10);
        return 0;
}

static int random_uuid(char buf[static 37]) {
        uint8_t b[16];
        int r;

        r = random_bytes(b, sizeof(b));
        if (r < 0)
                return r;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        snprintf(buf, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
        return 0;
}

/* 4.<16 hex>.<uuid>: only [A-Za-z0-9.-], so URL-quoting by clients is a no-op. */
static int new_operation_id(char **ret) {
        char uuid[37];
        uint8_t b[8];
        int r;

        r = random_bytes(b, sizeof(b));
        if (r < 0)
                return r;
        r = random_uuid(uuid);
        if (r < 0)
                return r;
        if (asprintf(ret, "4.%02x%02x%02x%02x%02x%02x%02x%02x.%s", b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                     uuid) < 0)
                return -ENOMEM;
        return 0;
}

/* As DPS: base64 of a quoted uuid. */
static int new_etag(char **ret) {
        char uuid[37], quoted[40];
        int r;

        r = random_uuid(uuid);
        if (r < 0)
                return r;
        snprintf(quoted, sizeof(quoted), "\"%s\"", uuid);
        return base64_encode(quoted, strlen(quoted), ret);
}

static char *memdup_suffix0(const void *p, size_t l) {
        char *d = malloc(l + 1);
        if (!d)
                return NULL;
        memcpy(d, p, l);
        d[l] = 0;
        return d;
}

static int json_to_string(struct json_object *o, char **ret, size_t *ret_len) {
        size_t l = 0;
        const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                                          &l);
        if (!s)
                return -ENOMEM;
        char *d = strndup(s, l);
        if (!d)
                return -ENOMEM;
        *ret = d;
        *ret_len = l;
        return 0;
}

static const char *service_id_scope(const DpsService *s) {
        if (s->id_scope_override)
                return s->id_scope_override;
        return s->data ? s->data->id_scope : NULL;
}

/* ---- trees ------------------------------------------------------------------------------ */

static int client_cmp(const void *a, const void *b) {
        const DpsClient *x = a, *y = b;
        return x->conn < y->conn ? -1 : x->conn > y->conn ? 1 : 0;
}

static int registration_cmp(const void *a, const void *b) {
        const DpsRegistration *x = a, *y = b;
        return strcasecmp(x->registration_id, y->registration_id);
}

static int operation_cmp(const void *a, const void *b) {
        const DpsOperation *x = a, *y = b;
        return strcmp(x->id, y->id);
}

static DpsClient *client_free(DpsClient *c) {
        if (!c)
                return NULL;
        free(c->registration_id);
        if (c->x509_chain)
                sk_X509_pop_free(c->x509_chain, X509_free);
        free(c->x509_message);
        if (c->password) {
                explicit_bzero(c->password, c->password_len);
                free(c->password);
        }
        free(c);
        return NULL;
}

static void client_free_void(void *p) {
        client_free(p);
}

static void operation_free(DpsOperation *op) {
        if (!op)
                return;
        free(op->id);
        free(op->body);
        free(op);
}

static void registration_free(void *p) {
        DpsRegistration *r = p;
        if (!r)
                return;
        free(r->registration_id);
        free(r->device_id);
        free(r->assigned_hub);
        free(r->enrollment_group_id);
        free(r->initial_hub);
        free(r->substatus);
        free(r->initial_twin);
        free(r->etag);
        free(r);
}

/* Unlinks op from every index and frees it. */
static void operation_remove(DpsService *s, DpsOperation *op) {
        (void) tdelete(op, &s->operations, operation_cmp);
        TAILQ_REMOVE(&s->operation_queue, op, by_age);
        TAILQ_REMOVE(&op->registration->operations, op, by_registration);
        op->registration->n_operations--;
        s->n_operations--;
        s->operation_bytes -= op->body_len;
        operation_free(op);
}

/* A new operation of reg indexed and queued; takes *id and *body (the final reply, or NULL). */
static int operation_add(DpsService *s, DpsRegistration *reg, char **id, char **body, size_t body_len,
                         uint64_t now, DpsOperation **ret) {
        DpsOperation *op = calloc(1, sizeof(DpsOperation));
        if (!op)
                return -ENOMEM;
        op->id = TAKE_PTR(*id);
        op->registration = reg;
        op->created_usec = now;
        op->body = TAKE_PTR(*body);
        op->body_len = body_len;
        if (!tsearch(op, &s->operations, operation_cmp)) {
                operation_free(op);
                return -ENOMEM;
        }
        TAILQ_INSERT_TAIL(&s->operation_queue, op, by_age);
        TAILQ_INSERT_TAIL(&reg->operations, op, by_registration);
        reg->n_operations++;
        s->n_operations++;
        s->operation_bytes += op->body_len;
        *ret = op;
        return 0;
}

static void operations_purge_expired(DpsService *s, uint64_t now) {
        DpsOperation *op;

        while ((op = TAILQ_FIRST(&s->operation_queue))) {
                /* a clock going backwards must not keep operations forever */
                if (op->created_usec <= now && now - op->created_usec < s->limits.operation_lifetime_usec)
                        break;
                operation_remove(s, op);
        }
}

/* Stored operation records expire like the ones in memory; a few are removed with every new
 * one (oldest first, through the index on created_usec), so the table stays bounded at O(1)
 * amortised cost per registration. */
#define STORED_OPERATIONS_PURGE_BATCH 4

static void operations_purge_stored(DpsService *s, uint64_t now) {
        if (!s->store || now < s->limits.operation_lifetime_usec)
                return;
        (void) dps_store_purge_operations(s->store, now - s->limits.operation_lifetime_usec,
                                          STORED_OPERATIONS_PURGE_BATCH, NULL);
}

static DpsOperation *operation_find(DpsService *s, const char *id) {
        DpsOperation key = { .id = (char *) id };
        void **p = tfind(&key, &s->operations, operation_cmp);
        return p ? *p : NULL;
}

static DpsRegistration *registration_find(DpsService *s, const char *registration_id) {
        DpsRegistration key = { .registration_id = (char *) registration_id };
        void **p = tfind(&key, &s->registrations, registration_cmp);
        return p ? *p : NULL;
}

/* ---- service --------------------------------------------------------------------------- */

int dps_service_new(DpsService **ret) {
        if (!ret)
                return -EINVAL;

        DpsService *s = calloc(1, sizeof(DpsService));
        if (!s)
                return -ENOMEM;
        s->retry_after = DPS_RETRY_AFTER_DEFAULT;
        s->limits = DPS_LIMITS_DEFAULT;
        s->generation = 1;
        TAILQ_INIT(&s->operation_queue);
        if (dps_tpm_keys_new(&s->tpm_keys) < 0) {
                free(s);
                return -ENOMEM;
        }
        if (dps_ca_store_new(&s->ca_store) < 0) {
                dps_tpm_keys_free(s->tpm_keys);
                free(s);
                return -ENOMEM;
        }

        *ret = s;
        return 0;
}

DpsService *dps_service_free(DpsService *s) {
        DpsOperation *op;

        if (!s)
                return NULL;

        s->freeing = true;
        dps_webhook_free(s->webhook); /* its callbacks only free their context now */
        dps_latency_free(s->latency);
        free(s->webhook_cafile);
        while ((op = TAILQ_FIRST(&s->operation_queue)))
                operation_remove(s, op);
        tdestroy(s->registrations, registration_free);
        tdestroy(s->clients, client_free_void);
        dps_data_free(s->data);
        dps_tpm_keys_free(s->tpm_keys);
        dps_ca_store_free(s->ca_store);
        dps_store_free(s->store);
        free(s->data_path);
        free(s->id_scope_override);
        free(s);
        return NULL;
}

static void service_swap_data(DpsService *s, DpsData *d) {
        dps_data_free(s->data);
        s->data = d;
        /* every client's enrollment pointer is stale now: re-authenticated on next use */
        s->generation++;
}

void dps_service_set_data(DpsService *s, DpsData *data) {
        if (!s)
                return;
        service_swap_data(s, data);
}

const DpsData *dps_service_get_data(const DpsService *s) {
        return s ? s->data : NULL;
}

static bool stat_same(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
               a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

int dps_service_load(DpsService *s, const char *path, char **reterr_message) {
        _cleanup_free_ char *p = NULL;

        if (!s || !path)
                return -EINVAL;
        p = strdup(path);
        if (!p)
                return -ENOMEM;
        free(s->data_path);
        s->data_path = TAKE_PTR(p);
        s->have_failed_stat = false;
        s->data_stat = (struct stat) {};

        int r = dps_service_reload_if_changed(s, /* force= */ true, reterr_message);
        return r < 0 ? r : 0;
}

int dps_service_reload_if_changed(DpsService *s, bool force, char **reterr_message) {
        DpsData *d = NULL;
        struct stat st;
        int r;

        if (!s)
                return -EINVAL;
        if (!s->data_path)
                return 0;

        uint64_t now = now_usec(s);
        if (!force && s->data && now >= s->last_reload_check_usec &&
            now - s->last_reload_check_usec < RELOAD_CHECK_INTERVAL_USEC)
                return 0;
        s->last_reload_check_usec = now;

        if (stat(s->data_path, &st) < 0) {
                r = -errno;
                if (!force && s->data)
                        return 0; /* keep serving the last good data; reported by the next forced load */
                if (reterr_message)
                        (void) asprintf(reterr_message, "%s: %s", s->data_path, strerror(-r));
                return r;
        }
        if (!force && s->data && stat_same(&st, &s->data_stat))
                return 0;
        if (!force && s->have_failed_stat && stat_same(&st, &s->failed_stat))
                return 0; /* already reported */

        r = dps_data_load(s->data_path, &d, reterr_message);
        if (r < 0) {
                s->failed_stat = st;
                s->have_failed_stat = true;
                return r;
        }

        s->data_stat = st;
        s->have_failed_stat = false;
        service_swap_data(s, d);
        return 1;
}

_printf_(2, 3) static void set_message(char **ret, const char *fmt, ...) {
        va_list ap;
        char *m = NULL;

        if (!ret)
                return;
        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        free(*ret);
        *ret = m;
}

/* Admin edits (see service.h).  The data file stays the source of truth: the edit is applied to
 * a copy of the current data, the copy is written atomically (temp file, fsync, rename) under
 * an advisory flock() on the data file's directory (as edgeprov-dpsctl --data takes it;
 * here without waiting: -EBUSY), and only then
 * replaces the data in use.  Other processes (edgeprov-dpsctl --data, the HTTPS front) see the
 * new file by its changed stat, like any other change. */
int dps_service_edit_data(DpsService *s, DpsDataEditFunc edit, void *userdata, char **reterr_message) {
        _cleanup_(dps_data_freep) DpsData *n = NULL;
        _cleanup_free_ char *lock_path = NULL, *msg = NULL;
        _cleanup_close_ int lock_fd = -EBADF;
        struct stat st;
        int r;

        if (!s || !edit)
                return -EINVAL;

        if (s->data_path) {
                /* the lock edgeprov-dpsctl --data takes: the data file's directory (the file is
                 * replaced on every save, so it cannot carry the lock) */
                lock_path = strdup(s->data_path);
                if (!lock_path)
                        return -ENOMEM;
                const char *dir = dirname(lock_path);
                lock_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (lock_fd < 0) {
                        r = -errno;
                        if (reterr_message)
                                set_message(reterr_message, "%s: %s", dir, strerror(-r));
                        return r;
                }
                if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
                        r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                        if (reterr_message)
                                set_message(reterr_message, "the data file is being edited by another "
                                                                "process, retry");
                        return r;
                }

                /* pick up edits made to the file since it was last read */
                s->last_reload_check_usec = 0;
                r = dps_service_reload_if_changed(s, /* force= */ false, &msg);
                if (r < 0) {
                        if (reterr_message)
                                set_message(reterr_message, "the data file on disk is broken, fix it first: %s",
                                                strna(msg));
                        return -EBADMSG;
                }
        }
        if (!s->data)
                return -ENODATA;

        r = dps_data_copy(s->data, &n);
        if (r < 0)
                return r;
        r = edit(n, userdata, reterr_message);
        if (r < 0)
                return r;

        if (s->data_path) {
                r = dps_data_save(n, s->data_path);
                if (r < 0) {
                        if (reterr_message)
                                set_message(reterr_message, "%s: %s", s->data_path, strerror(-r));
                        return r;
                }
                if (stat(s->data_path, &st) >= 0) {
                        s->data_stat = st;
                        s->have_failed_stat = false;
                } else
                        s->data_stat = (struct stat) {}; /* read again at the next check */
        }
        service_swap_data(s, TAKE_PTR(n));
        return 0;
}

int dps_service_set_id_scope(DpsService *s, const char *id_scope) {
        char *c = NULL;

        if (!s)
                return -EINVAL;
        if (id_scope) {
                if (!dps_id_scope_is_valid(id_scope))
                        return -EINVAL;
                c = strdup(id_scope);
                if (!c)
                        return -ENOMEM;
        }
        free(s->id_scope_override);
        s->id_scope_override = c;
        s->generation++;
        return 0;
}

int dps_service_open_store(DpsService *s, const char *path, char **reterr_message) {
        DpsStore *st = NULL;
        int r;

        if (!s || !path)
                return -EINVAL;
        r = dps_store_open(path, &st, reterr_message);
        if (r < 0)
                return r;
        dps_store_free(s->store);
        s->store = st;
        /* the CA certificates live in the same database, in a table of their own */
        return dps_ca_store_open_db(s->ca_store, path, reterr_message);
}

DpsCaStore *dps_service_get_ca_store(const DpsService *s) {
        return s ? s->ca_store : NULL;
}

DpsStore *dps_service_get_store(const DpsService *s) {
        return s ? s->store : NULL;
}

const char *dps_service_get_id_scope(const DpsService *s) {
        return s ? service_id_scope(s) : NULL;
}

int dps_service_set_retry_after(DpsService *s, unsigned seconds) {
        if (!s || seconds < 1 || seconds > DPS_RETRY_AFTER_MAX)
                return -EINVAL;
        s->retry_after = seconds;
        return 0;
}

void dps_service_set_limits(DpsService *s, const DpsServiceLimits *limits) {
        if (!s || !limits)
                return;
        s->limits = *limits;
        if (s->limits.max_operations_per_registration == 0)
                s->limits.max_operations_per_registration = 1;
}

void dps_service_set_clock(DpsService *s, DpsClockFunc func, void *userdata) {
        if (!s)
                return;
        s->clock = func;
        s->clock_userdata = userdata;
}

size_t dps_service_n_clients(const DpsService *s) {
        return s ? s->n_clients : 0;
}

size_t dps_service_n_operations(const DpsService *s) {
        return s ? s->n_operations : 0;
}

const char *dps_client_get_registration_id(const DpsClient *c) {
        return c ? c->registration_id : NULL;
}

/* ---- authentication --------------------------------------------------------------------- */

/* 0: good; -EKEYEXPIRED: good signature, expired; -EKEYREJECTED: no match; other -errno. */
static int verify_with_key_b64(const SasToken *t, const char *key_b64, const char *resource, uint64_t now_sec) {
        _cleanup_free_ uint8_t *key = NULL;
        size_t key_len = 0;
        int r;

        if (!key_b64)
                return -EKEYREJECTED;
        r = base64_decode(key_b64, strlen(key_b64), &key, &key_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || key_len == 0)
                return -EKEYREJECTED; /* validated at load, cannot happen */
        r = sas_token_verify(t, key, key_len, resource, now_sec);
        explicit_bzero(key, key_len);
        return r;
}

static int verify_with_derived_key(const SasToken *t, const char *group_key_b64, const char *registration_id,
                                   const char *resource, uint64_t now_sec) {
        _cleanup_erase_ char *dk = NULL;
        int r;

        if (!group_key_b64)
                return -EKEYREJECTED;
        r = sas_derive_device_key(group_key_b64, registration_id, &dk);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return -EKEYREJECTED;
        return verify_with_key_b64(t, dk, resource, now_sec);
}

/* Tries the primary then the secondary key; returns the best outcome. */
static int verify_enrollment(const SasToken *t, const DpsEnrollment *e, const char *registration_id,
                             const char *resource, uint64_t now_sec) {
        const char *keys[] = { e->primary_key, e->secondary_key };
        int best = -EKEYREJECTED;

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                int r = e->enrollment_group_id
                                ? verify_with_derived_key(t, keys[i], registration_id, resource, now_sec)
                                : verify_with_key_b64(t, keys[i], resource, now_sec);
                if (r == 0 || r == -ENOMEM)
                        return r;
                if (r == -EKEYEXPIRED)
                        best = r;
        }
        return best;
}

/* TPM individual enrollment (src/dps/attest-tpm.c): no password → the challenge; otherwise a
 * SAS token signed with the key issued by the last challenge. */
static void client_authenticate_tpm(DpsClient *c, const DpsEnrollment *ind, uint64_t now) {
        _cleanup_free_ char *resource = NULL;
        uint64_t expiry = 0;
        int r;

        if (!c->password || c->password_len == 0) {
                c->auth = DPS_AUTH_TPM_CHALLENGE;
                return;
        }
        if (asprintf(&resource, "%s/registrations/%s", strempty(service_id_scope(c->service)), c->registration_id) <
            0) {
                resource = NULL;
                c->auth = DPS_AUTH_INTERNAL;
                return;
        }
        r = dps_tpm_verify(c->service->tpm_keys, c->registration_id, c->password, c->password_len, resource, now,
                           &expiry);
        c->auth = r == 0 ? DPS_AUTH_OK
                : r == -ENOKEY ? DPS_AUTH_TPM_NO_CHALLENGE
                : r == -EBADMSG ? DPS_AUTH_MALFORMED_TOKEN
                : r == -EBADR ? DPS_AUTH_WRONG_RESOURCE
                : r == -EKEYEXPIRED ? DPS_AUTH_EXPIRED
                : r == -EKEYREJECTED ? DPS_AUTH_BAD_SIGNATURE
                : DPS_AUTH_INTERNAL;
        if (r == 0) {
                c->enrollment = ind;
                c->expiry = expiry;
        }
}

static void client_authenticate(DpsClient *c, uint64_t now) {
        _cleanup_(sas_token_done) SasToken t = {};
        _cleanup_free_ char *resource = NULL;
        DpsService *s = c->service;
        const DpsData *d = s->data;
        uint64_t now_sec = now / USEC_PER_SEC;
        bool have_groups = false;
        int r;

        c->auth_generation = s->generation;
        c->enrollment = NULL;
        c->expiry = 0;

        const DpsEnrollment *ind = dps_data_find_individual(d, c->registration_id);
        for (size_t i = 0; d && i < d->n_groups; i++)
                if (d->groups[i].attestation == DPS_ATTESTATION_SYMMETRIC_KEY)
                        have_groups = true;

        /* X.509 (attest-x509.c): a client certificate and no SAS token, or an X.509 individual
         * enrollment */
        if (c->x509_chain && (ind ? ind->attestation == DPS_ATTESTATION_X509 : !c->password)) {
                free(c->x509_message);
                c->x509_message = NULL;
                r = dps_x509_authenticate(s->ca_store, d, c->registration_id, c->x509_chain, now, &c->enrollment,
                                          &c->expiry, &c->x509_message);
                c->auth = r == 0 ? DPS_AUTH_OK : r == -EACCES ? DPS_AUTH_X509 : DPS_AUTH_INTERNAL;
                if (r < 0)
                        c->enrollment = NULL;
                return;
        }

        if (!ind && !have_groups) {
                c->auth = DPS_AUTH_NOT_ENROLLED;
                return;
        }
        if (ind && ind->attestation == DPS_ATTESTATION_TPM) {
                client_authenticate_tpm(c, ind, now);
                return;
        }
        if (ind && ind->attestation != DPS_ATTESTATION_SYMMETRIC_KEY) {
                c->auth = DPS_AUTH_UNSUPPORTED_ATTESTATION;
                return;
        }
        if (!c->password || c->password_len == 0) {
                c->auth = DPS_AUTH_NO_TOKEN;
                return;
        }

        r = sas_token_parse(c->password, c->password_len, &t);
        if (r == -ENOMEM) {
                c->auth = DPS_AUTH_INTERNAL;
                return;
        }
        if (r < 0) {
                c->auth = DPS_AUTH_MALFORMED_TOKEN;
                return;
        }

        if (asprintf(&resource, "%s/registrations/%s", strempty(service_id_scope(s)), c->registration_id) < 0) {
                resource = NULL;
                c->auth = DPS_AUTH_INTERNAL;
                return;
        }
        if (!strcaseeq(t.resource, resource)) {
                c->auth = DPS_AUTH_WRONG_RESOURCE;
                return;
        }
        c->expiry = t.expiry;

        if (ind) {
                r = verify_enrollment(&t, ind, c->registration_id, resource, now_sec);
                c->auth = r == 0 ? DPS_AUTH_OK
                        : r == -EKEYEXPIRED ? DPS_AUTH_EXPIRED
                        : r == -ENOMEM ? DPS_AUTH_INTERNAL
                        : DPS_AUTH_BAD_SIGNATURE;
                if (r == 0)
                        c->enrollment = ind;
                return;
        }

        /* No individual enrollment: the first group whose derived key signed the token. */
        bool expired = false;
        for (size_t i = 0; i < d->n_groups; i++) {
                const DpsEnrollment *g = d->groups + i;
                if (g->attestation != DPS_ATTESTATION_SYMMETRIC_KEY)
                        continue;
                r = verify_enrollment(&t, g, c->registration_id, resource, now_sec);
                if (r == 0) {
                        c->auth = DPS_AUTH_OK;
                        c->enrollment = g;
                        return;
                }
                if (r == -ENOMEM) {
                        c->auth = DPS_AUTH_INTERNAL;
                        return;
                }
                if (r == -EKEYEXPIRED)
                        expired = true;
        }
        c->auth = expired ? DPS_AUTH_EXPIRED : DPS_AUTH_NO_GROUP_MATCH;
}

/* The current outcome: recomputed after a data reload, expiry checked every time. */
static DpsAuth client_auth(DpsClient *c, uint64_t now) {
        if (c->auth_generation != c->service->generation)
                client_authenticate(c, now);
        if (c->auth == DPS_AUTH_OK && c->expiry <= now / USEC_PER_SEC)
                return DPS_AUTH_EXPIRED;
        return c->auth;
}

/* ---- connections ------------------------------------------------------------------------ */

int dps_service_connect(DpsService *s, const void *conn, const char *client_id, const char *username,
                        const char *password, size_t password_len, DpsClient **ret_client) {
        _cleanup_(dps_username_done) DpsUsername u = {};
        _cleanup_free_ char *msg = NULL;
        int r;

        if (!s || !conn)
                return -EINVAL;

        /* A reconnect may reuse the key. */
        dps_service_disconnect(s, conn);

        if (!username)
                return DPS_CONNECT_NOT_OURS;
        r = dps_username_parse(username, &u);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return DPS_CONNECT_NOT_OURS;

        r = dps_service_reload_if_changed(s, /* force= */ false, &msg);
        if (r < 0)
                log_error_errno(r, "Failed to reload the enrollment data, keeping the previous data: %s",
                                strna(msg));
        else if (r > 0)
                log_info("Reloaded the enrollment data from %s.", s->data_path);

        if (!streq_ptr(client_id, u.registration_id)) {
                log_notice("Refusing DPS connection: client id '%s' is not the registration id '%s'.",
                           strna(client_id), u.registration_id);
                return DPS_CONNECT_REJECTED;
        }
        const char *scope = service_id_scope(s);
        if (!scope || !strcaseeq(scope, u.id_scope)) {
                log_notice("Refusing DPS connection of '%s': ID scope '%s' is not served here.", u.registration_id,
                           u.id_scope);
                return DPS_CONNECT_REJECTED;
        }
        if (password_len > SAS_TOKEN_MAX)
                password_len = SAS_TOKEN_MAX + 1; /* enough to be refused as malformed */

        DpsClient *c = calloc(1, sizeof(DpsClient));
        if (!c)
                return -ENOMEM;
        c->service = s;
        c->conn = conn;
        c->registration_id = TAKE_PTR(u.registration_id);
        c->x509_chain = TAKE_PTR(s->pending_chain);
        if (password && password_len > 0) {
                c->password = malloc(password_len + 1);
                if (!c->password) {
                        client_free(c);
                        return -ENOMEM;
                }
                memcpy(c->password, password, password_len);
                c->password[password_len] = 0;
                c->password_len = password_len;
        }

        if (!tsearch(c, &s->clients, client_cmp)) {
                client_free(c);
                return -ENOMEM;
        }
        s->n_clients++;

        client_authenticate(c, now_usec(s));
        if (c->auth == DPS_AUTH_OK)
                log_debug("DPS client '%s' connected and authenticated (%s '%s').", c->registration_id,
                          c->enrollment->enrollment_group_id ? "enrollment group" : "individual enrollment",
                          c->enrollment->enrollment_group_id ?: c->enrollment->registration_id);
        else if (c->auth == DPS_AUTH_TPM_CHALLENGE)
                log_debug("DPS client '%s' connected without a token: a register gets the TPM challenge.",
                          c->registration_id);
        else if (c->auth == DPS_AUTH_TPM_NO_CHALLENGE)
                /* over HTTPS, a poll presenting the token that registered is vouched for by the front */
                log_debug("DPS client '%s' connected with a token but no live TPM challenge key.", c->registration_id);
        else
                log_info("DPS client '%s' connected, but will be refused: %s.", c->registration_id,
                         c->auth == DPS_AUTH_X509 && c->x509_message ? c->x509_message : auth_message_table[c->auth]);

        if (ret_client)
                *ret_client = c;
        return DPS_CONNECT_ACCEPTED;
}

DpsClient *dps_service_get_client(DpsService *s, const void *conn) {
        if (!s || !conn)
                return NULL;
        DpsClient key = { .conn = conn };
        void **p = tfind(&key, &s->clients, client_cmp);
        return p ? *p : NULL;
}

void dps_service_disconnect(DpsService *s, const void *conn) {
        DpsClient *c = dps_service_get_client(s, conn);
        if (!c)
                return;
        (void) tdelete(c, &s->clients, client_cmp);
        s->n_clients--;
        client_free(c);
}

/* ---- hub allocation ---------------------------------------------------------------------- */

/* -ln(x) for x = (top 53 bits of u + 0.5) / 2^53, without libm, bit-for-bit reproducible. */
static double neg_log_unit(uint64_t u) {
        double x = ((double) (u >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */
        int e = 0;

        while (x < 0.5) {
                x *= 2.0;
                e++;
        }
        /* ln(x) = 2 atanh(t), t = (x-1)/(x+1) in [-1/3, 0) */
        double t = (x - 1.0) / (x + 1.0), t2 = t * t, term = t, sum = 0.0;
        for (int k = 1; k < 80; k += 2) {
                sum += term / k;
                term *= t2;
        }
        return (double) e * 0.69314718055994530942 - 2.0 * sum;
}

static void lowercase(char *s) {
        for (; *s; s++)
                if (*s >= 'A' && *s <= 'Z')
                        *s = (char) (*s - 'A' + 'a');
}

/* Weighted rendezvous hashing: each hub scores -ln(U)/weight with U uniform from
 * HMAC-SHA256(key = hub name, data = registration id), both lowercased; the lowest wins.
 * The same id always lands on the same hub, hubs win in proportion to their weights, and
 * adding or removing a hub only moves the ids that hub gains or loses. */
static int hub_score(const char *hub, const char *registration_id, unsigned weight, double *ret) {
        _cleanup_free_ char *h = strdup(hub), *id = strdup(registration_id);
        uint8_t mac[32];
        int r;

        if (!h || !id)
                return -ENOMEM;
        lowercase(h);
        lowercase(id);
        r = hmac_sha256(h, strlen(h), id, strlen(id), mac);
        if (r < 0)
                return r;
        uint64_t u = 0;
        for (size_t i = 0; i < 8; i++)
                u = u << 8 | mac[i];
        *ret = neg_log_unit(u) / (double) MAX(weight, 1u);
        return 0;
}

/* The weighted rendezvous hash over the candidate hubs (the enrollment's iotHubs, else the
 * linked hubs with applyAllocationPolicy) that keep() accepts (all when keep is NULL). */
static int allocate_hashed(const DpsData *d, const DpsEnrollment *e, const char *registration_id,
                           bool (*keep)(const DpsLinkedHub *h, void *userdata), void *userdata, const char **ret_hub) {
        const char *best = NULL;
        double best_score = 0;
        int r;

        size_t n = e->n_iot_hubs > 0 ? e->n_iot_hubs : d->n_hubs;
        for (size_t i = 0; i < n; i++) {
                const DpsLinkedHub *h;
                if (e->n_iot_hubs > 0) {
                        h = dps_data_find_hub(d, e->iot_hubs[i]);
                        if (!h)
                                continue; /* validated at load */
                } else {
                        h = d->hubs + i;
                        if (!h->apply_allocation_policy)
                                continue;
                }
                if (keep && !keep(h, userdata))
                        continue;

                double score;
                r = hub_score(h->name, registration_id, h->allocation_weight, &score);
                if (r < 0)
                        return r;
                if (!best || score < best_score || (score == best_score && strcasecmp(h->name, best) < 0)) {
                        best = h->name;
                        best_score = score;
                }
        }
        if (!best)
                return -ENXIO;

        *ret_hub = best;
        return 0;
}

static int static_hub(const DpsData *d, const DpsEnrollment *e, const char **ret_hub) {
        const DpsLinkedHub *h = dps_data_find_hub(d, e->iot_hub_host_name);
        *ret_hub = h ? h->name : e->iot_hub_host_name;
        return 0;
}

int dps_allocate_hub(const DpsData *d, const DpsEnrollment *e, const char *registration_id, const char **ret_hub) {
        if (!d || !e || !registration_id || !ret_hub)
                return -EINVAL;
        if (e->iot_hub_host_name)
                return static_hub(d, e, ret_hub);
        return allocate_hashed(d, e, registration_id, NULL, NULL, ret_hub);
}

typedef struct LatencyFilter {
        DpsLatencyFunc latency;
        void *userdata;
        bool found;                /* a candidate was measured reachable */
        uint64_t best;             /* its lowest connect time */
        uint64_t limit;            /* ties: up to this */
} LatencyFilter;

static bool keep_measured(const DpsLinkedHub *h, void *userdata) {
        LatencyFilter *f = userdata;
        uint64_t t;
        if (f->latency(h->name, &t, f->userdata) < 0)
                return false;
        if (!f->found || t < f->best)
                f->best = t;
        f->found = true;
        return true;
}

static bool keep_tied(const DpsLinkedHub *h, void *userdata) {
        LatencyFilter *f = userdata;
        uint64_t t;
        return f->latency(h->name, &t, f->userdata) >= 0 && t <= f->limit;
}

static bool keep_not_unreachable(const DpsLinkedHub *h, void *userdata) {
        LatencyFilter *f = userdata;
        return f->latency(h->name, NULL, f->userdata) != -EHOSTUNREACH;
}

int dps_allocate_hub_latency(const DpsData *d, const DpsEnrollment *e, const char *registration_id,
                             DpsLatencyFunc latency, void *userdata, const char **ret_hub) {
        LatencyFilter f = { .latency = latency, .userdata = userdata };
        const char *ignored;
        int r;

        if (!d || !e || !registration_id || !latency || !ret_hub)
                return -EINVAL;
        if (e->iot_hub_host_name)
                return static_hub(d, e, ret_hub);

        /* the lowest connect time among the reachable candidates… */
        r = allocate_hashed(d, e, registration_id, keep_measured, &f, &ignored);
        if (r < 0 && r != -ENXIO)
                return r;
        if (f.found) {
                /* …with ties (within max(1 ms, 20 %)) broken by the weighted hash */
                f.limit = f.best + MAX((uint64_t) DPS_LATENCY_TIE_USEC, f.best * DPS_LATENCY_TIE_PERCENT / 100);
                return allocate_hashed(d, e, registration_id, keep_tied, &f, ret_hub);
        }
        /* nothing measured yet: hashed, without the hubs known to be unreachable */
        return allocate_hashed(d, e, registration_id, keep_not_unreachable, &f, ret_hub);
}

/* ---- replies ------------------------------------------------------------------------------ */

void dps_reply_done(DpsReply *r) {
        if (!r)
                return;
        free(r->topic);
        free(r->body);
        *r = (DpsReply) {};
}

/* The response topic.  An empty rid (unparseable request topic) still gets a reply. */
static int reply_topic(unsigned status, const char *rid, int retry_after, char **ret) {
        int r;

        if (!isempty(rid)) {
                r = dps_response_topic_format(status, rid, retry_after, ret);
                if (r != -EINVAL)
                        return r;
        }
        if (retry_after >= 0)
                r = asprintf(ret, DPS_RESPONSE_TOPIC_PREFIX "%u/?$rid=&retry-after=%d", status, retry_after);
        else
                r = asprintf(ret, DPS_RESPONSE_TOPIC_PREFIX "%u/?$rid=", status);
        return r < 0 ? -ENOMEM : 0;
}

_printf_(7, 8) static int reply_error(DpsService *s, const char *rid, unsigned status, int64_t code,
                                      int retry_after, DpsReply *ret, const char *fmt, ...) {
        _cleanup_json_ struct json_object *o = NULL;
        _cleanup_free_ char *message = NULL;
        char tracking[37], ts[32];
        DpsReply reply = { .status = status };
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&message, fmt, ap);
        va_end(ap);
        if (r < 0) {
                message = NULL;
                return -ENOMEM;
        }

        if (random_uuid(tracking) < 0)
                snprintf(tracking, sizeof(tracking), "00000000-0000-0000-0000-000000000000");
        if (format_timestamp(now_usec(s), ts) < 0)
                snprintf(ts, sizeof(ts), "1970-01-01T00:00:00.0000000Z");

        o = json_object_new_object();
        if (!o || json_add(o, "errorCode", json_object_new_int64(code)) < 0 ||
            json_add_string(o, "trackingId", tracking) < 0 || json_add_string(o, "message", message) < 0 ||
            json_add_string(o, "timestampUtc", ts) < 0)
                return -ENOMEM;

        r = json_to_string(o, &reply.body, &reply.body_len);
        if (r < 0)
                return r;
        r = reply_topic(status, rid, retry_after, &reply.topic);
        if (r < 0) {
                dps_reply_done(&reply);
                return r;
        }

        log_debug("DPS reply %u (errorCode %" PRIi64 ", trackingId %s): %s", status, code, tracking, message);
        *ret = reply;
        return 0;
}

/* 202 {operationId, status: assigning} with retry-after: the register answer, and the poll
 * answer while a custom allocation is still running. */
static int reply_assigning(DpsService *s, const char *rid, const char *operation_id, DpsReply *ret) {
        _cleanup_json_ struct json_object *o = json_object_new_object();
        DpsReply reply = { .status = 202 };
        int r;

        if (!o || json_add_string(o, "operationId", operation_id) < 0 || json_add_string(o, "status", "assigning") < 0)
                return -ENOMEM;
        r = json_to_string(o, &reply.body, &reply.body_len);
        if (r < 0)
                return r;
        r = reply_topic(202, rid, (int) s->retry_after, &reply.topic);
        if (r < 0) {
                dps_reply_done(&reply);
                return r;
        }
        *ret = reply;
        return 0;
}

static int reply_auth_error(DpsClient *c, const char *rid, DpsAuth auth, DpsReply *ret) {
        DpsService *s = c->service;

        switch (auth) {
        case DPS_AUTH_NOT_ENROLLED:
                return reply_error(s, rid, 404, DPS_ERROR_NOT_ENROLLED, -1, ret,
                                   "No enrollment found for registration id '%s'", c->registration_id);
        case DPS_AUTH_INTERNAL:
                return reply_error(s, rid, 500, DPS_ERROR_INTERNAL, -1, ret, "Internal error");
        case DPS_AUTH_UNSUPPORTED_ATTESTATION: {
                const DpsEnrollment *e = dps_data_find_individual(s->data, c->registration_id);
                return reply_error(s, rid, 401, DPS_ERROR_UNAUTHORIZED, -1, ret,
                                   "Unauthorized: attestation type '%s' is not supported over MQTT",
                                   e ? strna(dps_attestation_type_to_string(e->attestation)) : "n/a");
        }
        case DPS_AUTH_NO_TOKEN:
        case DPS_AUTH_MALFORMED_TOKEN:
        case DPS_AUTH_WRONG_RESOURCE:
        case DPS_AUTH_EXPIRED:
        case DPS_AUTH_BAD_SIGNATURE:
        case DPS_AUTH_NO_GROUP_MATCH:
        case DPS_AUTH_X509:
                return reply_error(s, rid, 401, DPS_ERROR_UNAUTHORIZED, -1, ret, "%s",
                                   c->x509_message ?: auth_message_table[auth]);
        case DPS_AUTH_TPM_CHALLENGE:
        case DPS_AUTH_TPM_NO_CHALLENGE:
        case DPS_AUTH_OK:
        case _DPS_AUTH_MAX:
                break;
        }
        return reply_error(s, rid, 401, DPS_ERROR_UNAUTHORIZED, -1, ret, "%s",
                           auth < _DPS_AUTH_MAX ? auth_message_table[auth] : "Unauthorized");
}

/* ---- requests ------------------------------------------------------------------------------ */

/* For a topic the parser refused: the $rid value if it is echoable, else "". */
static char *lenient_rid(const char *topic) {
        const char *q = strchr(topic, '?');
        if (!q)
                return NULL;
        for (const char *p = q + 1; p;) {
                const char *v = startswith(p, "$rid=");
                if (v) {
                        size_t l = strcspn(v, "&");
                        if (l == 0 || l > DPS_RID_MAX)
                                return NULL;
                        for (size_t i = 0; i < l; i++) {
                                unsigned char ch = v[i];
                                if (ch <= 0x20 || ch >= 0x7f || ch == '#' || ch == '+')
                                        return NULL;
                        }
                        return strndup(v, l);
                }
                p = strchr(p, '&');
                if (p)
                        p++;
        }
        return NULL;
}

static int registration_state_common(struct json_object *st, const DpsRegistration *reg) {
        char created[32], updated[32];

        if (format_timestamp(reg->created_usec, created) < 0 || format_timestamp(reg->last_updated_usec, updated) < 0)
                return -EINVAL;
        if (json_add_string(st, "registrationId", reg->registration_id) < 0 ||
            json_add_string(st, "createdDateTimeUtc", created) < 0)
                return -ENOMEM;
        return 0;
}

/* The 200 body for the operation: assigned, disabled or failed. */
static int build_result(const char *operation_id, const DpsRegistration *reg, const char *etag,
                        const char *payload_json, int64_t error_code, const char *error_message, char **ret,
                        size_t *ret_len) {
        _cleanup_json_ struct json_object *o = NULL, *st = NULL;
        char updated[32];
        int r;

        if (format_timestamp(reg->last_updated_usec, updated) < 0)
                return -EINVAL;

        o = json_object_new_object();
        st = json_object_new_object();
        if (!o || !st)
                return -ENOMEM;

        r = registration_state_common(st, reg);
        if (r < 0)
                return r;

        if (reg->status == DPS_STATUS_ASSIGNED) {
                if (json_add_string(st, "assignedHub", reg->assigned_hub) < 0 ||
                    json_add_string(st, "deviceId", reg->device_id) < 0)
                        return -ENOMEM;
        }
        if (json_add_string(st, "status", dps_status_to_string(reg->status)) < 0)
                return -ENOMEM;
        if (reg->status == DPS_STATUS_ASSIGNED) {
                if (json_add_string(st, "substatus", reg->substatus ?: "initialAssignment") < 0)
                        return -ENOMEM;
        } else {
                if (json_add(st, "errorCode", json_object_new_int64(error_code)) < 0 ||
                    json_add_string(st, "errorMessage", error_message) < 0)
                        return -ENOMEM;
        }
        if (json_add_string(st, "lastUpdatedDateTimeUtc", updated) < 0 || json_add_string(st, "etag", etag) < 0)
                return -ENOMEM;

        if (reg->enrollment_group_id) {
                _cleanup_json_ struct json_object *sk = json_object_new_object();
                if (!sk || json_add_string(sk, "enrollmentGroupId", reg->enrollment_group_id) < 0)
                        return -ENOMEM;
                if (json_add(st, "symmetricKey", TAKE_PTR(sk)) < 0)
                        return -ENOMEM;
        }

        if (reg->status == DPS_STATUS_ASSIGNED && payload_json) {
                struct json_object *p = NULL;
                r = json_parse_limited(payload_json, strlen(payload_json), DPS_BODY_MAX, DPS_JSON_MAX_DEPTH, &p);
                if (r == -ENOMEM)
                        return r;
                if (r >= 0 && p && json_add(st, "payload", p) < 0)
                        return -ENOMEM;
        }

        if (json_add_string(o, "operationId", operation_id) < 0 ||
            json_add_string(o, "status", dps_status_to_string(reg->status)) < 0 ||
            json_add(o, "registrationState", TAKE_PTR(st)) < 0)
                return -ENOMEM;

        return json_to_string(o, ret, ret_len);
}

/* A token bucket of limits.registrations_per_minute tokens, refilled continuously: 0 when a
 * registration may go ahead (and takes its token), else the seconds until the next token
 * (the retry-after of the 429). */
static int rate_limit_take(DpsService *s, uint64_t now) {
        unsigned rate = s->limits.registrations_per_minute;

        if (rate == 0)
                return 0;
        /* tokens in µs-of-a-token units: one token = 60 s / rate */
        uint64_t per_token = 60 * USEC_PER_SEC / rate, cap = per_token * rate;
        if (s->rate_last_usec == 0 || now < s->rate_last_usec)
                s->rate_budget_usec = cap;
        else
                s->rate_budget_usec = MIN(cap, s->rate_budget_usec + (now - s->rate_last_usec));
        s->rate_last_usec = now;
        if (s->rate_budget_usec >= per_token) {
                s->rate_budget_usec -= per_token;
                return 0;
        }
        uint64_t missing = per_token - s->rate_budget_usec;
        return (int) MIN((missing + USEC_PER_SEC - 1) / USEC_PER_SEC, (uint64_t) DPS_RETRY_AFTER_MAX);
}

static const char *substatus_for(const DpsRegistration *reg) {
        return reg->substatus ?: "initialAssignment";
}

/* reprovisionPolicy of the enrollment (§7.4); both default to true. */
static void reprovision_policy(const DpsEnrollment *e, bool *ret_update, bool *ret_migrate) {
        struct json_object *p = NULL, *v = NULL;

        *ret_update = *ret_migrate = true;
        if (!e->json || !json_object_object_get_ex(e->json, "reprovisionPolicy", &p) ||
            !json_object_is_type(p, json_type_object))
                return;
        if (json_object_object_get_ex(p, "updateHubAssignment", &v) && json_object_is_type(v, json_type_boolean))
                *ret_update = json_object_get_boolean(v);
        if (json_object_object_get_ex(p, "migrateDeviceData", &v) && json_object_is_type(v, json_type_boolean))
                *ret_migrate = json_object_get_boolean(v);
}

/* The enrollment's initialTwin as JSON text (NULL when it has none). */
static int enrollment_twin(const DpsEnrollment *e, char **ret) {
        struct json_object *t = NULL;
        size_t l;

        *ret = NULL;
        if (!e->json || !json_object_object_get_ex(e->json, "initialTwin", &t) || !t ||
            !json_object_is_type(t, json_type_object))
                return 0;
        return json_to_string(t, ret, &l);
}

/* Loads the durable record of reg (if any) over the in-memory one: another process (the admin
 * tool) may have deleted or changed it, and after a restart only the store knows it. */
static int registration_refresh(DpsService *s, DpsRegistration *reg) {
        _cleanup_(dps_record_done) DpsRecord rec = {};
        int r;

        if (!s->store)
                return 0;
        r = dps_store_get(s->store, reg->registration_id, &rec);
        if (r == -ENOENT) {
                /* deleted (or never stored): the next assignment is an initial one */
                free(reg->assigned_hub);
                free(reg->initial_hub);
                free(reg->substatus);
                free(reg->initial_twin);
                reg->assigned_hub = reg->initial_hub = reg->substatus = reg->initial_twin = NULL;
                reg->created_usec = 0;
                return 0;
        }
        if (r < 0)
                return r;
        free(reg->assigned_hub);
        free(reg->initial_hub);
        free(reg->substatus);
        free(reg->initial_twin);
        free(reg->device_id);
        reg->assigned_hub = TAKE_PTR(rec.assigned_hub);
        reg->initial_hub = TAKE_PTR(rec.initial_hub);
        reg->substatus = TAKE_PTR(rec.substatus);
        reg->initial_twin = TAKE_PTR(rec.initial_twin);
        reg->device_id = TAKE_PTR(rec.device_id);
        reg->created_usec = rec.created_usec;
        return 0;
}

static int take_string(char **dst, char *src) {
        free(*dst);
        *dst = src;
        return 0;
}

/* Applies one registration's outcome to its record, following the enrollment's reprovision
 * policy (dps-protocol.md §2.7, §7.4), and stores it durably when there is a store:
 *   first assignment                          → initialAssignment, the enrollment's initialTwin
 *   updateHubAssignment false                 → stays on its hub, record unchanged
 *   same hub, migrateDeviceData true          → unchanged (substatus and twin kept)
 *   same hub, migrateDeviceData false         → deviceDataReset, the enrollment's initialTwin
 *   other hub, back on the first one         → reprovisionedToInitialAssignment
 *   other hub, migrateDeviceData true         → deviceDataMigrated, twin kept
 *   other hub, migrateDeviceData false        → deviceDataReset, the enrollment's initialTwin
 * A failed or disabled outcome keeps the last assignment (hub, device id, twin) in the record.
 * On failure reg is left as it was (the caller answers 503). */
static int registration_update(DpsService *s, DpsRegistration *reg, const DpsEnrollment *e, DpsStatus status,
                               const char *device_id, const char *hub, int64_t error_code,
                               const char *error_message, const char *etag, uint64_t now,
                               const char *twin_override) {
        _cleanup_free_ char *n_hub = NULL, *n_initial = NULL, *n_substatus = NULL, *n_twin = NULL, *n_dev = NULL,
                            *n_group = NULL, *n_etag = NULL;
        const char *substatus = NULL;
        bool update, migrate, keep_twin = true;
        int r;

        r = registration_refresh(s, reg);
        if (r < 0)
                return r;
        reprovision_policy(e, &update, &migrate);

        const char *prev_hub = reg->assigned_hub;
        if (status != DPS_STATUS_ASSIGNED) {
                hub = prev_hub;
                device_id = reg->device_id;
                substatus = reg->substatus;
        } else if (!prev_hub) {
                substatus = "initialAssignment";
                keep_twin = false;
        } else if (!update) {
                hub = prev_hub;
                substatus = substatus_for(reg);
        } else if (strcaseeq(hub, prev_hub)) {
                substatus = migrate ? substatus_for(reg) : "deviceDataReset";
                keep_twin = migrate;
        } else if (reg->initial_hub && strcaseeq(hub, reg->initial_hub)) {
                substatus = "reprovisionedToInitialAssignment";
                keep_twin = migrate;
        } else {
                substatus = migrate ? "deviceDataMigrated" : "deviceDataReset";
                keep_twin = migrate;
        }

        if ((hub && !(n_hub = strdup(hub))) || (substatus && !(n_substatus = strdup(substatus))) ||
            (device_id && !(n_dev = strdup(device_id))) ||
            (e->enrollment_group_id && !(n_group = strdup(e->enrollment_group_id))) ||
            (etag && !(n_etag = strdup(etag))))
                return -ENOMEM;
        const char *initial = reg->initial_hub ?: (status == DPS_STATUS_ASSIGNED ? hub : NULL);
        if (initial && !(n_initial = strdup(initial)))
                return -ENOMEM;
        if (keep_twin) {
                if (reg->initial_twin && !(n_twin = strdup(reg->initial_twin)))
                        return -ENOMEM;
        } else {
                if (twin_override) {
                        n_twin = strdup(twin_override);
                        r = n_twin ? 0 : -ENOMEM;
                } else
                        r = enrollment_twin(e, &n_twin);
                if (r < 0)
                        return r;
        }
        uint64_t created = reg->created_usec ?: now;

        if (s->store) {
                DpsRecord rec = {
                        .registration_id = reg->registration_id,
                        .device_id = n_dev,
                        .assigned_hub = n_hub,
                        .initial_hub = n_initial,
                        .enrollment_group_id = n_group,
                        .status = (char *) dps_status_to_string(status),
                        .substatus = n_substatus,
                        .etag = (char *) etag,
                        .initial_twin = n_twin,
                        .error_code = status == DPS_STATUS_ASSIGNED ? 0 : error_code,
                        .error_message = status == DPS_STATUS_ASSIGNED ? NULL : (char *) error_message,
                        .created_usec = created,
                        .updated_usec = now,
                };
                r = dps_store_put(s->store, &rec);
                if (r < 0)
                        return r;
        }

        take_string(&reg->assigned_hub, TAKE_PTR(n_hub));
        take_string(&reg->initial_hub, TAKE_PTR(n_initial));
        take_string(&reg->substatus, TAKE_PTR(n_substatus));
        take_string(&reg->initial_twin, TAKE_PTR(n_twin));
        take_string(&reg->device_id, TAKE_PTR(n_dev));
        take_string(&reg->enrollment_group_id, TAKE_PTR(n_group));
        take_string(&reg->etag, TAKE_PTR(n_etag));
        reg->status = status;
        reg->created_usec = created;
        reg->last_updated_usec = now;
        return 0;
}

/* ---- custom allocation (webhook, dps-protocol.md §7.3) -------------------------------------- */

static DpsAllocationPolicy enrollment_policy(const DpsData *d, const DpsEnrollment *e) {
        if (e->allocation_policy >= 0)
                return e->allocation_policy;
        return d ? d->allocation_policy : DPS_ALLOCATION_HASHED;
}

typedef struct CustomAllocation {
        DpsService *service;
        char *operation_id;
        char *registration_id;
        char *enrollment_id;       /* registration id or enrollment group id */
        bool group;
        char *device_payload;      /* JSON, or NULL */
        uint64_t started_usec;
} CustomAllocation;

static CustomAllocation *custom_allocation_free(CustomAllocation *ca) {
        if (!ca)
                return NULL;
        free(ca->operation_id);
        free(ca->registration_id);
        free(ca->enrollment_id);
        free(ca->device_payload);
        free(ca);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(CustomAllocation *, custom_allocation_free);

/* The hubs the webhook may choose: only the current one when the device must stay there,
 * else the enrollment's iotHubHostName / iotHubs, else every linked hub that applies the
 * allocation policy.  Adds them to arr (when not NULL); true when check is one of them. */
static bool custom_linked_hubs(const DpsData *d, const DpsEnrollment *e, const DpsRegistration *reg,
                               struct json_object *arr, const char *check) {
        bool update, migrate, found = false;
        const char *one = NULL;

        reprovision_policy(e, &update, &migrate);
        if (!update && reg && reg->assigned_hub)
                one = reg->assigned_hub;
        else if (e->iot_hub_host_name)
                one = e->iot_hub_host_name;
        size_t n = one ? 1 : e->n_iot_hubs > 0 ? e->n_iot_hubs : d->n_hubs;
        for (size_t i = 0; i < n; i++) {
                const char *name = one ?: e->n_iot_hubs > 0 ? e->iot_hubs[i] : d->hubs[i].name;
                if (!one && e->n_iot_hubs == 0 && !d->hubs[i].apply_allocation_policy)
                        continue;
                if (arr)
                        (void) json_object_array_add(arr, json_object_new_string(name));
                if (check && strcaseeq(check, name))
                        found = true;
        }
        return found;
}

/* The AllocationRequest: the enrollment (keys removed), deviceRuntimeContext, linkedHubs. */
static int custom_request(const DpsData *d, const DpsEnrollment *e, const DpsRegistration *reg,
                          const char *registration_id, const char *payload_json, char **ret) {
        _cleanup_json_ struct json_object *o = json_object_new_object(), *en = NULL;
        struct json_object *ctx = json_object_new_object(), *hubs = json_object_new_array(), *att = NULL, *sk = NULL;
        size_t l;

        if (!o || json_add(o, "deviceRuntimeContext", ctx) < 0 || json_add(o, "linkedHubs", hubs) < 0)
                return -ENOMEM;
        if (json_object_deep_copy(e->json, &en, NULL) < 0 || !en)
                return -ENOMEM;
        if (json_object_object_get_ex(en, "attestation", &att) && json_object_object_get_ex(att, "symmetricKey", &sk) &&
            json_object_is_type(sk, json_type_object)) {
                json_object_object_del(sk, "primaryKey");
                json_object_object_del(sk, "secondaryKey");
        }
        if (json_add(o, e->enrollment_group_id ? "enrollmentGroup" : "individualEnrollment", TAKE_PTR(en)) < 0)
                return -ENOMEM;

        static const char *const att_key[_DPS_ATTESTATION_MAX] = {
                [DPS_ATTESTATION_SYMMETRIC_KEY] = "symmetricKey",
                [DPS_ATTESTATION_TPM] = "tpm",
                [DPS_ATTESTATION_X509] = "x509",
        };
        if (json_add_string(ctx, "registrationId", registration_id) < 0)
                return -ENOMEM;
        if (reg->assigned_hub && (json_add_string(ctx, "currentIotHubHostName", reg->assigned_hub) < 0 ||
                                  json_add_string(ctx, "currentDeviceId", reg->device_id) < 0))
                return -ENOMEM;
        if (e->attestation >= 0 && e->attestation < _DPS_ATTESTATION_MAX && att_key[e->attestation] &&
            json_add(ctx, att_key[e->attestation], json_object_new_object()) < 0)
                return -ENOMEM;
        if (payload_json) {
                struct json_object *p = NULL;
                int r = json_parse_limited(payload_json, strlen(payload_json), DPS_BODY_MAX, DPS_JSON_MAX_DEPTH, &p);
                if (r == -ENOMEM)
                        return r;
                if (r >= 0 && json_add(ctx, "payload", p ?: json_object_new_null()) < 0)
                        return -ENOMEM;
        }
        custom_linked_hubs(d, e, reg, hubs, NULL);

        const char *t = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &l);
        if (!t || !(*ret = strndup(t, l)))
                return -ENOMEM;
        return 0;
}

/* The operation's final body when the enrollment itself is gone or the record cannot be
 * written: a failed result that changes no record. */
static int custom_fail_body(DpsOperation *op, int64_t code, const char *message, uint64_t now) {
        _cleanup_free_ char *etag = NULL;
        DpsRegistration fake = {
                .registration_id = op->registration->registration_id,
                .status = DPS_STATUS_FAILED,
                .created_usec = op->registration->created_usec ?: now,
                .last_updated_usec = now,
        };
        int r = new_etag(&etag);
        if (r < 0)
                return r;
        return build_result(op->id, &fake, etag, NULL, code, message, &op->body, &op->body_len);
}

static void custom_done(void *userdata, long http_status, const char *body, size_t body_len, int error,
                        const char *error_text) {
        _cleanup_(custom_allocation_freep) CustomAllocation *ca = userdata;
        _cleanup_json_ struct json_object *answer = NULL;
        _cleanup_free_ char *message = NULL, *twin = NULL, *payload = NULL, *etag = NULL, *result = NULL;
        _cleanup_(dps_store_rollbackp) DpsStore *txn = NULL;
        DpsService *s = ca->service;
        DpsStatus status = DPS_STATUS_FAILED;
        const char *hub = NULL;
        int64_t code = 0;
        size_t result_len = 0, l;
        int r;

        if (error == -ECANCELED || s->freeing)
                return;
        DpsOperation *op = operation_find(s, ca->operation_id);
        if (!op || op->body)
                return; /* expired or dropped meanwhile */
        uint64_t now = now_usec(s);
        DpsRegistration *reg = op->registration;
        const DpsEnrollment *e = ca->group ? dps_data_find_group(s->data, ca->enrollment_id)
                                           : dps_data_find_individual(s->data, ca->enrollment_id);
        unsigned elapsed = (unsigned) ((now - MIN(now, ca->started_usec)) / 1000);

        if (!e) {
                r = custom_fail_body(op, DPS_ERROR_NOT_ENROLLED, "The enrollment was removed during the custom allocation",
                                     now);
                goto done;
        }
        if (error == -ETIMEDOUT) {
                code = DPS_ERROR_WEBHOOK_TIMEOUT;
                r = asprintf(&message, "The custom allocation webhook did not answer within %u ms",
                             s->webhook_timeout_msec ?: DPS_WEBHOOK_TIMEOUT_MSEC_DEFAULT);
        } else if (error == -E2BIG) {
                code = DPS_ERROR_WEBHOOK_BAD_ANSWER;
                r = asprintf(&message, "The custom allocation webhook's answer is larger than %d bytes",
                             DPS_WEBHOOK_RESPONSE_MAX);
        } else if (error < 0) {
                code = DPS_ERROR_WEBHOOK_FAILED;
                r = asprintf(&message, "The custom allocation webhook could not be reached: %s", strna(error_text));
        } else if (http_status < 200 || http_status > 299) {
                code = DPS_ERROR_WEBHOOK_FAILED;
                r = asprintf(&message, "The custom allocation webhook answered HTTP %ld", http_status);
        } else if (json_parse_limited(body, body_len, DPS_WEBHOOK_RESPONSE_MAX, DPS_JSON_MAX_DEPTH, &answer) < 0 ||
                   !json_object_is_type(answer, json_type_object)) {
                code = DPS_ERROR_WEBHOOK_BAD_ANSWER;
                r = asprintf(&message, "The custom allocation webhook's answer is not a JSON object");
        } else {
                struct json_object *v = NULL;
                /* the doc's table spells iotHubHostname, its examples iotHubHostName: accept both */
                hub = json_get_string(answer, "iotHubHostName") ?: json_get_string(answer, "iotHubHostname");
                if (!hub) {
                        code = DPS_ERROR_WEBHOOK_BAD_ANSWER;
                        r = asprintf(&message, "The custom allocation webhook's answer has no iotHubHostName");
                } else if (!custom_linked_hubs(s->data, e, reg, NULL, hub)) {
                        code = DPS_ERROR_NO_HUB;
                        r = asprintf(&message,
                                     "The custom allocation webhook chose hub '%.253s', which is not one of the linked "
                                     "hubs offered",
                                     hub);
                        hub = NULL;
                } else {
                        const DpsLinkedHub *h = dps_data_find_hub(s->data, hub);
                        hub = h ? h->name : NULL;
                        r = 0;
                        status = DPS_STATUS_ASSIGNED;
                        if (json_object_object_get_ex(answer, "initialTwin", &v) && json_object_is_type(v, json_type_object) &&
                            json_to_string(v, &twin, &l) < 0)
                                r = -ENOMEM;
                        if (r >= 0 && json_object_object_get_ex(answer, "payload", &v) && v &&
                            json_to_string(v, &payload, &l) < 0)
                                r = -ENOMEM;
                }
        }
        if (r < 0) {
                log_oom();
                return;
        }

        r = new_etag(&etag);
        if (r >= 0 && s->store) {
                r = dps_store_begin(s->store);
                if (r >= 0)
                        txn = s->store;
        }
        if (r >= 0) {
                const char *device_id = e->enrollment_group_id ? reg->registration_id
                                                               : (e->device_id ?: reg->registration_id);
                r = registration_update(s, reg, e, status, device_id, hub, code, message, etag, now, twin);
        }
        if (r >= 0)
                r = build_result(op->id, reg, etag, payload, code, message, &result, &result_len);
        if (r >= 0 && txn) {
                DpsOperationRecord orec = {
                        .id = op->id, .registration_id = reg->registration_id, .created_usec = op->created_usec,
                        .body = result,
                };
                r = dps_store_put_operation(txn, NULL, &orec);
                if (r >= 0)
                        r = dps_store_commit(txn);
                if (r >= 0)
                        txn = NULL;
        }
        if (r >= 0) {
                op->body = TAKE_PTR(result);
                op->body_len = result_len;
        } else
                r = custom_fail_body(op, DPS_ERROR_STORE, "The registration could not be recorded", now);

done:
        if (r < 0) {
                log_error_errno(r, "Custom allocation of '%s' could not be completed: %m", ca->registration_id);
                return;
        }
        s->operation_bytes += op->body_len;
        if (status == DPS_STATUS_ASSIGNED)
                log_info("Registration '%s' assigned to hub '%s' by the custom allocation webhook in %u ms "
                         "(operation %s).",
                         ca->registration_id, hub, elapsed, op->id);
        else
                log_notice("Registration '%s' failed after %u ms: %s (operation %s).", ca->registration_id, elapsed,
                           strna(message), op->id);
}

/* Queues the webhook POST and answers 202 assigning; the poll answers 202 until custom_done()
 * has stored the result.  The operation is kept in memory only while the webhook runs (a
 * restart loses it: the device's poll gets 404203 and it registers again). */
static int custom_allocation_start(DpsClient *c, DpsRegistration *reg, const char *rid, char *op_id,
                                   const char *payload_json, uint64_t now, DpsReply *ret) {
        _cleanup_(custom_allocation_freep) CustomAllocation *ca = NULL;
        _cleanup_free_ char *id = op_id, *request = NULL;
        DpsService *s = c->service;
        const DpsEnrollment *e = c->enrollment;
        struct json_object *def = NULL;
        DpsReply reply = {};
        int r;

        r = registration_refresh(s, reg);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return reply_error(s, rid, 503, DPS_ERROR_STORE, (int) s->retry_after, ret,
                                   "The registration could not be read, retry later");
        const char *url = NULL;
        if (json_object_object_get_ex(e->json, "customAllocationDefinition", &def))
                url = json_get_string(def, "webhookUrl");
        if (!url)
                return reply_error(s, rid, 500, DPS_ERROR_INTERNAL, -1, ret, "Internal error"); /* validated at load */

        if (!s->webhook) {
                r = dps_webhook_new(&s->webhook);
                if (r >= 0 && s->webhook_timeout_msec > 0)
                        dps_webhook_set_timeout(s->webhook, s->webhook_timeout_msec);
                if (r >= 0)
                        r = dps_webhook_set_cafile(s->webhook, s->webhook_cafile);
                if (r < 0) {
                        s->webhook = dps_webhook_free(s->webhook);
                        return r == -ENOMEM ? r
                                            : reply_error(s, rid, 500, DPS_ERROR_INTERNAL, -1, ret, "Internal error");
                }
        }
        if (dps_webhook_n_running(s->webhook) >= DPS_WEBHOOK_MAX_RUNNING)
                return reply_error(s, rid, 429, DPS_ERROR_THROTTLED, (int) s->retry_after, ret,
                                   "Too many custom allocations in progress, retry later");

        r = custom_request(s->data, e, reg, c->registration_id, payload_json, &request);
        if (r < 0)
                return r;
        ca = calloc(1, sizeof(CustomAllocation));
        if (!ca)
                return -ENOMEM;
        ca->service = s;
        ca->group = e->enrollment_group_id != NULL;
        ca->started_usec = now;
        ca->operation_id = strdup(id);
        ca->registration_id = strdup(c->registration_id);
        ca->enrollment_id = strdup(e->enrollment_group_id ?: e->registration_id);
        if (!ca->operation_id || !ca->registration_id || !ca->enrollment_id)
                return -ENOMEM;

        r = reply_assigning(s, rid, id, &reply);
        if (r < 0)
                return r;

        DpsOperation *op;
        char *no_body = NULL;
        r = operation_add(s, reg, &id, &no_body, 0, now, &op);
        if (r < 0) {
                dps_reply_done(&reply);
                return r;
        }

        r = dps_webhook_post(s->webhook, url, request, custom_done, ca);
        if (r < 0) {
                operation_remove(s, op);
                dps_reply_done(&reply);
                if (r == -ENOMEM)
                        return r;
                return reply_error(s, rid, 429, DPS_ERROR_THROTTLED, (int) s->retry_after, ret,
                                   "The custom allocation could not be started, retry later");
        }
        TAKE_PTR(ca);
        while (reg->n_operations > s->limits.max_operations_per_registration)
                operation_remove(s, TAILQ_FIRST(&reg->operations));
        log_info("Registration '%s': custom allocation webhook called (operation %s).", c->registration_id, op->id);
        *ret = reply;
        return 0;
}

static int service_latency(const char *hub, uint64_t *ret_usec, void *userdata) {
        const DpsService *s = userdata;
        return s->latency ? dps_latency_get(s->latency, hub, ret_usec) : -ENODATA;
}


/* The geoLatency probes follow the data: created once a hub has a probeAddress, synced after
 * every change of the data. */
static int latency_process(DpsService *s) {
        int r;

        if (!s->data)
                return 0;
        if (s->latency_generation != s->generation) {
                bool any = false;
                for (size_t i = 0; i < s->data->n_hubs; i++)
                        if (s->data->hubs[i].probe_address)
                                any = true;
                if (any && !s->latency) {
                        r = dps_latency_new(&s->latency);
                        if (r < 0)
                                return r;
                        dps_latency_set_interval(s->latency, s->latency_interval_usec, s->latency_timeout_usec);
                }
                if (s->latency) {
                        r = dps_latency_sync(s->latency, s->data);
                        if (r < 0)
                                return r;
                }
                s->latency_generation = s->generation;
        }
        return s->latency ? dps_latency_process(s->latency, clock_now_usec(CLOCK_MONOTONIC)) : 0;
}

int dps_service_process(DpsService *s) {
        int r = 0, k;

        if (!s)
                return -EINVAL;
        if (s->webhook)
                r = dps_webhook_process(s->webhook);
        k = latency_process(s);
        return r < 0 ? r : k;
}

bool dps_service_has_pending_work(const DpsService *s) {
        if (!s)
                return false;
        return (s->webhook && dps_webhook_n_running(s->webhook) > 0) || s->latency ||
               s->latency_generation != s->generation;
}

void dps_service_set_latency_options(DpsService *s, uint64_t interval_usec, uint64_t timeout_usec) {
        if (!s)
                return;
        s->latency_interval_usec = interval_usec;
        s->latency_timeout_usec = timeout_usec;
        if (s->latency)
                dps_latency_set_interval(s->latency, interval_usec, timeout_usec);
}

int dps_service_set_webhook_options(DpsService *s, unsigned timeout_msec, const char *cafile) {
        char *c = NULL;

        if (!s)
                return -EINVAL;
        if (cafile && !(c = strdup(cafile)))
                return -ENOMEM;
        free(s->webhook_cafile);
        s->webhook_cafile = c;
        s->webhook_timeout_msec = timeout_msec;
        if (s->webhook) {
                dps_webhook_set_timeout(s->webhook, timeout_msec);
                return dps_webhook_set_cafile(s->webhook, cafile);
        }
        return 0;
}

static int handle_register(DpsClient *c, const char *rid, const void *payload, size_t len, uint64_t now,
                           DpsReply *ret) {
        _cleanup_(dps_register_request_done) DpsRegisterRequest req = {};
        _cleanup_free_ char *op_id = NULL, *etag = NULL, *body = NULL, *topic = NULL;
        _cleanup_(dps_store_rollbackp) DpsStore *txn = NULL;
        DpsService *s = c->service;
        const DpsEnrollment *e = c->enrollment;
        const char *hub = NULL, *error_message = NULL;
        int64_t error_code = 0;
        DpsStatus status;
        size_t body_len = 0;
        bool custom = false;
        int r;

        r = dps_register_request_parse(payload, len, &req);
        if (r == -ENOMEM)
                return r;
        if (r == -E2BIG)
                return reply_error(s, rid, 413, DPS_ERROR_TOO_LARGE, -1, ret,
                                   "Request body larger than %d bytes", DPS_BODY_MAX);
        if (r < 0)
                return reply_error(s, rid, 400, DPS_ERROR_BAD_BODY, -1, ret,
                                   "Malformed register request: the body must be empty or a DeviceRegistration "
                                   "JSON object (nested at most %d levels)",
                                   DPS_JSON_MAX_DEPTH);
        if (req.registration_id && !strcaseeq(req.registration_id, c->registration_id))
                return reply_error(s, rid, 400, DPS_ERROR_REGISTRATION_ID_MISMATCH, -1, ret,
                                   "registrationId in the body does not match the registration id of the connection");

        /* outcome */
        if (!e->enabled) {
                status = DPS_STATUS_DISABLED;
                error_code = DPS_ERROR_DISABLED;
                error_message = "Enrollment is disabled";
        } else if (enrollment_policy(s->data, e) == DPS_ALLOCATION_CUSTOM) {
                custom = true;
                status = DPS_STATUS_ASSIGNING;
        } else {
                r = enrollment_policy(s->data, e) == DPS_ALLOCATION_GEO_LATENCY
                            ? dps_allocate_hub_latency(s->data, e, c->registration_id, service_latency, s, &hub)
                            : dps_allocate_hub(s->data, e, c->registration_id, &hub);
                if (r == -ENXIO) {
                        status = DPS_STATUS_FAILED;
                        error_code = DPS_ERROR_NO_HUB;
                        error_message = "No IoT hub is available for this enrollment";
                } else if (r < 0)
                        return reply_error(s, rid, 500, DPS_ERROR_INTERNAL, -1, ret, "Internal error");
                else
                        status = DPS_STATUS_ASSIGNED;
        }

        /* capacity */
        int wait = rate_limit_take(s, now);
        if (wait > 0)
                return reply_error(s, rid, 429, DPS_ERROR_THROTTLED, wait, ret,
                                   "Too many registrations: at most %u a minute, retry after %d s",
                                   s->limits.registrations_per_minute, wait);
        operations_purge_expired(s, now);
        DpsRegistration *reg = registration_find(s, c->registration_id);
        if (!reg && s->n_registrations >= s->limits.max_registrations)
                return reply_error(s, rid, 429, DPS_ERROR_THROTTLED, (int) s->retry_after, ret,
                                   "Too many registrations");
        if (s->n_operations >= s->limits.max_operations || s->operation_bytes >= s->limits.max_operation_bytes)
                return reply_error(s, rid, 429, DPS_ERROR_THROTTLED, (int) s->retry_after, ret,
                                   "Too many operations in progress, retry later");

        if (!reg) {
                reg = calloc(1, sizeof(DpsRegistration));
                if (!reg)
                        return -ENOMEM;
                TAILQ_INIT(&reg->operations);
                reg->registration_id = strdup(c->registration_id);
                if (!reg->registration_id || !tsearch(reg, &s->registrations, registration_cmp)) {
                        registration_free(reg);
                        return -ENOMEM;
                }
                s->n_registrations++;
                reg->created_usec = now;
        }

        r = new_operation_id(&op_id);
        if (r == -ENOMEM)
                return r;
        if (r >= 0)
                r = new_etag(&etag);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return reply_error(s, rid, 500, DPS_ERROR_INTERNAL, -1, ret, "Internal error");

        if (custom)
                return custom_allocation_start(c, reg, rid, TAKE_PTR(op_id), req.payload_json, now, ret);

        /* the registration record and the operation: one transaction when there is a store */
        if (s->store) {
                r = dps_store_begin(s->store);
                if (r < 0)
                        return reply_error(s, rid, 503, DPS_ERROR_STORE, (int) s->retry_after, ret,
                                           "The registration could not be recorded, retry later");
                txn = s->store;
        }

        /* the registration record, following the reprovision policy */
        const char *device_id = e->enrollment_group_id ? c->registration_id : (e->device_id ?: c->registration_id);
        r = registration_update(s, reg, e, status, device_id, hub, error_code, error_message, etag, now, NULL);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return reply_error(s, rid, 503, DPS_ERROR_STORE, (int) s->retry_after, ret,
                                   "The registration could not be recorded, retry later");
        hub = reg->assigned_hub;

        r = build_result(op_id, reg, etag, req.payload_json, error_code, error_message, &body, &body_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return reply_error(s, rid, 500, DPS_ERROR_INTERNAL, -1, ret, "Internal error");

        if (txn) {
                DpsOperationRecord orec = {
                        .id = op_id, .registration_id = reg->registration_id, .created_usec = now, .body = body,
                };
                r = dps_store_put_operation(txn, NULL, &orec);
                if (r >= 0)
                        operations_purge_stored(s, now);
                if (r >= 0)
                        r = dps_store_commit(txn);
                if (r < 0)
                        return reply_error(s, rid, 503, DPS_ERROR_STORE, (int) s->retry_after, ret,
                                           "The registration could not be recorded, retry later");
                txn = NULL;
        }

        /* the 202 reply; built before the operation is stored so that failing leaves nothing behind */
        DpsReply reply = {};
        r = reply_assigning(s, rid, op_id, &reply);
        if (r < 0)
                return r;

        /* the operation */
        DpsOperation *op;
        r = operation_add(s, reg, &op_id, &body, body_len, now, &op);
        if (r < 0) {
                dps_reply_done(&reply);
                return r;
        }

        /* a device registering again and again only keeps its newest operations */
        while (reg->n_operations > s->limits.max_operations_per_registration)
                operation_remove(s, TAILQ_FIRST(&reg->operations));

        /* a TPM challenge key answers one registration: a replayed token is refused */
        if (e->attestation == DPS_ATTESTATION_TPM)
                dps_tpm_forget(s->tpm_keys, c->registration_id);

        if (status == DPS_STATUS_ASSIGNED)
                log_info("Registration '%s' assigned to hub '%s' as device '%s' (%s '%s', operation %s).",
                         reg->registration_id, hub, reg->device_id,
                         e->enrollment_group_id ? "enrollment group" : "individual enrollment",
                         e->enrollment_group_id ?: e->registration_id, op->id);
        else
                log_notice("Registration '%s' %s: %s (operation %s).", reg->registration_id,
                           dps_status_to_string(status), error_message, op->id);

        *ret = reply;
        return 0;
}

static int handle_poll_stored(DpsClient *c, const char *rid, const char *operation_id, uint64_t now,
                              DpsReply *ret) {
        _cleanup_(dps_operation_record_done) DpsOperationRecord op = {};
        DpsService *s = c->service;
        DpsReply reply = { .status = 200 };
        int r;

        r = dps_store_get_operation(s->store, operation_id, &op);
        if (r == -ENOMEM)
                return r;
        if (r < 0 && r != -ENOENT)
                return reply_error(s, rid, 503, DPS_ERROR_STORE, (int) s->retry_after, ret,
                                   "The operation could not be read, retry later");
        if (r == -ENOENT || !strcaseeq(op.registration_id, c->registration_id) || op.created_usec > now ||
            now - op.created_usec >= s->limits.operation_lifetime_usec)
                return reply_error(s, rid, 404, DPS_ERROR_NO_OPERATION, -1, ret, "Operation not found");
        if (!op.body)
                return reply_assigning(s, rid, operation_id, ret);

        reply.body_len = strlen(op.body);
        reply.body = TAKE_PTR(op.body);
        r = reply_topic(200, rid, -1, &reply.topic);
        if (r < 0) {
                dps_reply_done(&reply);
                return r;
        }
        *ret = reply;
        return 0;
}

static int handle_poll(DpsClient *c, const char *rid, const char *operation_id, uint64_t now, DpsReply *ret) {
        DpsService *s = c->service;
        DpsReply reply = { .status = 200 };
        int r;

        operations_purge_expired(s, now);

        DpsOperation *op = operation_find(s, operation_id);
        if (!op && s->store)
                /* registered before a restart, or through the other front */
                return handle_poll_stored(c, rid, operation_id, now, ret);
        /* Another registration's operation is answered exactly like an unknown one. */
        if (!op || !strcaseeq(op->registration->registration_id, c->registration_id))
                return reply_error(s, rid, 404, DPS_ERROR_NO_OPERATION, -1, ret, "Operation not found");

        if (!op->body)
                /* a custom allocation is still running */
                return reply_assigning(s, rid, op->id, ret);
        reply.body = memdup_suffix0(op->body, op->body_len);
        if (!reply.body)
                return -ENOMEM;
        reply.body_len = op->body_len;
        r = reply_topic(200, rid, -1, &reply.topic);
        if (r < 0) {
                dps_reply_done(&reply);
                return r;
        }

        *ret = reply;
        return 0;
}

/* A register of a TPM enrollment without a password: 401 with the authenticationKey. */
static int handle_tpm_challenge(DpsClient *c, const char *rid, const void *payload, size_t len, uint64_t now,
                                DpsReply *ret) {
        _cleanup_(dps_register_request_done) DpsRegisterRequest req = {};
        DpsService *s = c->service;
        const DpsEnrollment *e = dps_data_find_individual(s->data, c->registration_id);
        const char *message = NULL;
        DpsReply reply = { .status = 401 };
        int r;

        if (len > DPS_BODY_MAX)
                return reply_error(s, rid, 413, DPS_ERROR_TOO_LARGE, -1, ret, "Request body larger than %d bytes",
                                   DPS_BODY_MAX);
        r = dps_register_request_parse(payload, len, &req);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return reply_error(s, rid, 400, DPS_ERROR_BAD_BODY, -1, ret, "Malformed register request");
        if (!e)
                return reply_auth_error(c, rid, DPS_AUTH_NOT_ENROLLED, ret);

        r = dps_tpm_challenge(s->tpm_keys, e, c->registration_id, req.tpm_endorsement_key, req.tpm_storage_root_key,
                              now, &reply.body, &message);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                log_notice("TPM registration '%s' refused: %s.", c->registration_id, strna(message));
                return reply_error(s, rid, r == -ENOTRECOVERABLE || r == -EIO ? 500 : 401,
                                   r == -ENOTRECOVERABLE || r == -EIO ? DPS_ERROR_INTERNAL : DPS_ERROR_UNAUTHORIZED,
                                   -1, ret, "%s", strna(message));
        }
        reply.body_len = strlen(reply.body);
        r = reply_topic(401, rid, -1, &reply.topic);
        if (r < 0) {
                dps_reply_done(&reply);
                return r;
        }
        log_info("TPM registration '%s': endorsement key matches the enrollment, challenge issued.",
                 c->registration_id);
        *ret = reply;
        return 0;
}

int dps_client_handle_request(DpsClient *c, const char *topic, const void *payload, size_t len, DpsReply *ret) {
        _cleanup_(dps_request_topic_done) DpsRequestTopic t = { .type = _DPS_REQUEST_TYPE_INVALID };
        int r;

        if (!c || !ret || (!payload && len > 0))
                return -EINVAL;

        DpsService *s = c->service;
        uint64_t now = now_usec(s);

        r = topic ? dps_request_topic_parse(topic, &t) : -EINVAL;
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                _cleanup_free_ char *rid = topic ? lenient_rid(topic) : NULL;
                return reply_error(s, rid, 400, DPS_ERROR_BAD_TOPIC, -1, ret,
                                   "Malformed request topic: expected " DPS_REGISTER_TOPIC_PREFIX
                                   "$rid={rid} or " DPS_POLL_TOPIC_PREFIX "$rid={rid}&operationId={id}");
        }

        DpsAuth auth = c->poll_vouched && t.type == DPS_REQUEST_OPERATION_STATUS
                ? (c->expiry > now / USEC_PER_SEC ? DPS_AUTH_OK : DPS_AUTH_EXPIRED)
                : client_auth(c, now);
        if (auth == DPS_AUTH_TPM_CHALLENGE && t.type == DPS_REQUEST_REGISTER)
                return handle_tpm_challenge(c, t.rid, payload, len, now, ret);
        if (auth != DPS_AUTH_OK) {
                if (t.type == DPS_REQUEST_REGISTER)
                        log_info("Registration '%s' refused: %s.", c->registration_id, auth_message_table[auth]);
                return reply_auth_error(c, t.rid, auth, ret);
        }

        if (len > DPS_BODY_MAX)
                return reply_error(s, t.rid, 413, DPS_ERROR_TOO_LARGE, -1, ret, "Request body larger than %d bytes",
                                   DPS_BODY_MAX);

        switch (t.type) {
        case DPS_REQUEST_REGISTER:
                return handle_register(c, t.rid, payload, len, now, ret);
        case DPS_REQUEST_OPERATION_STATUS:
                return handle_poll(c, t.rid, t.operation_id, now, ret);
        case _DPS_REQUEST_TYPE_MAX:
        case _DPS_REQUEST_TYPE_INVALID:
                break;
        }
        return reply_error(s, t.rid, 400, DPS_ERROR_BAD_TOPIC, -1, ret, "Unknown request");
}

/* The DeviceRegistrationResult of the status lookup, from the durable record (which has the
 * etag and the error of a failed or disabled outcome). */
static int lookup_result(const DpsRecord *rec, char **ret, size_t *ret_len) {
        _cleanup_json_ struct json_object *o = json_object_new_object();
        char created[32], updated[32];

        if (!o)
                return -ENOMEM;
        if (format_timestamp(rec->created_usec, created) < 0 || format_timestamp(rec->updated_usec, updated) < 0)
                return -EINVAL;
        if (json_add_string(o, "registrationId", rec->registration_id) < 0 ||
            json_add_string(o, "createdDateTimeUtc", created) < 0 ||
            (rec->assigned_hub && json_add_string(o, "assignedHub", rec->assigned_hub) < 0) ||
            (rec->device_id && json_add_string(o, "deviceId", rec->device_id) < 0) ||
            json_add_string(o, "status", rec->status) < 0 ||
            (rec->substatus && json_add_string(o, "substatus", rec->substatus) < 0) ||
            (rec->error_code != 0 && (json_add(o, "errorCode", json_object_new_int64(rec->error_code)) < 0 ||
                                      json_add_string(o, "errorMessage", rec->error_message ?: "") < 0)) ||
            json_add_string(o, "lastUpdatedDateTimeUtc", updated) < 0 ||
            (rec->etag && json_add_string(o, "etag", rec->etag) < 0))
                return -ENOMEM;
        if (rec->enrollment_group_id) {
                _cleanup_json_ struct json_object *sk = json_object_new_object();
                if (!sk || json_add_string(sk, "enrollmentGroupId", rec->enrollment_group_id) < 0 ||
                    json_add(o, "symmetricKey", TAKE_PTR(sk)) < 0)
                        return -ENOMEM;
        }
        return json_to_string(o, ret, ret_len);
}

int dps_client_status_lookup(DpsClient *c, DpsReply *ret) {
        _cleanup_(dps_record_done) DpsRecord rec = {};
        DpsReply reply = { .status = 200 };
        int r;

        if (!c || !ret)
                return -EINVAL;
        DpsService *s = c->service;
        DpsAuth auth = client_auth(c, now_usec(s));
        if (auth == DPS_AUTH_TPM_CHALLENGE)
                auth = DPS_AUTH_NO_TOKEN;       /* a lookup issues no challenge: the SAS is required */
        if (auth != DPS_AUTH_OK)
                return reply_auth_error(c, "1", auth, ret);

        if (s->store) {
                r = dps_store_get(s->store, c->registration_id, &rec);
                if (r == -ENOMEM)
                        return r;
                if (r < 0 && r != -ENOENT)
                        return reply_error(s, "1", 503, DPS_ERROR_STORE, (int) s->retry_after, ret,
                                           "The registration could not be read, retry later");
        } else {
                const DpsRegistration *reg = registration_find(s, c->registration_id);
                if (reg && reg->created_usec > 0) {
                        rec = (DpsRecord) {
                                .registration_id = strdup(reg->registration_id),
                                .device_id = reg->device_id ? strdup(reg->device_id) : NULL,
                                .assigned_hub = reg->assigned_hub ? strdup(reg->assigned_hub) : NULL,
                                .enrollment_group_id = reg->enrollment_group_id ? strdup(reg->enrollment_group_id)
                                                                                : NULL,
                                .status = strdup(dps_status_to_string(reg->status)),
                                .substatus = reg->substatus ? strdup(reg->substatus) : NULL,
                                .etag = reg->etag ? strdup(reg->etag) : NULL,
                                .created_usec = reg->created_usec,
                                .updated_usec = reg->last_updated_usec,
                        };
                        if (!rec.registration_id || !rec.status || (reg->etag && !rec.etag))
                                return -ENOMEM;
                }
        }
        if (!rec.registration_id)
                return reply_error(s, "1", 404, DPS_ERROR_NOT_REGISTERED, -1, ret,
                                   "Device registration not found");
        r = lookup_result(&rec, &reply.body, &reply.body_len);
        if (r >= 0)
                r = reply_topic(200, "1", -1, &reply.topic);
        if (r < 0) {
                dps_reply_done(&reply);
                return r == -ENOMEM ? r : reply_error(s, "1", 500, DPS_ERROR_INTERNAL, -1, ret, "Internal error");
        }
        *ret = reply;
        return 0;
}

/* ---- HTTPS front (issue 9, src/dps/rest.c) ---- */

void dps_client_vouch_for_poll(DpsClient *c, uint64_t expiry) {
        c->poll_vouched = true;
        c->expiry = expiry;
}

/* ---- X.509 (issue 6, src/dps/attest-x509.c) ------------------------------------------------ */

int dps_service_connect_x509(DpsService *s, const void *conn, const char *client_id, const char *username,
                             const char *password, size_t password_len, STACK_OF(X509) *chain,
                             DpsClient **ret_client) {
        int r;

        if (!s)
                return -EINVAL;
        if (s->pending_chain)
                sk_X509_pop_free(s->pending_chain, X509_free);
        s->pending_chain = chain; /* taken by dps_service_connect for an accepted client */
        r = dps_service_connect(s, conn, client_id, username, password, password_len, ret_client);
        if (s->pending_chain)
                sk_X509_pop_free(s->pending_chain, X509_free);
        s->pending_chain = NULL;
        return r;
}

int dps_service_connect_x509_der(DpsService *s, const void *conn, const char *client_id, const char *username,
                                 const uint8_t *const *der, const size_t *der_len, size_t n,
                                 DpsClient **ret_client) {
        STACK_OF(X509) *chain = NULL;
        int r;

        if (n > 0) {
                r = dps_x509_chain_from_der(der, der_len, n, &chain);
                if (r == -ENOMEM)
                        return r;
                /* an unparsable chain: no chain, the client is refused on its first request */
        }
        return dps_service_connect_x509(s, conn, client_id, username, NULL, 0, chain, ret_client);
}
