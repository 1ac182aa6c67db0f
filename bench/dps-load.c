/* SPDX-License-Identifier: MIT */
/* dps-load: the lean load generator of bench/dps-throughput (a benchmark tool, not part of the
 * daemons, hence plain threads).  Registers N devices of a symmetric-key enrollment group with C
 * worker threads; each device gets its own TLS connection (libmosquitto, MQTT 3.1.1), subscribes,
 * publishes the register request and polls as soon as the 202 arrives.  Prints one JSON line:
 *   {"client":"c","n":N,"concurrency":C,"ok":..,"failed":..,"seconds":..,"regsPerSec":..,"p50Ms":..,"p99Ms":..}
 *
 *   dps-load HOST PORT CA_FILE ID_SCOPE GROUP_KEY_B64 N C [PREFIX] */

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>

#include "edgeprov/macro.h"
#include "edgeprov/sas.h"

static const char *host, *ca_file, *id_scope, *group_key, *prefix = "bench-c-";
static int port;
static unsigned n_total;
static atomic_uint next_index, n_failed;
static double *latencies;
static atomic_uint n_ok;

typedef struct Reg {
        char registration_id[64];
        int state; /* 0 connecting, 1 registering, 2 polling, 3 done ok, -1 failed */
} Reg;

static double now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void on_connect(struct mosquitto *m, void *ud, int rc) {
        Reg *r = ud;
        if (rc != 0) {
                r->state = -1;
                return;
        }
        mosquitto_subscribe(m, NULL, "$dps/registrations/res/#", 1);
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted) {
        Reg *r = ud;
        char body[128];
        snprintf(body, sizeof(body), "{\"registrationId\":\"%s\"}", r->registration_id);
        r->state = 1;
        mosquitto_publish(m, NULL, "$dps/registrations/PUT/iotdps-register/?$rid=1", (int) strlen(body), body, 1,
                          false);
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg) {
        Reg *r = ud;
        const char *t = startswith(msg->topic, "$dps/registrations/res/");
        const char *body = msg->payload;

        if (!t || !body) {
                r->state = -1;
                return;
        }
        if (startswith(t, "202/")) {
                const char *op = strstr(body, "\"operationId\":\"");
                char topic[256];
                if (!op) {
                        r->state = -1;
                        return;
                }
                op += strlen("\"operationId\":\"");
                size_t l = strcspn(op, "\"");
                snprintf(topic, sizeof(topic), "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=%.*s",
                         (int) l, op);
                r->state = 2;
                mosquitto_publish(m, NULL, topic, 1, " ", 1, false);
        } else if (startswith(t, "200/") && strstr(body, "\"status\":\"assigned\""))
                r->state = 3;
        else {
                if (atomic_load(&n_failed) < 3)
                        fprintf(stderr, "%s: %s %.*s\n", r->registration_id, msg->topic, msg->payloadlen, body);
                r->state = -1;
        }
}

static int register_one(unsigned i) {
        _cleanup_free_ char *key = NULL, *token = NULL, *resource = NULL, *user = NULL;
        Reg r = {};

        snprintf(r.registration_id, sizeof(r.registration_id), "%s%06u", prefix, i);
        if (sas_derive_device_key(group_key, r.registration_id, &key) < 0 ||
            asprintf(&resource, "%s/registrations/%s", id_scope, r.registration_id) < 0 ||
            asprintf(&user, "%s/api-version=2019-03-31", resource) < 0 ||
            sas_token_build_b64(key, resource, (uint64_t) time(NULL) + 3600, "registration", &token) < 0)
                return -ENOMEM;

        struct mosquitto *m = mosquitto_new(r.registration_id, true, &r);
        if (!m)
                return -ENOMEM;
        mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
        mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
        mosquitto_username_pw_set(m, user, token);
        mosquitto_tls_set(m, ca_file, NULL, NULL, NULL, NULL);
        mosquitto_connect_callback_set(m, on_connect);
        mosquitto_subscribe_callback_set(m, on_subscribe);
        mosquitto_message_callback_set(m, on_message);

        double t0 = now_ms();
        int rc = mosquitto_connect(m, host, port, 60);
        while (rc == MOSQ_ERR_SUCCESS && r.state >= 0 && r.state < 3 && now_ms() - t0 < 30000)
                rc = mosquitto_loop(m, 100, 1);
        bool ok = r.state == 3;
        mosquitto_disconnect(m);
        mosquitto_loop(m, 0, 1);
        mosquitto_destroy(m);
        if (!ok)
                return -EIO;
        latencies[atomic_fetch_add(&n_ok, 1)] = now_ms() - t0;
        return 0;
}

static void *worker(void *arg) {
        unsigned i;
        while ((i = atomic_fetch_add(&next_index, 1)) < n_total)
                if (register_one(i) < 0)
                        atomic_fetch_add(&n_failed, 1);
        return NULL;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

int main(int argc, char *argv[]) {
        if (argc < 8) {
                fprintf(stderr, "usage: dps-load HOST PORT CA_FILE ID_SCOPE GROUP_KEY_B64 N C [PREFIX]\n");
                return 2;
        }
        host = argv[1];
        port = atoi(argv[2]);
        ca_file = argv[3];
        id_scope = argv[4];
        group_key = argv[5];
        n_total = (unsigned) strtoul(argv[6], NULL, 10);
        unsigned c = (unsigned) strtoul(argv[7], NULL, 10);
        if (argc > 8)
                prefix = argv[8];
        if (n_total == 0 || c == 0 || c > 1024)
                return 2;
        latencies = calloc(n_total, sizeof(double));
        pthread_t *threads = calloc(c, sizeof(pthread_t));
        if (!latencies || !threads)
                return 1;

        mosquitto_lib_init();
        double t0 = now_ms();
        for (unsigned i = 0; i < c; i++)
                if (pthread_create(&threads[i], NULL, worker, NULL) != 0)
                        return 1;
        for (unsigned i = 0; i < c; i++)
                pthread_join(threads[i], NULL);
        double seconds = (now_ms() - t0) / 1000;
        mosquitto_lib_cleanup();

        unsigned ok = atomic_load(&n_ok);
        qsort(latencies, ok, sizeof(double), cmp_double);
        double p50 = ok ? latencies[MIN(ok - 1, ok / 2)] : 0, p99 = ok ? latencies[MIN(ok - 1, ok * 99 / 100)] : 0;
        printf("{\"client\":\"c\",\"n\":%u,\"concurrency\":%u,\"ok\":%u,\"failed\":%u,\"seconds\":%.1f,"
               "\"regsPerSec\":%.1f,\"p50Ms\":%.1f,\"p99Ms\":%.1f,\"clientPeakRssMiB\":0}\n",
               n_total, c, ok, atomic_load(&n_failed), seconds, ok / seconds, p50, p99);
        free(latencies);
        free(threads);
        return atomic_load(&n_failed) ? 1 : 0;
}
