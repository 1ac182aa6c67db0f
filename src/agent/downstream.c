/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/dps-client.h"
#include "agent/downstream.h"
#include "agent/group-key.h"
#include "agent/sensor-list.h"
#include "agent/tls-client.h"
#include "edgeprov/codec.h"
#include "edgeprov/dps.h"
#include "edgeprov/fileio.h"
#include "edgeprov/json-util.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/messages.h"
#include "edgeprov/sas.h"
#include "edgeprov/time-util.h"

#define USEC_PER_SEC ((uint64_t) 1000000)
#define SENSOR_RECORD_MAX (64 * 1024)
#define DOWNSTREAM_SENSORS_MAX 100000
#define DEVICES_DIR "devices"
/* Device keys derived per TPM session: with the group key in the TPM each batch is one
 * synchronous TPM job (open, Load, n HMACs, close) in the event loop; bounding it bounds the
 * time the loop is blocked, and the rest of a burst continues from a defer source. */
#define DOWNSTREAM_KEY_BATCH 8

struct Downstream {
        sd_event *event;
        const Config *config;
        GroupKey *group_key;
        void *ssl_ctx;                  /* MQTT: one TLS context for every sensor connection, built at
                                         * the first one and dropped when registrations go idle */
        bool burst;                     /* registrations started since the last idle point */
        sd_event_source *dispatch_defer;
        uint64_t tpm_usec, tpm_keys;    /* time in the TPM deriving keys, and how many */
        Sensor *commit_head;            /* records waiting for the batched write */
        sd_event_source *commit_defer;
        uint64_t commits, commit_batches;
        uint64_t parked_total, resumed_total;   /* slots released while waiting out a retry-after */
        char *gateway_id;
        char *dir;
        Sensor **sensors;       /* sorted by id */
        size_t n_sensors, n_alloc;
        Sensor *queue_head, *queue_tail;
        unsigned in_flight;
        double tokens;
        uint64_t tokens_at;
        sd_event_source *bucket_timer;
        DownstreamCallback cb;
        void *userdata;
};

static const char *const sensor_state_table[_SENSOR_STATE_MAX] = {
        [SENSOR_PENDING] = "pending",       [SENSOR_REGISTERING] = "registering", [SENSOR_RETRYING] = "retrying",
        [SENSOR_ASSIGNED] = "assigned",     [SENSOR_FAILED] = "failed",
};

const char *sensor_state_to_string(SensorState s) {
        return s >= 0 && s < _SENSOR_STATE_MAX ? sensor_state_table[s] : NULL;
}

SensorState sensor_state_from_string(const char *s) {
        for (int i = 0; s && i < _SENSOR_STATE_MAX; i++)
                if (streq(s, sensor_state_table[i]))
                        return (SensorState) i;
        return _SENSOR_STATE_INVALID;
}

void sensor_done(Sensor *s) {
        if (!s)
                return;
        free(s->id);
        free(s->protocol);
        free(s->options_json);
        free(s->device_id);
        free(s->assigned_hub);
        free(s->last_error);
        free(s->operation_id);
        free(s->commit_device_id);
        free(s->commit_hub);
        s->retry_timer = sd_event_source_disable_unref(s->retry_timer);
        s->client = dps_client_free(s->client);
}

/* ---- per-sensor record ---------------------------------------------------- */

int sensor_record_format(const Sensor *s, char **ret) {
        struct json_object *o = json_object_new_object(), *opts = NULL;
        int r = 0;

        if (!o)
                return -ENOMEM;
        if (s->options_json &&
            json_parse_limited(s->options_json, strlen(s->options_json), SENSOR_RECORD_MAX, 4, &opts) < 0) {
                json_object_put(o);
                return -EINVAL;
        }
        /* only the states that survive a restart: in-flight work resumes as pending */
        SensorState st = s->state == SENSOR_ASSIGNED || s->state == SENSOR_FAILED ? s->state : SENSOR_PENDING;
        if (json_object_object_add(o, "version", json_object_new_int(1)) < 0 ||
            json_object_object_add(o, "registrationId", json_object_new_string(s->id)) < 0 ||
            (s->protocol && json_object_object_add(o, "protocol", json_object_new_string(s->protocol)) < 0) ||
            (opts && json_object_object_add(o, "options", opts) < 0) ||
            json_object_object_add(o, "state", json_object_new_string(sensor_state_to_string(st))) < 0 ||
            (s->device_id && json_object_object_add(o, "deviceId", json_object_new_string(s->device_id)) < 0) ||
            (s->assigned_hub && json_object_object_add(o, "assignedHub", json_object_new_string(s->assigned_hub)) < 0) ||
            (s->last_error && json_object_object_add(o, "lastError", json_object_new_string(s->last_error)) < 0) ||
            (st == SENSOR_PENDING && s->operation_id &&
             json_object_object_add(o, "operationId", json_object_new_string(s->operation_id)) < 0) ||
            json_object_object_add(o, "attempts", json_object_new_int64(s->attempts)) < 0 ||
            json_object_object_add(o, "provisionedAt", json_object_new_int64((int64_t) s->provisioned_at)) < 0)
                r = -ENOMEM;
        if (r >= 0) {
                const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
                char *dup = t ? strdup(t) : NULL;
                if (!dup)
                        r = -ENOMEM;
                else
                        *ret = dup;
        }
        json_object_put(o);
        return r;
}

int sensor_record_parse(const char *buf, size_t len, Sensor *ret) {
        struct json_object *o = NULL, *v;
        Sensor s = {};
        int r;

        r = json_parse_limited(buf, len, SENSOR_RECORD_MAX, 4, &o);
        if (r < 0)
                return -EBADMSG;
        r = -EBADMSG;
        if (!json_object_is_type(o, json_type_object))
                goto out;
        if (!json_object_object_get_ex(o, "version", &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int(v) != 1)
                goto out;
        const char *id = json_get_string(o, "registrationId");
        if (!id || !dps_registration_id_is_valid(id))
                goto out;
        s.state = sensor_state_from_string(json_get_string(o, "state"));
        if (s.state != SENSOR_PENDING && s.state != SENSOR_ASSIGNED && s.state != SENSOR_FAILED)
                goto out;
        if (json_object_object_get_ex(o, "options", &v)) {
                if (!json_object_is_type(v, json_type_object))
                        goto out;
                const char *t = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
                if (!t || !(s.options_json = strdup(t))) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        if (json_object_object_get_ex(o, "attempts", &v) && json_object_is_type(v, json_type_int)) {
                int64_t a = json_object_get_int64(v);
                s.attempts = a < 0 ? 0 : a > 1000000 ? 1000000 : (unsigned) a;
        }
        if (json_object_object_get_ex(o, "provisionedAt", &v) && json_object_is_type(v, json_type_int)) {
                int64_t a = json_object_get_int64(v);
                s.provisioned_at = a < 0 ? 0 : (uint64_t) a;
        }
        if (json_object_object_get_ex(o, "operationId", &v) && !json_object_is_type(v, json_type_string))
                goto out;
        if (!(s.id = strdup(id)) || json_dup_string(o, "protocol", &s.protocol) < 0 ||
            json_dup_string(o, "deviceId", &s.device_id) < 0 || json_dup_string(o, "assignedHub", &s.assigned_hub) < 0 ||
            json_dup_string(o, "lastError", &s.last_error) < 0 ||
            json_dup_string(o, "operationId", &s.operation_id) < 0) {
                r = -ENOMEM;
                goto out;
        }
        if (s.operation_id) {
                /* it goes into a poll topic: printable ASCII without spaces, bounded */
                if (s.state != SENSOR_PENDING || isempty(s.operation_id) || strlen(s.operation_id) > DPS_OPERATION_ID_MAX)
                        goto out;
                for (const unsigned char *i = (const unsigned char *) s.operation_id; *i; i++)
                        if (*i <= 0x20 || *i >= 0x7f)
                                goto out;
        }
        if (s.state == SENSOR_ASSIGNED && (!s.device_id || !s.assigned_hub))
                goto out;
        *ret = s;
        s = (Sensor) {};
        r = 0;
out:
        sensor_done(&s);
        json_object_put(o);
        return r;
}

static int sensor_path(Downstream *d, const char *id, char **ret) {
        return asprintf(ret, "%s/%s.json", d->dir, id) < 0 ? -ENOMEM : 0;
}

static int sensor_save(Downstream *d, const Sensor *s) {
        _cleanup_free_ char *text = NULL, *path = NULL;
        int r = sensor_record_format(s, &text);
        if (r < 0)
                return r;
        r = sensor_path(d, s->id, &path);
        if (r < 0)
                return r;
        r = write_file_atomic(path, text, strlen(text), 0600);
        if (r < 0)
                log_error_errno(r, "Cannot write '%s': %m", path);
        return r;
}

/* ---- group commit ---------------------------------------------------------
 * The records written when the service accepts a registration (operationId) and when it assigns
 * the sensor are batched: each is written to a temporary file, then one syncfs() makes all of
 * them durable, they are renamed into place, and one fsync() of the directory makes the renames
 * durable: two journal commits per batch instead of two per record (≈9 ms each on this ext4
 * under load; three records a sensor made them the bottleneck).  The batch runs from a defer
 * source, so it collects what the loop produced meanwhile.  An assignment is announced (State,
 * D-Bus, journal) only after its batch is durable, and until then it still counts as in flight,
 * so at most `concurrency` sensors are ever registered at the service without a durable record
 * of it.  The intent record
 * (before RegisterDevice answers) and parked failures are still written synchronously. */

typedef enum SensorCommit {
        COMMIT_NONE,
        COMMIT_ACCEPTED,        /* pending with the operationId */
        COMMIT_ASSIGNED,        /* assigned: commit_device_id, commit_hub */
} SensorCommit;

static void commit_unlink(Downstream *d, Sensor *s) {
        if (s->commit == COMMIT_NONE)
                return;
        for (Sensor **p = &d->commit_head; *p; p = &(*p)->commit_next)
                if (*p == s) {
                        *p = s->commit_next;
                        break;
                }
        s->commit_next = NULL;
        if (s->commit == COMMIT_ASSIGNED)
                d->in_flight--;
        s->commit = COMMIT_NONE;
        free(s->commit_device_id);
        free(s->commit_hub);
        s->commit_device_id = s->commit_hub = NULL;
}

static int on_commit(sd_event_source *src, void *userdata);

static void commit_queue(Downstream *d, Sensor *s, SensorCommit what) {
        if (s->commit == COMMIT_NONE) {
                s->commit_next = d->commit_head;
                d->commit_head = s;
        }
        if ((int) what > s->commit)
                s->commit = (int) what;
        if (!d->commit_defer) {
                if (sd_event_add_defer(d->event, &d->commit_defer, on_commit, d) < 0) {
                        log_error("Failed to schedule the sensor record write; writing now.");
                        (void) on_commit(NULL, d);
                        return;
                }
        }
}

/* The record as it will be once committed (an assignment is not live yet). */
static int commit_format(Sensor *s, char **ret) {
        if (s->commit != COMMIT_ASSIGNED)
                return sensor_record_format(s, ret);
        Sensor t = *s;
        t.state = SENSOR_ASSIGNED;
        t.device_id = s->commit_device_id;
        t.assigned_hub = s->commit_hub;
        t.last_error = NULL;
        t.operation_id = NULL;
        t.provisioned_at = s->commit_at;
        return sensor_record_format(&t, ret);
}

static int write_tmp(const char *path, const char *text) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        size_t len = strlen(text);
        if (fd < 0)
                return -errno;
        for (const char *p = text; len > 0;) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

static void sensor_committed(Downstream *d, Sensor *s, SensorCommit what, char *device_id, char *hub);
static void sensor_maybe_park(Downstream *d, Sensor *s);
static void dispatch(Downstream *d);
static void sensor_retry_later(Downstream *d, Sensor *s, int retry_after, const char *why);

static int on_commit(sd_event_source *src, void *userdata) {
        Downstream *d = userdata;
        Sensor *list = d->commit_head;
        _cleanup_close_ int dfd = -1;
        size_t n = 0;
        int r = 0;

        d->commit_defer = sd_event_source_disable_unref(d->commit_defer);
        d->commit_head = NULL;
        if (!list)
                return 0;

        /* 1. temporary files; a sensor whose file cannot be written drops out (err set) */
        for (Sensor *s = list; s; s = s->commit_next) {
                _cleanup_free_ char *text = NULL, *tmp = NULL;
                int q = commit_format(s, &text);
                if (q >= 0 && asprintf(&tmp, "%s/.#%s.json.batch", d->dir, s->id) < 0) {
                        tmp = NULL;
                        q = -ENOMEM;
                }
                if (q >= 0)
                        q = write_tmp(tmp, text);
                if (q < 0) {
                        log_error_errno(q, "Cannot write the record of sensor '%s': %m", s->id);
                        s->commit = -s->commit;         /* failed: reported below */
                }
                n++;
        }
        /* 2. one commit for all their data, 3. renames, 4. one commit for the renames */
        dfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || syscall(SYS_syncfs, dfd) < 0)
                r = -errno;
        for (Sensor *s = list; s; s = s->commit_next) {
                _cleanup_free_ char *tmp = NULL, *path = NULL;
                if (s->commit < 0)
                        continue;
                if (asprintf(&tmp, "%s/.#%s.json.batch", d->dir, s->id) < 0 || sensor_path(d, s->id, &path) < 0) {
                        tmp = NULL;
                        s->commit = -s->commit;
                        continue;
                }
                if (r < 0 || rename(tmp, path) < 0) {
                        if (r >= 0)
                                log_error_errno(errno, "Cannot rename '%s': %m", tmp);
                        (void) unlink(tmp);
                        s->commit = -s->commit;
                }
        }
        if (r >= 0 && fsync(dfd) < 0)
                r = -errno;
        if (r < 0)
                log_error_errno(r, "Cannot make %zu sensor record(s) in '%s' durable: %m", n, d->dir);
        d->commits += n;
        d->commit_batches++;
        log_debug("Committed %zu sensor record(s) in one batch (%" PRIu64 " in %" PRIu64 " batches so far).", n,
                  d->commits, d->commit_batches);

        /* 5. what is durable is announced; a failed assignment is retried (DPS is idempotent) */
        for (Sensor *s = list, *next; s; s = next) {
                next = s->commit_next;
                SensorCommit what = s->commit < 0 ? -s->commit : s->commit;
                bool ok = s->commit > 0 && r >= 0;
                char *device_id = s->commit_device_id, *hub = s->commit_hub;
                s->commit_next = NULL;
                s->commit = COMMIT_NONE;
                s->commit_device_id = s->commit_hub = NULL;
                if (what == COMMIT_ASSIGNED)
                        d->in_flight--;
                if (ok && what == COMMIT_ACCEPTED && src)
                        sensor_maybe_park(d, s);
                if (ok)
                        sensor_committed(d, s, what, device_id, hub);
                else if (what == COMMIT_ASSIGNED)
                        sensor_retry_later(d, s, -1, "assigned, but the state could not be written");
                free(device_id);
                free(hub);
        }
        if (src)
                dispatch(d);    /* not while freeing */
        return 0;
}

/* ---- the registry ------------------------------------------------------- */

int downstream_new(sd_event *e, const Config *config, Downstream **ret) {
        Downstream *d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->event = sd_event_ref(e);
        d->config = config;
        if (asprintf(&d->dir, "%s/%s", config->state_directory ?: EDGEPROV_DEFAULT_STATE_DIR, DEVICES_DIR) < 0) {
                d->dir = NULL;
                downstream_free(d);
                return -ENOMEM;
        }
        *ret = d;
        return 0;
}

Downstream *downstream_free(Downstream *d) {
        if (!d)
                return NULL;
        d->cb = NULL;                   /* the D-Bus side may be gone already */
        if (d->commit_head)
                (void) on_commit(NULL, d);      /* what was accepted or assigned survives a clean stop */
        for (size_t i = 0; i < d->n_sensors; i++) {
                sensor_done(d->sensors[i]);
                free(d->sensors[i]);
        }
        free(d->sensors);
        d->bucket_timer = sd_event_source_disable_unref(d->bucket_timer);
        d->group_key = group_key_free(d->group_key);
        d->ssl_ctx = tls_client_ctx_free(d->ssl_ctx);
        d->dispatch_defer = sd_event_source_disable_unref(d->dispatch_defer);
        d->commit_defer = sd_event_source_disable_unref(d->commit_defer);
        if (d->tpm_keys > 0)
                log_debug("TPM: %" PRIu64 " device keys derived in %" PRIu64 " ms.", d->tpm_keys, d->tpm_usec / 1000);
        if (d->parked_total > 0)
                log_debug("%" PRIu64 " sensor(s) released their slot while waiting, %" PRIu64
                          " polled on a new connection.", d->parked_total, d->resumed_total);
        free(d->gateway_id);
        free(d->dir);
        sd_event_unref(d->event);
        free(d);
        return NULL;
}

void downstream_set_callback(Downstream *d, DownstreamCallback cb, void *userdata) {
        d->cb = cb;
        d->userdata = userdata;
}

bool downstream_is_configured(const Downstream *d) {
        return d->group_key;
}

size_t downstream_count(const Downstream *d) {
        return d->n_sensors;
}

Sensor *downstream_get(const Downstream *d, size_t i) {
        return i < d->n_sensors ? d->sensors[i] : NULL;
}

static size_t lower_bound(const Downstream *d, const char *id) {
        size_t lo = 0, hi = d->n_sensors;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(d->sensors[mid]->id, id) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

Sensor *downstream_find(Downstream *d, const char *id) {
        size_t i = lower_bound(d, id);
        return i < d->n_sensors && streq(d->sensors[i]->id, id) ? d->sensors[i] : NULL;
}

static int registry_insert(Downstream *d, Sensor *s) {
        size_t i = lower_bound(d, s->id);
        if (d->n_sensors >= DOWNSTREAM_SENSORS_MAX)
                return -E2BIG;
        if (d->n_sensors == d->n_alloc) {
                size_t n = d->n_alloc ? d->n_alloc * 2 : 64;
                Sensor **p = realloc(d->sensors, n * sizeof(Sensor *));
                if (!p)
                        return -ENOMEM;
                d->sensors = p;
                d->n_alloc = n;
        }
        memmove(d->sensors + i + 1, d->sensors + i, (d->n_sensors - i) * sizeof(Sensor *));
        d->sensors[i] = s;
        d->n_sensors++;
        s->owner = d;
        return 0;
}

static void notify(Downstream *d, Sensor *s, SensorEvent ev, unsigned mask) {
        if (d->cb && (ev != SENSOR_EVENT_CHANGED || mask))
                d->cb(d, s, ev, mask, d->userdata);
}

/* One setter per property: compare, assign, remember what changed. */
static unsigned sensor_set_string(char **field, const char *v, unsigned bit) {
        if (streq_ptr(*field, v))
                return 0;
        char *dup = v ? strdup(v) : NULL;
        if (v && !dup)
                return 0;
        free(*field);
        *field = dup;
        return bit;
}

static unsigned sensor_set_state(Sensor *s, SensorState st) {
        if (s->state == st)
                return 0;
        s->state = st;
        return SENSOR_PROP_STATE;
}

static unsigned sensor_set_attempts(Sensor *s, unsigned a) {
        if (s->attempts == a)
                return 0;
        s->attempts = a;
        return SENSOR_PROP_ATTEMPTS;
}

static unsigned sensor_set_provisioned_at(Sensor *s, uint64_t t) {
        if (s->provisioned_at == t)
                return 0;
        s->provisioned_at = t;
        return SENSOR_PROP_PROVISIONED_AT;
}

static void queue_push(Downstream *d, Sensor *s) {
        if (s->queued)
                return;
        s->queued = true;
        s->queue_next = NULL;
        if (d->queue_tail)
                d->queue_tail->queue_next = s;
        else
                d->queue_head = s;
        d->queue_tail = s;
}

/* work in progress first: a parked sensor whose poll is due goes before new registrations */
static void queue_push_front(Downstream *d, Sensor *s) {
        if (s->queued)
                return;
        s->queued = true;
        s->queue_next = d->queue_head;
        d->queue_head = s;
        if (!d->queue_tail)
                d->queue_tail = s;
}

static Sensor *queue_pop(Downstream *d) {
        Sensor *s = d->queue_head;
        if (!s)
                return NULL;
        d->queue_head = s->queue_next;
        if (!d->queue_head)
                d->queue_tail = NULL;
        s->queue_next = NULL;
        s->queued = false;
        return s;
}

static void queue_unlink(Downstream *d, Sensor *s) {
        Sensor *prev = NULL;
        if (!s->queued)
                return;
        for (Sensor *p = d->queue_head; p; prev = p, p = p->queue_next)
                if (p == s) {
                        if (prev)
                                prev->queue_next = s->queue_next;
                        else
                                d->queue_head = s->queue_next;
                        if (d->queue_tail == s)
                                d->queue_tail = prev;
                        break;
                }
        s->queued = false;
        s->queue_next = NULL;
}


static int on_bucket_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Downstream *d = userdata;
        d->bucket_timer = sd_event_source_disable_unref(d->bucket_timer);
        dispatch(d);
        return 0;
}


/* Token bucket: `rate` tokens a minute, at most `concurrency` (≥1) saved up. */
static bool bucket_take(Downstream *d, uint64_t *ret_wait_usec) {
        double per_usec = (double) d->config->downstream_rate / (60.0 * USEC_PER_SEC);
        double burst = d->config->downstream_concurrency > 0 ? d->config->downstream_concurrency : 1;
        uint64_t now = clock_now_usec(CLOCK_BOOTTIME);
        if (d->tokens_at == 0)
                d->tokens = burst;
        else
                d->tokens += (double) (now - d->tokens_at) * per_usec;
        if (d->tokens > burst)
                d->tokens = burst;
        d->tokens_at = now;
        if (d->tokens >= 1.0) {
                d->tokens -= 1.0;
                return true;
        }
        *ret_wait_usec = (uint64_t) ((1.0 - d->tokens) / per_usec) + 1;
        return false;
}

static void on_result(DpsClient *c, const DpsResult *res, void *userdata);

static void on_accepted(DpsClient *c, const char *operation_id, int retry_after, void *userdata);

static int sensor_start(Downstream *d, Sensor *s, const char *key) {
        _cleanup_free_ char *resource = NULL, *payload = NULL;
        _cleanup_erase_ char *token = NULL;
        struct json_object *p = NULL;
        DpsClient *c = NULL;
        int r;

        if (!d->ssl_ctx && dps_transport_from_string(conf_transport(d->config)) == DPS_TRANSPORT_MQTT) {
                r = tls_client_ctx_new(d->config->ca_file, d->config->endpoint, &d->ssl_ctx);
                if (r < 0)
                        return r;
        }
        if (asprintf(&resource, "%s/registrations/%s", d->config->id_scope, s->id) < 0)
                return -ENOMEM;
        r = sas_token_build_b64(key, resource, (uint64_t) time(NULL) + (uint64_t) d->config->sas_lifetime,
                                SAS_DEFAULT_KEY_NAME, &token);
        if (r < 0)
                return r;

        if (s->options_json)
                r = json_parse_limited(s->options_json, strlen(s->options_json), SENSOR_RECORD_MAX, 4, &p);
        else
                p = json_object_new_object();
        if (r < 0 || !p)
                return r < 0 ? r : -ENOMEM;
        json_object_object_add(p, "gatewayId", json_object_new_string(d->gateway_id));
        if (s->protocol && !json_object_object_get_ex(p, "protocol", NULL))
                json_object_object_add(p, "protocol", json_object_new_string(s->protocol));
        const char *t = json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN);
        payload = t ? strdup(t) : NULL;
        json_object_put(p);
        if (!payload)
                return -ENOMEM;

        DpsClientParams params = {
                .host = d->config->endpoint,
                .port = conf_port(d->config),
                .transport = dps_transport_from_string(conf_transport(d->config)),
                .ca_file = d->config->ca_file,
                .id_scope = d->config->id_scope,
                .registration_id = s->id,
                .api_version = d->config->api_version,
                .password = token,
                .payload_json = payload,
                .ssl_ctx = d->ssl_ctx,
                .operation_id = s->operation_id,
                .request_timeout_usec = (uint64_t) d->config->request_timeout * USEC_PER_SEC,
        };
        r = dps_client_new(d->event, &params, on_result, s, &c);
        if (r < 0)
                return r;
        dps_client_set_accepted_callback(c, on_accepted);
        r = dps_client_start(c);
        if (r < 0) {
                dps_client_free(c);
                return r;
        }
        s->client = c;
        if (s->resume) {
                s->resume = false;
                d->resumed_total++;
                log_debug("Sensor '%s': polling operation %s on a new connection.", s->id, s->operation_id);
        } else if (s->operation_id)
                log_info("Sensor '%s': resuming operation %s (attempt %u).", s->id, s->operation_id, s->attempts + 1);
        else
                log_debug("Registering sensor '%s' (attempt %u).", s->id, s->attempts + 1);
        return 0;
}

/* The service accepted the registration: record the operation before the first poll, so that
 * a restart polls it instead of registering again.  Only the window between sending the
 * register request and this write is left for a crash to cause a second registration. */
static void on_accepted(DpsClient *c, const char *operation_id, int retry_after, void *userdata) {
        Sensor *s = userdata;
        char *dup = strdup(operation_id);

        if (!dup)
                return;
        free(s->operation_id);
        s->operation_id = dup;
        /* when the client would poll: the same rule as its own timer */
        s->poll_due = clock_now_usec(CLOCK_BOOTTIME) + (uint64_t) dps_poll_delay_sec(retry_after) * USEC_PER_SEC;
        commit_queue(s->owner, s, COMMIT_ACCEPTED);     /* at worst the sensor registers again after a crash */
}

static int on_park_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Sensor *s = userdata;
        Downstream *d = s->owner;
        s->retry_timer = sd_event_source_disable_unref(s->retry_timer);
        s->parked = false;
        s->resume = true;
        queue_push_front(d, s);
        dispatch(d);
        return 0;
}

/* The operationId is durable and the service asked us to come back after retry-after: when
 * other sensors wait for a slot, close this connection and give the slot to them; the poll
 * resumes the operation on a new connection (DpsClientParams.operation_id) once it is due, from
 * the front of the queue.  The crash-safety bound holds: a parked sensor has a durable record.
 * With nobody waiting, polling on the open connection is cheaper. */
static void sensor_maybe_park(Downstream *d, Sensor *s) {
        uint64_t now = clock_now_usec(CLOCK_BOOTTIME);

        if (!s->client || s->state != SENSOR_REGISTERING || !s->operation_id || !d->queue_head ||
            s->poll_due < now + USEC_PER_SEC / 10)
                return;
        if (sd_event_add_time(d->event, &s->retry_timer, CLOCK_BOOTTIME, s->poll_due, USEC_PER_SEC / 100, on_park_timer,
                              s) < 0) {
                s->retry_timer = NULL;
                return;                 /* keep polling on this connection */
        }
        s->client = dps_client_free(s->client);
        s->parked = true;
        d->in_flight--;
        d->parked_total++;
        log_debug("Sensor '%s': operation %s accepted; slot released for %.1f s.", s->id, s->operation_id,
                  (double) (s->poll_due - now) / USEC_PER_SEC);
}


static int on_dispatch_defer(sd_event_source *src, void *userdata) {
        Downstream *d = userdata;
        d->dispatch_defer = sd_event_source_disable_unref(d->dispatch_defer);
        dispatch(d);
        return 0;
}

/* Nothing in flight or queued (sensors waiting out a retry-after may follow later): the shared
 * TLS context (with whatever CA certificates it has looked up) and the heap a burst grew are
 * given back; the next registration builds the context again (≈1 ms). */
static void downstream_idle(Downstream *d) {
        if (!d->burst)
                return;
        d->burst = false;
        d->ssl_ctx = tls_client_ctx_free(d->ssl_ctx);
        (void) malloc_trim(0);
        log_debug("Downstream registrations idle; TLS context and free heap released.");
}

static void dispatch(Downstream *d) {
        unsigned max = (unsigned) (d->config->downstream_concurrency > 0 ? d->config->downstream_concurrency : 1);
        Sensor *batch[DOWNSTREAM_KEY_BATCH];
        const char *ids[DOWNSTREAM_KEY_BATCH];
        char *keys[DOWNSTREAM_KEY_BATCH] = {};
        size_t n = 0;
        uint64_t usec = 0;
        int r;

        if (!d->gateway_id || !d->group_key)
                return;
        if (d->in_flight == 0 && !d->queue_head) {
                downstream_idle(d);
                return;
        }
        while (d->in_flight + n < max && d->queue_head && n < DOWNSTREAM_KEY_BATCH) {
                uint64_t wait = 0;
                /* the rate is of registrations: polling a parked operation takes no token */
                if (!d->queue_head->resume && !bucket_take(d, &wait)) {
                        if (!d->bucket_timer &&
                            sd_event_add_time_relative(d->event, &d->bucket_timer, CLOCK_MONOTONIC, wait, 1000,
                                                       on_bucket_timer, d) < 0)
                                log_error("Failed to arm the rate-limit timer.");
                        break;
                }
                batch[n] = queue_pop(d);
                ids[n] = batch[n]->id;
                n++;
        }
        if (n == 0)
                return;
        d->burst = true;

        r = group_key_derive(d->group_key, ids, n, keys, &usec);
        if (r < 0) {
                log_error_errno(r, "Cannot derive the device keys of %zu sensor(s): %m", n);
                for (size_t i = 0; i < n; i++)
                        sensor_retry_later(d, batch[i], -1,
                                           group_key_in_tpm(d->group_key) ? "the TPM could not derive the device key"
                                                                          : "cannot derive the device key");
                return;
        }
        if (group_key_in_tpm(d->group_key)) {
                d->tpm_usec += usec;
                d->tpm_keys += n;
                log_debug("TPM: derived %zu device key(s) in %.1f ms (%.2f ms per sensor; %" PRIu64 " so far, "
                          "%.2f ms each on average).",
                          n, (double) usec / 1000, (double) usec / 1000 / (double) n, d->tpm_keys,
                          (double) d->tpm_usec / 1000 / (double) d->tpm_keys);
        }
        for (size_t i = 0; i < n; i++) {
                Sensor *s = batch[i];
                r = sensor_start(d, s, keys[i]);
                keys[i] = erase_and_free(keys[i]);
                if (r < 0) {
                        log_error_errno(r, "Cannot start the registration of '%s': %m", s->id);
                        sensor_retry_later(d, s, -1, "cannot start the registration");
                        continue;
                }
                d->in_flight++;
                notify(d, s, SENSOR_EVENT_CHANGED, sensor_set_state(s, SENSOR_REGISTERING));
        }
        /* more ready than one batch: continue after the loop has served I/O */
        if (d->in_flight < max && d->queue_head && !d->bucket_timer && !d->dispatch_defer &&
            sd_event_add_defer(d->event, &d->dispatch_defer, on_dispatch_defer, d) < 0)
                log_error("Failed to schedule the next registrations.");
}

static int on_sensor_retry(sd_event_source *src, uint64_t usec, void *userdata) {
        Sensor *s = userdata;
        Downstream *d = s->owner;
        s->retry_timer = sd_event_source_disable_unref(s->retry_timer);
        queue_push(d, s);
        dispatch(d);
        return 0;
}

static void sensor_retry_later(Downstream *d, Sensor *s, int retry_after, const char *why) {
        uint64_t cap = (uint64_t) d->config->retry_initial * USEC_PER_SEC, max = (uint64_t) d->config->retry_max * USEC_PER_SEC;
        uint64_t rnd, delay;
        unsigned mask;

        for (unsigned i = 1; i < s->attempts && cap < max; i++)
                cap *= 2;
        if (cap > max)
                cap = max;
        if (random_bytes(&rnd, sizeof(rnd)) < 0)
                rnd = (uint64_t) clock_now_usec(CLOCK_BOOTTIME) * 6364136223846793005ULL;
        delay = rnd % (cap + 1);                        /* full jitter */
        if (retry_after > 0 && (uint64_t) retry_after * USEC_PER_SEC > delay)
                delay = (uint64_t) retry_after * USEC_PER_SEC;
        if (delay < USEC_PER_SEC / 10)
                delay = USEC_PER_SEC / 10;
        mask = sensor_set_string(&s->last_error, why, SENSOR_PROP_LAST_ERROR);
        mask |= sensor_set_state(s, SENSOR_RETRYING);
        s->parked = s->resume = false;
        s->retry_timer = sd_event_source_disable_unref(s->retry_timer);
        if (sd_event_add_time_relative(d->event, &s->retry_timer, CLOCK_BOOTTIME, delay, USEC_PER_SEC / 10,
                                       on_sensor_retry, s) < 0) {
                log_error("Failed to arm the retry timer of '%s'; queueing it now.", s->id);
                queue_push(d, s);
        }
        log_debug("Sensor '%s': %s; retrying in %.1f s.", s->id, why, (double) delay / USEC_PER_SEC);
        notify(d, s, SENSOR_EVENT_CHANGED, mask);
}

static void sensor_committed(Downstream *d, Sensor *s, SensorCommit what, char *device_id, char *hub) {
        unsigned mask = 0;

        if (what != COMMIT_ASSIGNED)
                return;
        mask |= sensor_set_string(&s->device_id, device_id, SENSOR_PROP_DEVICE_ID);
        mask |= sensor_set_string(&s->assigned_hub, hub, SENSOR_PROP_ASSIGNED_HUB);
        mask |= sensor_set_string(&s->last_error, NULL, SENSOR_PROP_LAST_ERROR);
        mask |= sensor_set_provisioned_at(s, s->commit_at);
        mask |= sensor_set_state(s, SENSOR_ASSIGNED);
        free(s->operation_id);
        s->operation_id = NULL;
        char f_reg[192], f_hub[320], f_dev[192];
        log_field(f_reg, sizeof(f_reg), "REGISTRATION_ID", s->id);
        log_field(f_hub, sizeof(f_hub), "HUB", s->assigned_hub);
        log_field(f_dev, sizeof(f_dev), "DEVICE_ID", s->device_id);
        log_struct(LOG_INFO, STRV(EDGEPROV_MESSAGE_ID(DOWNSTREAM_ASSIGNED), f_reg, f_hub, f_dev),
                   "Sensor '%s' assigned to hub '%s' as '%s'.", s->id, s->assigned_hub, s->device_id);
        notify(d, s, SENSOR_EVENT_CHANGED, mask);
}

static void on_result(DpsClient *c, const DpsResult *res, void *userdata) {
        Sensor *s = userdata;
        Downstream *d = s->owner;
        unsigned mask;

        d->in_flight--;
        mask = sensor_set_attempts(s, s->attempts + 1);
        switch (res->outcome) {
        case DPS_OUTCOME_ASSIGNED: {
                /* announced once durable, by the batched write (sensor_committed) */
                char *dev = strdup(res->device_id), *hub = strdup(res->assigned_hub);
                notify(d, s, SENSOR_EVENT_CHANGED, mask);
                if (!dev || !hub) {
                        free(dev);
                        free(hub);
                        sensor_retry_later(d, s, -1, "out of memory");
                        break;
                }
                free(s->commit_device_id);
                free(s->commit_hub);
                s->commit_device_id = dev;
                s->commit_hub = hub;
                s->commit_at = (uint64_t) time(NULL);
                d->in_flight++;         /* until the record is durable */
                commit_queue(d, s, COMMIT_ASSIGNED);
                break;
        }
        case DPS_OUTCOME_REJECTED:
                commit_unlink(d, s);    /* the parked record below is the newest */
                free(s->operation_id);
                s->operation_id = NULL;
                mask |= sensor_set_string(&s->last_error, strna(res->error_message), SENSOR_PROP_LAST_ERROR);
                mask |= sensor_set_state(s, SENSOR_FAILED);
                {
                        char f_reg[192], f_code[48];
                        log_field(f_reg, sizeof(f_reg), "REGISTRATION_ID", s->id);
                        snprintf(f_code, sizeof(f_code), "DPS_ERROR_CODE=%" PRIi64, res->error_code);
                        log_struct(LOG_WARNING, STRV(EDGEPROV_MESSAGE_ID(DOWNSTREAM_REJECTED), f_reg, f_code),
                                   "Sensor '%s' rejected: %s (parked; remove and register it again once fixed).",
                                   s->id, strna(res->error_message));
                }
                (void) sensor_save(d, s);
                notify(d, s, SENSOR_EVENT_CHANGED, mask);
                break;
        default:
                notify(d, s, SENSOR_EVENT_CHANGED, mask);
                sensor_retry_later(d, s, res->retry_after, strna(res->error_message));
                break;
        }
        s->client = dps_client_free(c);
        dispatch(d);
}

int downstream_set_gateway(Downstream *d, const char *gateway_device_id) {
        if (streq_ptr(d->gateway_id, gateway_device_id))
                return 0;
        char *dup = gateway_device_id ? strdup(gateway_device_id) : NULL;
        if (gateway_device_id && !dup)
                return -ENOMEM;
        free(d->gateway_id);
        d->gateway_id = dup;
        dispatch(d);
        return 0;
}

static int downstream_load(Downstream *d) {
        DIR *dir;
        struct dirent *de;
        unsigned n = 0, bad = 0;
        int r;

        /* temporary files of records being written when the last run died */
        r = unlink_stale_temp_files(d->dir, NULL);
        if (r > 0)
                log_info("Removed %d temporary file(s) left in %s by an interrupted write.", r, d->dir);
        dir = opendir(d->dir);
        if (!dir)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(dir))) {
                size_t l = strlen(de->d_name);
                _cleanup_free_ char *path = NULL, *text = NULL;
                Sensor tmp = {};
                size_t len = 0;

                if (startswith(de->d_name, ".#") && l > 6 && streq(de->d_name + l - 6, ".batch")) {
                        (void) unlinkat(dirfd(dir), de->d_name, 0);     /* a batch a crash interrupted */
                        continue;
                }
                if (de->d_name[0] == '.' || l < 6 || !streq(de->d_name + l - 5, ".json"))
                        continue;
                if (asprintf(&path, "%s/%s", d->dir, de->d_name) < 0) {
                        closedir(dir);
                        return -ENOMEM;
                }
                if (read_file_full(path, SENSOR_RECORD_MAX, &text, &len) < 0 ||
                    sensor_record_parse(text, len, &tmp) < 0 || strncmp(de->d_name, tmp.id, l - 5) != 0 ||
                    strlen(tmp.id) != l - 5 || downstream_find(d, tmp.id)) {
                        _cleanup_free_ char *to = NULL;
                        sensor_done(&tmp);
                        if (asprintf(&to, "%s.corrupt", path) >= 0)
                                (void) rename(path, to);
                        log_warning("Sensor record '%s' is not readable; kept as %s.corrupt.", path, de->d_name);
                        bad++;
                        continue;
                }
                Sensor *s = malloc(sizeof(*s));
                if (!s) {
                        sensor_done(&tmp);
                        closedir(dir);
                        return -ENOMEM;
                }
                *s = tmp;
                r = registry_insert(d, s);
                if (r < 0) {
                        sensor_done(s);
                        free(s);
                        closedir(dir);
                        return r;
                }
                if (s->state == SENSOR_PENDING)
                        queue_push(d, s);
                n++;
        }
        closedir(dir);
        log_info("Loaded %u sensor record(s) from %s%s.", n, d->dir, bad ? " (some were unreadable)" : "");
        return 0;
}

int downstream_start(Downstream *d) {
        int r;

        r = group_key_open(d->config, &d->group_key);
        if (r < 0)
                return r;
        if (group_key_in_tpm(d->group_key))
                log_info("Downstream device keys are derived in the TPM (group key imported, not in memory).");
        /* the state directory first: mkdir_p() would create it 0755 as a parent */
        r = mkdir_p(d->config->state_directory ?: EDGEPROV_DEFAULT_STATE_DIR, 0700);
        if (r >= 0)
                r = mkdir_p(d->dir, 0700);
        if (r < 0)
                return log_error_errno(r, "Cannot create '%s': %m", d->dir);
        r = downstream_load(d);
        if (r < 0)
                return log_error_errno(r, "Cannot read the sensor records in '%s': %m", d->dir);
        dispatch(d);
        return 0;
}

int downstream_add(Downstream *d, const char *input_id, const char *options_json, Sensor **ret,
                   const char **reterr) {
        _cleanup_free_ char *id = NULL;
        const char *protocol = NULL;
        struct json_object *o = NULL;
        int r;

        r = sensor_id_normalize(input_id, &id, &protocol, reterr);
        if (r < 0)
                return r;
        Sensor *s = downstream_find(d, id);
        if (s) {
                if (ret)
                        *ret = s;
                return 0;
        }
        if (!d->group_key)
                return -EOPNOTSUPP;
        if (options_json) {
                if (json_parse_limited(options_json, strlen(options_json), 16 * 1024, 2, &o) < 0 ||
                    !json_object_is_type(o, json_type_object)) {
                        json_object_put(o);
                        if (reterr)
                                *reterr = "options must be a flat JSON object of at most 16 KiB";
                        return -EINVAL;
                }
                json_object_put(o);
        }
        if (d->n_sensors >= DOWNSTREAM_SENSORS_MAX)
                return -E2BIG;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->id = TAKE_PTR(id);
        s->state = SENSOR_PENDING;
        if ((protocol && !(s->protocol = strdup(protocol))) || (options_json && !(s->options_json = strdup(options_json)))) {
                sensor_done(s);
                free(s);
                return -ENOMEM;
        }
        r = sensor_save(d, s);          /* the intent is on disk before we say yes */
        if (r >= 0)
                r = registry_insert(d, s);
        if (r < 0) {
                sensor_done(s);
                free(s);
                return r;
        }
        notify(d, s, SENSOR_EVENT_ADDED, 0);
        queue_push(d, s);
        dispatch(d);
        if (ret)
                *ret = s;
        return 0;
}

static void registry_drop(Downstream *d, Sensor *s) {
        size_t i = lower_bound(d, s->id);
        if (i < d->n_sensors && d->sensors[i] == s) {
                memmove(d->sensors + i, d->sensors + i + 1, (d->n_sensors - i - 1) * sizeof(Sensor *));
                d->n_sensors--;
        }
}

/* The intent records of a bulk call, made durable together: temporary files, one syncfs(),
 * renames, one fsync() of the directory (as on_commit()).  On failure nothing is left. */
static int intent_batch_write(Downstream *d, Sensor **list, size_t n) {
        _cleanup_close_ int dfd = -1;
        size_t written = 0, renamed = 0;
        int r = 0;

        for (; written < n && r >= 0; written++) {
                _cleanup_free_ char *text = NULL, *tmp = NULL;
                r = sensor_record_format(list[written], &text);
                if (r >= 0 && asprintf(&tmp, "%s/.#%s.json.batch", d->dir, list[written]->id) < 0) {
                        tmp = NULL;
                        r = -ENOMEM;
                }
                if (r >= 0)
                        r = write_tmp(tmp, text);
                if (r < 0)
                        log_error_errno(r, "Cannot write the record of sensor '%s': %m", list[written]->id);
        }
        if (r >= 0) {
                dfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd < 0 || syscall(SYS_syncfs, dfd) < 0)
                        r = -errno;
        }
        for (; r >= 0 && renamed < n; renamed++) {
                _cleanup_free_ char *tmp = NULL, *path = NULL;
                if (asprintf(&tmp, "%s/.#%s.json.batch", d->dir, list[renamed]->id) < 0) {
                        tmp = NULL;
                        r = -ENOMEM;
                } else if (sensor_path(d, list[renamed]->id, &path) < 0)
                        r = -ENOMEM;
                else if (rename(tmp, path) < 0)
                        r = log_error_errno(errno, "Cannot rename '%s': %m", tmp);
        }
        if (r >= 0 && fsync(dfd) < 0)
                r = -errno;
        if (r >= 0)
                return 0;
        log_error_errno(r, "Cannot record %zu new sensor(s) in '%s': %m", n, d->dir);
        for (size_t i = 0; i < written; i++) {
                _cleanup_free_ char *p = NULL;
                int q = i < renamed ? sensor_path(d, list[i]->id, &p)
                                    : asprintf(&p, "%s/.#%s.json.batch", d->dir, list[i]->id) < 0 ? -ENOMEM : 0;
                if (q < 0)
                        p = NULL;
                else
                        (void) unlink(p);
        }
        return r;
}

int downstream_add_many(Downstream *d, size_t n, const char *const *input_ids, const char *const *options_json,
                        Sensor **ret_sensors, const char **ret_errors, int *ret_codes) {
        _cleanup_free_ Sensor **fresh = NULL;
        size_t n_fresh = 0;
        int r;

        if (!d->group_key)
                return -EOPNOTSUPP;
        fresh = calloc(n ?: 1, sizeof(Sensor *));
        if (!fresh)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *id = NULL;
                const char *protocol = NULL, *why = NULL, *opts = options_json ? options_json[i] : NULL;
                struct json_object *o = NULL;

                ret_sensors[i] = NULL;
                ret_errors[i] = NULL;
                ret_codes[i] = 0;
                r = sensor_id_normalize(input_ids[i], &id, &protocol, &why);
                if (r == -EINVAL) {
                        ret_codes[i] = -EINVAL;
                        ret_errors[i] = why ?: "not a valid registration id";
                        continue;
                }
                if (r < 0)
                        goto fail;
                Sensor *s = downstream_find(d, id);     /* known, or twice in this call */
                if (s) {
                        ret_sensors[i] = s;
                        continue;
                }
                if (opts) {
                        if (json_parse_limited(opts, strlen(opts), 16 * 1024, 2, &o) < 0 ||
                            !json_object_is_type(o, json_type_object)) {
                                json_object_put(o);
                                ret_codes[i] = -EINVAL;
                                ret_errors[i] = "options must be a flat JSON object of at most 16 KiB";
                                continue;
                        }
                        json_object_put(o);
                }
                if (d->n_sensors >= DOWNSTREAM_SENSORS_MAX) {
                        ret_codes[i] = -E2BIG;
                        ret_errors[i] = "too many downstream devices";
                        continue;
                }
                s = calloc(1, sizeof(*s));
                if (!s) {
                        r = -ENOMEM;
                        goto fail;
                }
                s->id = TAKE_PTR(id);
                s->state = SENSOR_PENDING;
                if ((protocol && !(s->protocol = strdup(protocol))) || (opts && !(s->options_json = strdup(opts))) ||
                    (r = registry_insert(d, s)) < 0) {
                        r = r < 0 ? r : -ENOMEM;
                        sensor_done(s);
                        free(s);
                        goto fail;
                }
                fresh[n_fresh++] = s;
                ret_sensors[i] = s;
        }
        r = intent_batch_write(d, fresh, n_fresh);      /* the intents are on disk before we say yes */
        if (r < 0)
                goto fail;
        for (size_t i = 0; i < n_fresh; i++) {
                notify(d, fresh[i], SENSOR_EVENT_ADDED, 0);
                queue_push(d, fresh[i]);
        }
        dispatch(d);
        return 0;
fail:
        for (size_t i = 0; i < n_fresh; i++) {
                registry_drop(d, fresh[i]);
                sensor_done(fresh[i]);
                free(fresh[i]);
        }
        for (size_t i = 0; i < n; i++)
                ret_sensors[i] = NULL;
        return r;
}

int downstream_remove(Downstream *d, const char *id) {
        _cleanup_free_ char *path = NULL;
        size_t i = lower_bound(d, id);
        int r;

        if (i >= d->n_sensors || !streq(d->sensors[i]->id, id))
                return -ENOENT;
        Sensor *s = d->sensors[i];
        r = sensor_path(d, id, &path);
        if (r < 0)
                return r;
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        int dfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
                (void) fsync(dfd);      /* the removal survives a power loss */
                close(dfd);
        }
        if (s->client)
                d->in_flight--;
        queue_unlink(d, s);
        commit_unlink(d, s);
        memmove(d->sensors + i, d->sensors + i + 1, (d->n_sensors - i - 1) * sizeof(Sensor *));
        d->n_sensors--;
        notify(d, s, SENSOR_EVENT_REMOVED, 0);
        sensor_done(s);
        free(s);
        dispatch(d);
        return 0;
}
