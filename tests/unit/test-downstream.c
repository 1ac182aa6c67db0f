/* SPDX-License-Identifier: MIT */
/* downstream_add_many() (src/agent/downstream.c), the bulk path behind RegisterDevices: per-entry
 * results for valid, normalised, invalid, duplicate and already known ids; the intent records
 * on disk before it returns (and nothing left half-written); a new Downstream reading the same
 * directory finds them.  No gateway assignment is given, so no registration starts. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/conf.h"
#include "agent/downstream.h"
#include "edgeprov/macro.h"

static char dir[] = "/tmp/test-downstream.XXXXXX";

static void setup_config(Config *c) {
        char key[256];
        conf_init(c);
        snprintf(key, sizeof(key), "%s/group-key", dir);
        FILE *f = fopen(key, "w");
        assert_non_null(f);
        fputs("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", f);
        fclose(f);
        assert_int_equal(chmod(key, 0600), 0);
        c->downstream_group_key_file = strdup(key);
        assert_int_equal(asprintf(&c->state_directory, "%s/state", dir) > 0, 1);
        c->endpoint = strdup("127.0.0.1");
        c->id_scope = strdup("0ne00000A0A");
        c->downstream_concurrency = 8;
        c->downstream_rate = 1000;
}

static size_t count_files(const char *suffix) {
        char path[512];
        size_t n = 0;
        snprintf(path, sizeof(path), "%s/state/devices", dir);
        DIR *d = opendir(path);
        assert_non_null(d);
        for (struct dirent *e; (e = readdir(d));) {
                size_t l = strlen(e->d_name), sl = strlen(suffix);
                if (e->d_name[0] != '.' && l > sl && streq(e->d_name + l - sl, suffix))
                        n++;
                else if (e->d_name[0] != '.')
                        n += 1000; /* anything else (a temporary batch file) fails the count */
        }
        closedir(d);
        return n;
}

static void test_add_many(void **state) {
        sd_event *e = NULL;
        Downstream *d = NULL;
        Config c;

        assert_non_null(mkdtemp(dir));
        setup_config(&c);
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(downstream_new(e, &c, &d), 0);
        assert_int_equal(downstream_start(d), 0);

        const char *ids[] = { "s-1", "bad id!", "ble:02:00:00:00:00:01", "s-2", "s-1", "x" };
        const char *opts[] = { NULL, NULL, "{\"room\":\"r1\"}", "[1]", NULL, NULL };
        Sensor *sensors[6];
        const char *errors[6];
        int codes[6];
        assert_int_equal(downstream_add_many(d, 6, ids, opts, sensors, errors, codes), 0);

        assert_non_null(sensors[0]);
        assert_string_equal(sensors[0]->id, "s-1");
        assert_int_equal(sensors[0]->state, SENSOR_PENDING);
        assert_null(sensors[1]);                        /* invalid id */
        assert_int_equal(codes[1], -EINVAL);
        assert_non_null(errors[1]);
        assert_non_null(sensors[2]);                    /* normalised, protocol and option kept */
        assert_string_equal(sensors[2]->id, "ble-020000000001");
        assert_string_equal(sensors[2]->protocol, "ble");
        assert_string_equal(sensors[2]->options_json, "{\"room\":\"r1\"}");
        assert_null(sensors[3]);                        /* options not an object */
        assert_int_equal(codes[3], -EINVAL);
        assert_ptr_equal(sensors[4], sensors[0]);       /* twice in one call: one sensor */
        assert_non_null(sensors[5]);
        assert_int_equal(downstream_count(d), 3);
        assert_int_equal(count_files(".json"), 3);      /* on disk, nothing else in the directory */

        /* a known id, the one refused before (now without options) and a new one */
        const char *again[] = { "s-1", "s-2", "s-3" };
        Sensor *known = sensors[0];
        assert_int_equal(downstream_add_many(d, 3, again, NULL, sensors, errors, codes), 0);
        assert_ptr_equal(sensors[0], known);
        assert_int_equal(codes[1], 0);
        assert_int_equal(codes[2], 0);
        assert_int_equal(downstream_count(d), 5);
        assert_int_equal(count_files(".json"), 5);
        downstream_free(d);

        /* a restart finds them */
        assert_int_equal(downstream_new(e, &c, &d), 0);
        assert_int_equal(downstream_start(d), 0);
        assert_int_equal(downstream_count(d), 5);
        Sensor *s = downstream_find(d, "ble-020000000001");
        assert_non_null(s);
        assert_string_equal(s->options_json, "{\"room\":\"r1\"}");
        assert_non_null(downstream_find(d, "s-3"));
        assert_null(downstream_find(d, "s-9"));
        downstream_free(d);

        sd_event_unref(e);
        conf_done(&c);
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
        assert_int_equal(system(cmd), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_add_many),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
