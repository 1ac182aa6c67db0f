/* SPDX-License-Identifier: MIT */
/* Issue 3 additions to the local service's core: the generic data edits of the admin API
 * (dps_data_put/remove, dps_service_edit_data with its file lock), probe addresses, the
 * lowest-latency choice (ties broken by weight, unreachable hubs excluded), the latency prober
 * against real loopback sockets, and webhook URL validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "dps/datafile.h"
#include "dps/latency.h"
#include "dps/service.h"
#include "dps/webhook.h"
#include "edgeprov/json-util.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"

#define KEY "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="

static const char base_json[] =
        "{\"idScope\":\"0ne00000A0A\",\"linkedHubs\":["
        "{\"name\":\"a.example.net\",\"allocationWeight\":1},"
        "{\"name\":\"b.example.net\",\"allocationWeight\":3},"
        "{\"name\":\"c.example.net\",\"allocationWeight\":1000},"
        "{\"name\":\"d.example.net\",\"allocationWeight\":1000}],"
        "\"individualEnrollments\":[{\"registrationId\":\"dev1\",\"iotHubs\":[\"a.example.net\"],"
        "\"attestation\":{\"type\":\"symmetricKey\",\"symmetricKey\":{\"primaryKey\":\"" KEY "\"}}}],"
        "\"enrollmentGroups\":[{\"enrollmentGroupId\":\"g\",\"allocationPolicy\":\"geoLatency\","
        "\"attestation\":{\"type\":\"symmetricKey\",\"symmetricKey\":{\"primaryKey\":\"" KEY "\"}}}]}";

static DpsData *load_base(void) {
        DpsData *d = NULL;
        _cleanup_free_ char *msg = NULL;
        assert_int_equal(dps_data_parse(base_json, strlen(base_json), &d, &msg), 0);
        return d;
}

static struct json_object *parse(const char *s) {
        struct json_object *o = NULL;
        assert_int_equal(json_parse_limited(s, strlen(s), 65536, 32, &o), 0);
        return o;
}

static void test_data_put(void **state) {
        _cleanup_(dps_data_freep) DpsData *d = load_base();
        _cleanup_free_ char *msg = NULL;

        assert_int_equal(dps_data_put(d, DPS_DATA_LINKED_HUBS, parse("{\"name\":\"e.example.net\",\"allocationWeight\":5}"),
                                      DPS_DATA_PUT_CREATE, &msg), 0);
        assert_int_equal(d->n_hubs, 5);
        assert_int_equal(dps_data_find_hub(d, "E.example.net")->allocation_weight, 5);
        assert_int_equal(dps_data_put(d, DPS_DATA_LINKED_HUBS, parse("{\"name\":\"E.EXAMPLE.NET\"}"), DPS_DATA_PUT_CREATE,
                                      &msg), -EEXIST);
        assert_non_null(strstr(msg, "exists already"));
        assert_int_equal(dps_data_put(d, DPS_DATA_LINKED_HUBS, parse("{\"name\":\"e.example.net\",\"allocationWeight\":7}"),
                                      DPS_DATA_PUT_UPDATE, &msg), 0);
        assert_int_equal(dps_data_find_hub(d, "e.example.net")->allocation_weight, 7);
        assert_int_equal(dps_data_put(d, DPS_DATA_LINKED_HUBS, parse("{\"name\":\"x.example.net\"}"), DPS_DATA_PUT_UPDATE,
                                      &msg), -ENOENT);

        /* validation leaves d unchanged: unknown field, bad id, weight out of range, probe name */
        assert_int_equal(dps_data_put(d, DPS_DATA_INDIVIDUAL_ENROLLMENTS,
                                      parse("{\"registrationId\":\"dev2\",\"colour\":1,\"attestation\":{\"type\":\"none\"}}"),
                                      DPS_DATA_PUT_CREATE, &msg), -EINVAL);
        assert_non_null(strstr(msg, "colour: unknown field"));
        assert_int_equal(dps_data_put(d, DPS_DATA_INDIVIDUAL_ENROLLMENTS,
                                      parse("{\"registrationId\":\"-dev\",\"attestation\":{\"type\":\"none\"}}"),
                                      DPS_DATA_PUT_CREATE, &msg), -EINVAL);
        assert_int_equal(dps_data_put(d, DPS_DATA_LINKED_HUBS, parse("{\"name\":\"f.example.net\",\"allocationWeight\":0}"),
                                      DPS_DATA_PUT_CREATE, &msg), -EINVAL);
        assert_int_equal(dps_data_put(d, DPS_DATA_LINKED_HUBS,
                                      parse("{\"name\":\"f.example.net\",\"probeAddress\":\"f.example.net:443\"}"),
                                      DPS_DATA_PUT_CREATE, &msg), -EINVAL);
        assert_non_null(strstr(msg, "probeAddress"));
        assert_int_equal(dps_data_put(d, DPS_DATA_INDIVIDUAL_ENROLLMENTS, parse("[]"), DPS_DATA_PUT_CREATE, &msg), -EINVAL);
        assert_int_equal(dps_data_put(d, DPS_DATA_INDIVIDUAL_ENROLLMENTS, parse("{}"), DPS_DATA_PUT_CREATE, &msg), -EINVAL);
        assert_int_equal(d->n_individual, 1);
        assert_int_equal(d->n_hubs, 5);

        /* custom allocation needs a webhook URL */
        assert_int_equal(dps_data_put(d, DPS_DATA_INDIVIDUAL_ENROLLMENTS,
                                      parse("{\"registrationId\":\"dev3\",\"allocationPolicy\":\"custom\","
                                            "\"attestation\":{\"type\":\"none\"}}"),
                                      DPS_DATA_PUT_CREATE, &msg), -EINVAL);
        assert_int_equal(dps_data_put(d, DPS_DATA_INDIVIDUAL_ENROLLMENTS,
                                      parse("{\"registrationId\":\"dev3\",\"allocationPolicy\":\"custom\","
                                            "\"customAllocationDefinition\":{\"webhookUrl\":\"ftp://x\"},"
                                            "\"attestation\":{\"type\":\"none\"}}"),
                                      DPS_DATA_PUT_CREATE, &msg), -EINVAL);
        assert_int_equal(dps_data_put(d, DPS_DATA_INDIVIDUAL_ENROLLMENTS,
                                      parse("{\"registrationId\":\"dev3\",\"allocationPolicy\":\"custom\","
                                            "\"customAllocationDefinition\":{\"webhookUrl\":\"http://127.0.0.1:1/x\","
                                            "\"apiVersion\":\"2021-10-01\"},\"attestation\":{\"type\":\"none\"}}"),
                                      DPS_DATA_PUT_CREATE, &msg), 0);
        assert_int_equal(dps_data_find_individual(d, "dev3")->allocation_policy, DPS_ALLOCATION_CUSTOM);

        /* a hub in use cannot go; an unused one can */
        assert_int_equal(dps_data_remove(d, DPS_DATA_LINKED_HUBS, "a.example.net", &msg), -EINVAL);
        assert_non_null(strstr(msg, "is not a linked hub"));
        assert_int_equal(dps_data_remove(d, DPS_DATA_LINKED_HUBS, "e.example.net", &msg), 0);
        assert_int_equal(dps_data_remove(d, DPS_DATA_LINKED_HUBS, "e.example.net", &msg), -ENOENT);
        assert_int_equal(dps_data_remove(d, DPS_DATA_INDIVIDUAL_ENROLLMENTS, "DEV1", &msg), 0);
        assert_null(dps_data_find_individual(d, "dev1"));
        assert_non_null(dps_data_find_json(d, DPS_DATA_ENROLLMENT_GROUPS, "G"));
        assert_null(dps_data_find_json(d, DPS_DATA_ENROLLMENT_GROUPS, "h"));
}

static void test_probe_address(void **state) {
        static const char *const good[] = { "127.0.0.1:443", "[::1]:8883", "192.0.2.7:1", "[2001:db8::7]:65535" };
        static const char *const bad[] = {
                "host.example:443", "127.0.0.1", "::1:443", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x",
                "[::1]", "[::1:443", "", ":443", "127.0.0.1:443 ", "1.2.3.4.5:1",
        };
        struct sockaddr_storage ss;
        unsigned len = 0;

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                assert_int_equal(dps_probe_address_parse(good[i], &ss, &len), 0);
        assert_int_equal(ss.ss_family, AF_INET6);
        assert_int_equal(len, sizeof(struct sockaddr_in6));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(dps_probe_address_parse(bad[i], NULL, NULL), -EINVAL);
}

typedef struct Table {
        const char *hub[4];
        int result[4];             /* 0 or -errno */
        uint64_t usec[4];
} Table;

static int table_latency(const char *hub, uint64_t *ret, void *userdata) {
        const Table *t = userdata;
        for (size_t i = 0; i < 4; i++)
                if (t->hub[i] && strcaseeq(t->hub[i], hub)) {
                        if (t->result[i] == 0 && ret)
                                *ret = t->usec[i];
                        return t->result[i];
                }
        return -ENODATA;
}

static void count(const DpsData *d, const DpsEnrollment *e, Table *t, unsigned counts[4], int *ret) {
        memset(counts, 0, 4 * sizeof(unsigned));
        for (int i = 0; i < 400; i++) {
                char id[32];
                const char *hub = NULL;
                snprintf(id, sizeof(id), "sensor-%d", i);
                *ret = dps_allocate_hub_latency(d, e, id, table_latency, t, &hub);
                if (*ret < 0)
                        return;
                counts[hub[0] - 'a']++;
        }
}

static void test_latency_choice(void **state) {
        _cleanup_(dps_data_freep) DpsData *d = load_base();
        const DpsEnrollment *g = dps_data_find_group(d, "g");
        unsigned c[4];
        int r;
        Table t = { .hub = { "a.example.net", "b.example.net", "c.example.net", "d.example.net" } };

        /* a and b tie (within 1 ms), c is 1 s away, d unreachable: a:b ≈ 1:3 by weight */
        t.result[0] = t.result[1] = t.result[2] = 0;
        t.usec[0] = 300;
        t.usec[1] = 900;
        t.usec[2] = 1000000;
        t.result[3] = -EHOSTUNREACH;
        count(d, g, &t, c, &r);
        assert_int_equal(r, 0);
        assert_int_equal(c[2] + c[3], 0);
        assert_true(c[0] > 60 && c[0] < 140);
        assert_true(c[1] > 260 && c[1] < 340);

        /* no tie: b at 5 ms, a at 1 ms → all on a */
        t.usec[1] = 5000;
        t.usec[0] = 1000;
        count(d, g, &t, c, &r);
        assert_int_equal(c[0], 400);

        /* 20 % tie band: 100 ms and 115 ms tie */
        t.usec[0] = 100000;
        t.usec[1] = 115000;
        count(d, g, &t, c, &r);
        assert_true(c[0] > 0 && c[1] > c[0]);

        /* only the far hub reachable: everything there; the dead one never */
        t.result[0] = t.result[1] = -EHOSTUNREACH;
        count(d, g, &t, c, &r);
        assert_int_equal(c[2], 400);

        /* nothing measured yet: hashed over all but the unreachable ones */
        t.result[0] = t.result[1] = t.result[2] = -ENODATA;
        t.result[3] = -EHOSTUNREACH;
        count(d, g, &t, c, &r);
        assert_int_equal(r, 0);
        assert_int_equal(c[3], 0);
        assert_true(c[2] > 300); /* weight 1000 among 1, 3, 1000 */

        /* all unreachable: no hub */
        for (size_t i = 0; i < 4; i++)
                t.result[i] = -EHOSTUNREACH;
        count(d, g, &t, c, &r);
        assert_int_equal(r, -ENXIO);

        /* the enrollment's own hub list still limits the choice */
        const DpsEnrollment *e = dps_data_find_individual(d, "dev1");
        const char *hub = NULL;
        t.result[0] = 0;
        t.usec[0] = 50000;
        t.result[1] = 0;
        t.usec[1] = 10;
        assert_int_equal(dps_allocate_hub_latency(d, e, "dev1", table_latency, &t, &hub), 0);
        assert_string_equal(hub, "a.example.net");
}

static uint64_t mono(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void test_latency_probe(void **state) {
        _cleanup_(dps_data_freep) DpsData *d = NULL;
        _cleanup_free_ char *msg = NULL, *json = NULL;
        DpsLatency *l = NULL;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sa);
        uint64_t usec = 0;

        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(lfd >= 0 && cfd >= 0);
        assert_int_equal(bind(lfd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 16), 0);
        assert_int_equal(getsockname(lfd, (struct sockaddr *) &sa, &sl), 0);
        unsigned open_port = ntohs(sa.sin_port);
        /* a port nobody listens on: bound, never listening */
        sa.sin_port = 0;
        assert_int_equal(bind(cfd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        sl = sizeof(sa);
        assert_int_equal(getsockname(cfd, (struct sockaddr *) &sa, &sl), 0);
        unsigned closed_port = ntohs(sa.sin_port);

        assert_true(asprintf(&json,
                             "{\"idScope\":\"0ne00000A0A\",\"linkedHubs\":["
                             "{\"name\":\"up.example.net\",\"probeAddress\":\"127.0.0.1:%u\"},"
                             "{\"name\":\"down.example.net\",\"probeAddress\":\"127.0.0.1:%u\"},"
                             "{\"name\":\"none.example.net\"}]}",
                             open_port, closed_port) > 0);
        assert_int_equal(dps_data_parse(json, strlen(json), &d, &msg), 0);
        assert_int_equal(dps_latency_new(&l), 0);
        dps_latency_set_interval(l, 100000, 2000000);
        assert_int_equal(dps_latency_sync(l, d), 0);
        assert_int_equal(dps_latency_n_targets(l), 2);
        assert_int_equal(dps_latency_get(l, "up.example.net", &usec), -ENODATA);

        uint64_t deadline = mono() + 5000000;
        while (mono() < deadline && (dps_latency_get(l, "up.example.net", NULL) == -ENODATA ||
                                     dps_latency_get(l, "down.example.net", NULL) == -ENODATA)) {
                assert_int_equal(dps_latency_process(l, mono()), 0);
                poll(NULL, 0, 5);
        }
        assert_int_equal(dps_latency_get(l, "up.example.net", &usec), 0);
        assert_true(usec < 500000);
        assert_int_equal(dps_latency_get(l, "down.example.net", NULL), -EHOSTUNREACH);
        assert_int_equal(dps_latency_get(l, "none.example.net", NULL), -ENODATA);

        /* the listener goes away: unreachable after the next probe; a resync keeps nothing stale */
        close(lfd);
        deadline = mono() + 5000000;
        while (mono() < deadline && dps_latency_get(l, "up.example.net", NULL) == 0) {
                assert_int_equal(dps_latency_process(l, mono()), 0);
                poll(NULL, 0, 5);
        }
        assert_int_equal(dps_latency_get(l, "up.example.net", NULL), -EHOSTUNREACH);
        assert_int_equal(dps_latency_sync(l, d), 0);
        assert_int_equal(dps_latency_get(l, "up.example.net", NULL), -EHOSTUNREACH);
        close(cfd);
        dps_latency_free(l);
}

static int add_hub(DpsData *d, void *userdata, char **reterr) {
        return dps_data_put(d, DPS_DATA_LINKED_HUBS, parse(userdata), DPS_DATA_PUT_CREATE, reterr);
}

static void test_edit_data(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = NULL;
        _cleanup_free_ char *path = NULL, *msg = NULL, *dir_copy = NULL;
        char dir[] = "/tmp/test-dps-alloc.XXXXXX";
        struct stat st1, st2;

        assert_non_null(mkdtemp(dir));
        assert_true(asprintf(&path, "%s/data.json", dir) > 0);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(base_json, f);
        fclose(f);

        assert_int_equal(dps_service_new(&s), 0);
        assert_int_equal(dps_service_load(s, path, &msg), 0);
        const DpsData *before = dps_service_get_data(s);
        assert_int_equal(before->n_hubs, 4);

        assert_int_equal(dps_service_edit_data(s, add_hub, (void *) "{\"name\":\"e.example.net\"}", &msg), 0);
        assert_int_equal(dps_service_get_data(s)->n_hubs, 5);
        assert_int_equal(stat(path, &st1), 0);
        assert_int_equal(st1.st_mode & 07777, DPS_DATAFILE_MODE);
        /* the file is what a fresh load sees */
        DpsData *reread = NULL;
        assert_int_equal(dps_data_load(path, &reread, &msg), 0);
        assert_non_null(dps_data_find_hub(reread, "e.example.net"));
        dps_data_free(reread);

        /* a failing edit changes neither the file nor the data */
        assert_int_equal(dps_service_edit_data(s, add_hub, (void *) "{\"name\":\"e.example.net\"}", &msg), -EEXIST);
        assert_int_equal(stat(path, &st2), 0);
        assert_int_equal(st1.st_ino, st2.st_ino);
        assert_int_equal(dps_service_get_data(s)->n_hubs, 5);

        /* another process editing (edgeprov-dpsctl --data holds a flock on the directory) */
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), p[2];
        char c;
        assert_true(dfd >= 0);
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int lfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (lfd < 0 || flock(lfd, LOCK_EX) < 0)
                        _exit(1);
                (void) !write(p[1], "x", 1);
                pause();
                _exit(0);
        }
        assert_int_equal(read(p[0], &c, 1), 1);
        assert_int_equal(dps_service_edit_data(s, add_hub, (void *) "{\"name\":\"f.example.net\"}", &msg), -EBUSY);
        assert_non_null(strstr(msg, "another process"));
        assert_int_equal(dps_service_get_data(s)->n_hubs, 5);
        kill(pid, SIGKILL);
        (void) waitpid(pid, NULL, 0);
        close(p[0]);
        close(p[1]);
        close(dfd);

        /* a broken file on disk is not overwritten */
        f = fopen(path, "w");
        assert_non_null(f);
        fputs("{ broken", f);
        fclose(f);
        assert_int_equal(dps_service_edit_data(s, add_hub, (void *) "{\"name\":\"g.example.net\"}", &msg), -EBADMSG);
        assert_non_null(strstr(msg, "broken"));

        char *cmd = NULL;
        assert_true(asprintf(&cmd, "rm -rf '%s'", dir) > 0);
        assert_int_equal(system(cmd), 0);
        free(cmd);
}

static void test_webhook_url(void **state) {
        assert_true(dps_webhook_url_is_valid("http://127.0.0.1:8080/alloc"));
        assert_true(dps_webhook_url_is_valid("https://alloc.example.net/api?code=x"));
        assert_false(dps_webhook_url_is_valid("ftp://x"));
        assert_false(dps_webhook_url_is_valid("http://a b"));
        assert_false(dps_webhook_url_is_valid(""));
        assert_false(dps_webhook_url_is_valid(NULL));
        char *longurl = malloc(DPS_WEBHOOK_URL_MAX + 2);
        assert_non_null(longurl);
        memset(longurl, 'a', DPS_WEBHOOK_URL_MAX + 1);
        memcpy(longurl, "http://", 7);
        longurl[DPS_WEBHOOK_URL_MAX + 1] = 0;
        assert_false(dps_webhook_url_is_valid(longurl));
        longurl[DPS_WEBHOOK_URL_MAX] = 0;
        assert_true(dps_webhook_url_is_valid(longurl));
        free(longurl);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_data_put),
                cmocka_unit_test(test_probe_address),
                cmocka_unit_test(test_latency_choice),
                cmocka_unit_test(test_latency_probe),
                cmocka_unit_test(test_edit_data),
                cmocka_unit_test(test_webhook_url),
        };
        log_set_max_level(LOG_WARNING);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
