/* SPDX-License-Identifier: MIT */
/* edgeprovctl: look at and steer edgeprovd over D-Bus (io.edgeprov.Gateway1).  `status` falls
 * back to the state file when the daemon is not running. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#include "agent/bus.h"
#include "agent/attest.h"
#include "agent/conf.h"
#include "agent/group-key.h"
#include "agent/sensor-list.h"
#include "agent/state.h"
#include "agent/tpm.h"
#include "edgeprov/fileio.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/time-util.h"

/* Exit codes */
#define EXIT_USAGE 2
#define EXIT_NOT_PROVISIONED 3
#define EXIT_NO_DEVICE 4
#define EXIT_DENIED 5
#define EXIT_NO_DAEMON 6

static const char *arg_state_dir = NULL;
static const char *arg_config = EDGEPROV_DEFAULT_CONFIG;
static const char *arg_bus_address = NULL;
static const char *arg_file = NULL;
static const char *arg_reason = "";
static bool arg_json = false;
static bool arg_wait = false;
static char **arg_options = NULL;
static size_t arg_n_options = 0;

static void help(void) {
        printf("%s [OPTIONS...] COMMAND\n\n"
               "Show and steer the provisioning of this gateway and its sensors.\n\n"
               "Commands:\n"
               "  status                      The gateway's own assignment (default)\n"
               "  devices                     List the downstream sensors\n"
               "  device ID                   Show one sensor\n"
               "  register ID [--option K=V]  Register a sensor (BLE MAC, Zigbee EUI-64, UNIT@BUS or an id)\n"
               "  register --file FILE        Register the sensors listed in a CSV or JSON file\n"
               "  remove ID                   Forget a sensor\n"
               "  reprovision [--reason R]    Provision the gateway again now\n"
               "  doctor                      Check what provisioning depends on\n\n"
               "Options:\n"
               "  -h --help                   Show this help\n"
               "     --version                Show the version\n"
               "  -c --config=PATH            edgeprovd configuration (for status without the daemon, doctor)\n"
               "     --state-dir=DIR          Read the state directory instead of asking the daemon\n"
               "     --bus-address=ADDR       D-Bus address (default: the system bus)\n"
               "     --json                   Machine-readable output\n"
               "  -o --option=KEY=VALUE       Registration option (repeatable)\n"
               "  -f --file=FILE              Bulk sensor file\n"
               "     --wait                   register: wait until the sensors are assigned or failed\n"
               "     --reason=TEXT            reprovision: why (logged)\n\n"
               "Exit status: 0 success, 1 failure, 2 usage, 3 not provisioned, 4 no such device,\n"
               "5 permission denied, 6 edgeprovd not reachable.\n",
               program_invocation_short_name);
}

static int state_dir(char **ret) {
        char *dir;
        if (arg_state_dir)
                dir = strdup(arg_state_dir);
        else {
                Config c;
                _cleanup_free_ char *error = NULL;
                conf_init(&c);
                if (conf_load(arg_config, &c, &error) >= 0 && c.state_directory)
                        dir = strdup(c.state_directory);
                else
                        dir = strdup(EDGEPROV_DEFAULT_STATE_DIR);
                conf_done(&c);
        }
        if (!dir)
                return -ENOMEM;
        *ret = dir;
        return 0;
}

static int status_from_file(void) {
        _cleanup_free_ char *dir = NULL;
        GatewayState s = {};
        int r;

        if (state_dir(&dir) < 0)
                return log_oom();

        r = gateway_state_load(dir, &s);
        if (r == -ENOENT) {
                printf("Not provisioned yet (no state in %s).\n", dir);
                return EXIT_NOT_PROVISIONED;
        }
        if (r < 0)
                return log_error_errno(r, "Cannot read the state in '%s': %m", dir);
        if (!gateway_state_is_committed(&s)) {
                printf("Not provisioned yet.\n");
                gateway_state_done(&s);
                return EXIT_NOT_PROVISIONED;
        }
        if (arg_json) {
                _cleanup_free_ char *text = NULL;
                r = gateway_state_format(&s, &text);
                if (r >= 0)
                        printf("%s\n", text);
        } else {
                char when[64] = "?";
                time_t t = (time_t) s.provisioned_at;
                struct tm tm;
                if (gmtime_r(&t, &tm))
                        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
                printf("Registration ID: %s\n"
                       "      Device ID: %s\n"
                       "   Assigned hub: %s\n"
                       "      Substatus: %s\n"
                       "    Attestation: %s\n"
                       "       Endpoint: %s (scope %s)\n"
                       " Provisioned at: %s\n"
                       "     State file: %s/%s\n",
                       s.registration_id, s.device_id, s.assigned_hub, strna(s.substatus), strna(s.attestation),
                       strna(s.endpoint), strna(s.id_scope), when, dir, STATE_FILE_NAME);
        }
        gateway_state_done(&s);
        return 0;
}

/* ---- D-Bus ---------------------------------------------------------------- */

static int bus_open(sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        if (!arg_bus_address)
                return sd_bus_open_system(ret);
        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, arg_bus_address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, 1);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

static int connect_or_fail(sd_bus **ret) {
        int r = bus_open(ret);
        if (r < 0) {
                log_error_errno(r, "Cannot connect to the bus: %m");
                return -EXIT_NO_DAEMON;
        }
        return 0;
}

/* Prints the D-Bus error and returns the exit status for it. */
static int fail_bus(const char *what, const sd_bus_error *e, int r) {
        log_error("%s: %s", what, e && e->message ? e->message : strerror(-r));
        if (!e || !e->name)
                return EXIT_FAILURE;
        if (streq(e->name, "io.edgeprov.Error.PermissionDenied") || streq(e->name, SD_BUS_ERROR_ACCESS_DENIED))
                return EXIT_DENIED;
        if (streq(e->name, "io.edgeprov.Error.NoSuchDevice") || streq(e->name, SD_BUS_ERROR_UNKNOWN_OBJECT))
                return EXIT_NO_DEVICE;
        if (streq(e->name, SD_BUS_ERROR_SERVICE_UNKNOWN) || streq(e->name, SD_BUS_ERROR_NAME_HAS_NO_OWNER) ||
            streq(e->name, SD_BUS_ERROR_NO_REPLY))
                return EXIT_NO_DAEMON;
        return EXIT_FAILURE;
}

/* Reads an a{sv} of s/t/u/b values into a JSON object. */
static int read_props(sd_bus_message *m, struct json_object *o) {
        int r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *k, *contents;
                char type;
                r = sd_bus_message_read(m, "s", &k);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        return r;
                if (streq(contents, "s")) {
                        const char *v;
                        r = sd_bus_message_read(m, "v", "s", &v);
                        if (r >= 0)
                                json_object_object_add(o, k, json_object_new_string(v));
                } else if (streq(contents, "t")) {
                        uint64_t v;
                        r = sd_bus_message_read(m, "v", "t", &v);
                        if (r >= 0)
                                json_object_object_add(o, k, json_object_new_int64((int64_t) v));
                } else if (streq(contents, "u")) {
                        uint32_t v;
                        r = sd_bus_message_read(m, "v", "u", &v);
                        if (r >= 0)
                                json_object_object_add(o, k, json_object_new_int64(v));
                } else
                        r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static int get_all(sd_bus *bus, const char *path, const char *iface, struct json_object **ret, sd_bus_error *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = sd_bus_call_method(bus, BUS_NAME, path, "org.freedesktop.DBus.Properties", "GetAll", e, &reply, "s",
                                   iface);
        if (r < 0)
                return r;
        struct json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        r = read_props(reply, o);
        if (r < 0) {
                json_object_put(o);
                return r;
        }
        *ret = o;
        return 0;
}

static const char *jstr(struct json_object *o, const char *k) {
        struct json_object *v;
        if (!json_object_object_get_ex(o, k, &v))
                return "";
        return json_object_get_string(v) ?: "";
}

static int64_t jint(struct json_object *o, const char *k) {
        struct json_object *v;
        return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

static const char *fmt_usec(int64_t usec, char *buf, size_t size) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;
        if (usec <= 0 || !gmtime_r(&t, &tm))
                return "-";
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return buf;
}

static void print_json(struct json_object *o) {
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
}

static int verb_status(void) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        struct json_object *o = NULL;
        char b1[64], b2[64];
        int r;

        if (arg_state_dir || bus_open(&bus) < 0 || get_all(bus, BUS_PATH, BUS_IFACE_GATEWAY, &o, &e) < 0) {
                if (!arg_state_dir && !arg_json)
                        printf("(edgeprovd is not reachable on the bus; showing the state file)\n");
                return status_from_file();
        }
        if (arg_json)
                print_json(o);
        else
                printf("          State: %s\n"
                       "Registration ID: %s\n"
                       "      Device ID: %s\n"
                       "   Assigned hub: %s\n"
                       "      Substatus: %s\n"
                       "    Attestation: %s\n"
                       "     Last error: %s\n"
                       "     Next retry: %s\n"
                       " Provisioned at: %s\n"
                       "        Devices: %" PRIi64 "\n",
                       jstr(o, "State"), jstr(o, "RegistrationId"), *jstr(o, "DeviceId") ? jstr(o, "DeviceId") : "-",
                       *jstr(o, "AssignedHub") ? jstr(o, "AssignedHub") : "-",
                       *jstr(o, "Substatus") ? jstr(o, "Substatus") : "-", jstr(o, "Attestation"),
                       *jstr(o, "LastError") ? jstr(o, "LastError") : "-", fmt_usec(jint(o, "NextRetry"), b1, sizeof(b1)),
                       fmt_usec(jint(o, "ProvisionedAt"), b2, sizeof(b2)), jint(o, "DeviceCount"));
        r = *jstr(o, "DeviceId") ? 0 : EXIT_NOT_PROVISIONED;
        json_object_put(o);
        return r;
}

/* All Device1 objects as a JSON array. */
static int list_devices(sd_bus *bus, struct json_object **ret, sd_bus_error *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        struct json_object *arr;
        int r;

        r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", e,
                               &reply, NULL);
        if (r < 0)
                return r;
        arr = json_object_new_array();
        if (!arr)
                return -ENOMEM;
        r = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}")) > 0) {
                const char *path;
                r = sd_bus_message_read(reply, "o", &path);
                if (r >= 0)
                        r = sd_bus_message_enter_container(reply, 'a', "{sa{sv}}");
                while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sa{sv}")) > 0) {
                        const char *iface;
                        r = sd_bus_message_read(reply, "s", &iface);
                        if (r >= 0 && streq(iface, BUS_IFACE_DEVICE)) {
                                struct json_object *o = json_object_new_object();
                                json_object_object_add(o, "Path", json_object_new_string(path));
                                r = read_props(reply, o);
                                json_object_array_add(arr, o);
                        } else if (r >= 0)
                                r = sd_bus_message_skip(reply, "a{sv}");
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r < 0) {
                json_object_put(arr);
                return r;
        }
        *ret = arr;
        return 0;
}

static int verb_devices(void) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        struct json_object *arr = NULL;
        int r = connect_or_fail(&bus);
        if (r < 0)
                return -r;
        r = list_devices(bus, &arr, &e);
        if (r < 0)
                return fail_bus("Cannot list the devices", &e, r);
        size_t n = json_object_array_length(arr);
        if (arg_json)
                print_json(arr);
        else {
                unsigned counts[5] = {};
                printf("%-32s %-12s %-32s %-28s %-8s %s\n", "REGISTRATION-ID", "STATE", "DEVICE-ID", "HUB", "ATTEMPTS",
                       "LAST-ERROR");
                for (size_t i = 0; i < n; i++) {
                        struct json_object *o = json_object_array_get_idx(arr, i);
                        const char *st = jstr(o, "State");
                        printf("%-32s %-12s %-32s %-28s %-8" PRIi64 " %s\n", jstr(o, "RegistrationId"), st,
                               *jstr(o, "DeviceId") ? jstr(o, "DeviceId") : "-",
                               *jstr(o, "AssignedHub") ? jstr(o, "AssignedHub") : "-", jint(o, "Attempts"),
                               jstr(o, "LastError"));
                        counts[streq(st, "assigned") ? 0 : streq(st, "failed") ? 1 : 2]++;
                }
                printf("\n%zu device(s): %u assigned, %u failed, %u in progress.\n", n, counts[0], counts[1], counts[2]);
        }
        json_object_put(arr);
        return 0;
}

static int device_path_for(const char *input, char **ret) {
        _cleanup_free_ char *id = NULL;
        const char *proto, *why = NULL;
        int r = sensor_id_normalize(input, &id, &proto, &why);
        if (r < 0) {
                log_error("'%s': %s.", input, strna(why));
                return -EXIT_USAGE;
        }
        r = sd_bus_path_encode(BUS_DEVICES_PATH, id, ret);
        return r < 0 ? -EXIT_FAILURE : 0;
}

static int verb_device(const char *id) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *path = NULL;
        struct json_object *o = NULL;
        char b[64];
        int r = device_path_for(id, &path);
        if (r < 0)
                return -r;
        r = connect_or_fail(&bus);
        if (r < 0)
                return -r;
        r = get_all(bus, path, BUS_IFACE_DEVICE, &o, &e);
        if (r < 0)
                return fail_bus(id, &e, r);
        if (arg_json)
                print_json(o);
        else
                printf("Registration ID: %s\n"
                       "          State: %s\n"
                       "      Device ID: %s\n"
                       "   Assigned hub: %s\n"
                       "       Attempts: %" PRIi64 "\n"
                       "     Last error: %s\n"
                       " Provisioned at: %s\n",
                       jstr(o, "RegistrationId"), jstr(o, "State"), *jstr(o, "DeviceId") ? jstr(o, "DeviceId") : "-",
                       *jstr(o, "AssignedHub") ? jstr(o, "AssignedHub") : "-", jint(o, "Attempts"),
                       *jstr(o, "LastError") ? jstr(o, "LastError") : "-",
                       fmt_usec(jint(o, "ProvisionedAt"), b, sizeof(b)));
        json_object_put(o);
        return 0;
}

static int new_register(sd_bus *bus, const char *id, char **keys, char **values, size_t n, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, BUS_PATH, BUS_IFACE_GATEWAY, "RegisterDevice");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", id);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = sd_bus_message_append(m, "{sv}", keys[i], "s", values[i]);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

static int call_register(sd_bus *bus, const char *id, char **keys, char **values, size_t n, char **ret_path,
                         sd_bus_error *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *path;
        int r;

        r = new_register(bus, id, keys, values, n, &m);
        if (r >= 0)
                r = sd_bus_call(bus, m, 0, e, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r >= 0 && ret_path)
                r = (*ret_path = strdup(path)) ? 0 : -ENOMEM;
        return r;
}

static void progress(const char *what, size_t done, size_t total) {
        char bar[41];
        size_t fill = total ? done * 40 / total : 40;
        if (!isatty(STDERR_FILENO) || arg_json)
                return;
        memset(bar, '#', fill);
        memset(bar + fill, '.', 40 - fill);
        bar[40] = 0;
        fprintf(stderr, "\r%s [%s] %zu/%zu", what, bar, done, total);
        if (done == total)
                fputc('\n', stderr);
        fflush(stderr);
}

/* --wait: the devices' State from one GetManagedObjects, then from their PropertiesChanged
 * signals (polling GetManagedObjects every 200 ms cost the daemon ≈ 8 ms of CPU per call with
 * 1,000 devices, plus the bus and us, while it was busy registering).  A full re-read every 5 s
 * covers a missed signal or a restarted daemon.  A device counts once it is assigned or failed
 * (a signal older than the re-read that reports it still in progress does not undo that). */
typedef struct WaitState {
        const char **sorted;    /* the wanted paths, sorted, unique */
        signed char *final;     /* per path: 0 in progress, 1 assigned, 2 failed */
        size_t n, done, failed;
} WaitState;

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static void wait_set(WaitState *w, const char *path, const char *state) {
        const char **p = bsearch(&path, w->sorted, w->n, sizeof(char *), cmp_str);
        int f = streq(state, "assigned") ? 1 : streq(state, "failed") ? 2 : 0;
        if (!p || f == 0)
                return;
        size_t i = (size_t) (p - w->sorted);
        if (w->final[i] == f)
                return;
        if (w->final[i] == 0)
                w->done++;
        w->failed += (f == 2) - (w->final[i] == 2);
        w->final[i] = (signed char) f;
}

static int on_device_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        WaitState *w = userdata;
        const char *iface, *key, *value, *path = sd_bus_message_get_path(m);
        int r = sd_bus_message_read(m, "s", &iface);
        if (r < 0 || !path || !streq(iface, BUS_IFACE_DEVICE))
                return 0;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0 && streq(key, "State")) {
                        r = sd_bus_message_read(m, "v", "s", &value);
                        if (r >= 0)
                                wait_set(w, path, value);
                } else if (r >= 0)
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        return 0;
}


/* Waits until every path in paths (NULL entries skipped) is assigned or failed. */
static int wait_for_devices(sd_bus *bus, char **paths, size_t n) {
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        _cleanup_free_ const char **sorted = calloc(n + 1, sizeof(char *));
        _cleanup_free_ signed char *final = calloc(n + 1, 1);
        WaitState w = { .sorted = sorted, .final = final };
        uint64_t interval, next_sync = 0;
        size_t shown = SIZE_MAX;
        int r;

        if (!sorted || !final)
                return log_oom(), EXIT_FAILURE;
        for (size_t i = 0; i < n; i++)
                if (paths[i])
                        sorted[w.n++] = paths[i];
        qsort(sorted, w.n, sizeof(char *), cmp_str);
        size_t u = 0;
        for (size_t i = 0; i < w.n; i++)
                if (u == 0 || !streq(sorted[u - 1], sorted[i]))
                        sorted[u++] = sorted[i];
        w.n = u;
        /* the match before the first read, so that no change falls between them */
        r = sd_bus_add_match(bus, &slot,
                             "type='signal',sender='" BUS_NAME "',interface='org.freedesktop.DBus.Properties',"
                             "member='PropertiesChanged',path_namespace='" BUS_DEVICES_PATH "'",
                             on_device_changed, &w);
        interval = r >= 0 ? 5000000U : 200000U;
        for (;;) {
                uint64_t now = clock_now_usec(CLOCK_MONOTONIC);
                if (now >= next_sync) {
                        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
                        struct json_object *arr = NULL;
                        r = list_devices(bus, &arr, &e);
                        if (r < 0)
                                return fail_bus("Cannot list the devices", &e, r);
                        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                                struct json_object *o = json_object_array_get_idx(arr, i);
                                wait_set(&w, jstr(o, "Path"), jstr(o, "State"));
                        }
                        json_object_put(arr);
                        next_sync = now + interval;
                }
                if (w.done != shown) {
                        progress("Provisioning", w.done, w.n);
                        shown = w.done;
                }
                if (w.done >= w.n) {
                        if (!arg_json)
                                printf("%zu assigned, %zu failed.\n", w.done - w.failed, w.failed);
                        return w.failed ? EXIT_FAILURE : 0;
                }
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return log_error_errno(r, "Lost the bus: %m"), EXIT_NO_DAEMON;
                if (r > 0)
                        continue;
                now = clock_now_usec(CLOCK_MONOTONIC);
                (void) sd_bus_wait(bus, next_sync > now ? next_sync - now : 0);
        }
}

static int split_option(const char *kv, char **ret_k, char **ret_v) {
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv) {
                log_error("--option takes KEY=VALUE, got '%s'.", kv);
                return -EINVAL;
        }
        *ret_k = strndup(kv, (size_t) (eq - kv));
        *ret_v = strdup(eq + 1);
        return *ret_k && *ret_v ? 0 : -ENOMEM;
}

#define BULK_WINDOW 64

typedef struct Bulk Bulk;
typedef struct BulkSlot {
        Bulk *bulk;
        size_t index;
} BulkSlot;
struct Bulk {
        SensorList *list;
        char **paths;
        BulkSlot *slots;        /* one per entry */
        size_t outstanding, ok, bad, done;
        int fatal;
};

static int on_register_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        BulkSlot *slot = userdata;
        Bulk *b = slot->bulk;
        size_t i = slot->index;
        const char *path;

        b->outstanding--;
        b->done++;
        if (sd_bus_message_is_method_error(m, NULL)) {
                int code = fail_bus(b->list->entries[i].id, sd_bus_message_get_error(m), -EIO);
                b->bad++;
                if (code == EXIT_DENIED || code == EXIT_NO_DAEMON)
                        b->fatal = code;
        } else if (sd_bus_message_read(m, "o", &path) >= 0 && (b->paths[i] = strdup(path)))
                b->ok++;
        else
                b->bad++;
        progress("Registering", b->done, b->list->n);
        return 0;
}

/* RegisterDevices in chunks (one durable commit per chunk in the daemon).  Returns 0 (ok/bad
 * counted, paths filled), an exit code for a fatal error, or -EOPNOTSUPP when the daemon lacks
 * the method (then nothing was sent: fall back to RegisterDevice). */
#define BULK_CHUNK 250

static int register_chunks(sd_bus *bus, SensorList *l, char **paths, size_t *ok, size_t *bad) {
        for (size_t start = 0; start < l->n; start += BULK_CHUNK) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
                _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
                size_t end = start + BULK_CHUNK < l->n ? start + BULK_CHUNK : l->n, i = start;
                const char *path, *id, *name, *msg;
                uint32_t idx;
                int r;

                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, BUS_PATH, BUS_IFACE_GATEWAY, "RegisterDevices");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'a', "(sa{sv})");
                for (size_t j = start; r >= 0 && j < end; j++) {
                        SensorEntry *x = &l->entries[j];
                        r = sd_bus_message_open_container(m, 'r', "sa{sv}");
                        if (r >= 0)
                                r = sd_bus_message_append(m, "s", x->id);
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'a', "{sv}");
                        for (size_t k = 0; r >= 0 && k < x->n_options; k++)
                                r = sd_bus_message_append(m, "{sv}", x->keys[k], "s", x->values[k]);
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                }
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r < 0)
                        return log_error_errno(r, "Cannot build the request: %m"), EXIT_FAILURE;
                r = sd_bus_call(bus, m, 0, &e, &reply);
                if (r < 0 && start == 0 && sd_bus_error_has_name(&e, SD_BUS_ERROR_UNKNOWN_METHOD))
                        return -EOPNOTSUPP;
                if (r < 0)
                        return fail_bus("RegisterDevices", &e, r);
                r = sd_bus_message_enter_container(reply, 'a', "o");
                while (r >= 0 && (r = sd_bus_message_read(reply, "o", &path)) > 0 && i < end) {
                        if (!streq(path, "/")) {
                                if (!(paths[i] = strdup(path)))
                                        return log_oom(), EXIT_FAILURE;
                                (*ok)++;
                        }
                        i++;
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = sd_bus_message_enter_container(reply, 'a', "(usss)");
                while (r >= 0 && (r = sd_bus_message_read(reply, "(usss)", &idx, &id, &name, &msg)) > 0) {
                        log_error("%s: %s", id, msg);
                        (*bad)++;
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return log_error_errno(r, "Unexpected reply to RegisterDevices: %m"), EXIT_FAILURE;
                progress("Registering", end, l->n);
        }
        return 0;
}

static int verb_register(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r, ret = 0;

        if ((arg_file && argc > 0) || (!arg_file && argc != 1)) {
                log_error("register takes one ID, or --file FILE.");
                return EXIT_USAGE;
        }
        if (!arg_file) {
                _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
                char *keys[SENSOR_OPTIONS_MAX] = {}, *values[SENSOR_OPTIONS_MAX] = {};
                _cleanup_free_ char *path = NULL;
                if (arg_n_options > SENSOR_OPTIONS_MAX) {
                        log_error("At most %d options.", SENSOR_OPTIONS_MAX);
                        return EXIT_USAGE;
                }
                for (size_t i = 0; i < arg_n_options; i++)
                        if (split_option(arg_options[i], &keys[i], &values[i]) < 0)
                                ret = EXIT_USAGE;
                if (ret == 0 && (r = connect_or_fail(&bus)) < 0)
                        ret = -r;
                if (ret == 0) {
                        r = call_register(bus, argv[0], keys, values, arg_n_options, &path, &e);
                        if (r < 0)
                                ret = fail_bus(argv[0], &e, r);
                }
                for (size_t i = 0; i < arg_n_options; i++) {
                        free(keys[i]);
                        free(values[i]);
                }
                if (ret != 0)
                        return ret;
                if (!arg_json)
                        printf("%s\n", path);
                else
                        printf("{\"path\": \"%s\"}\n", path);
                return arg_wait ? wait_for_devices(bus, &path, 1) : 0;
        }

        _cleanup_free_ char *text = NULL, *err = NULL;
        SensorList l = {};
        size_t len = 0, ok = 0, bad = 0;
        r = read_file_full(arg_file, SENSOR_FILE_MAX, &text, &len);
        if (r < 0) {
                log_error_errno(r, "Cannot read '%s': %m", arg_file);
                return EXIT_FAILURE;
        }
        r = sensor_list_parse(text, len, &l, &err);
        if (r < 0) {
                log_error("%s: %s", arg_file, strna(err));
                return EXIT_USAGE;
        }
        r = connect_or_fail(&bus);
        if (r < 0) {
                sensor_list_done(&l);
                return -r;
        }
        char **paths = calloc(l.n + 1, sizeof(char *));
        if (!paths) {
                sensor_list_done(&l);
                return log_oom(), EXIT_FAILURE;
        }
        /* RegisterDevices in chunks; a daemon without it: RegisterDevice pipelined, up to
         * BULK_WINDOW calls in flight */
        Bulk bulk = { .list = &l, .paths = paths };
        size_t next = 0;
        r = register_chunks(bus, &l, paths, &bulk.ok, &bulk.bad);
        if (r >= 0) {
                bulk.fatal = r;
                next = l.n;
        } else if (!(bulk.slots = calloc(l.n + 1, sizeof(BulkSlot))))
                bulk.fatal = EXIT_FAILURE;
        while ((next < l.n && bulk.fatal == 0) || bulk.outstanding > 0) {
                while (next < l.n && bulk.fatal == 0 && bulk.outstanding < BULK_WINDOW) {
                        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
                        SensorEntry *x = &l.entries[next];
                        bulk.slots[next] = (BulkSlot) { .bulk = &bulk, .index = next };
                        r = new_register(bus, x->id, x->keys, x->values, x->n_options, &m);
                        if (r >= 0)
                                r = sd_bus_call_async(bus, NULL, m, on_register_reply, &bulk.slots[next], 0);
                        if (r < 0) {
                                log_error_errno(r, "Cannot send the request for '%s': %m", x->id);
                                bulk.fatal = EXIT_NO_DAEMON;
                                break;
                        }
                        bulk.outstanding++;
                        next++;
                }
                r = sd_bus_process(bus, NULL);
                if (r < 0) {
                        log_error_errno(r, "Lost the bus: %m");
                        bulk.fatal = EXIT_NO_DAEMON;
                        break;
                }
                if (r == 0)
                        (void) sd_bus_wait(bus, UINT64_MAX);
        }
        ok = bulk.ok;
        bad = bulk.bad;
        ret = bulk.fatal;
        free(bulk.slots);
        if (ret == 0) {
                if (arg_json)
                        printf("{\"submitted\": %zu, \"refused\": %zu}\n", ok, bad);
                else
                        printf("%zu sensor(s) submitted, %zu refused.\n", ok, bad);
                if (arg_wait)
                        ret = wait_for_devices(bus, paths, l.n);
                if (ret == 0 && bad > 0)
                        ret = EXIT_FAILURE;
        }
        for (size_t i = 0; i < l.n; i++)
                free(paths[i]);
        free(paths);
        sensor_list_done(&l);
        return ret;
}

static int verb_remove(const char *id) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        int r = connect_or_fail(&bus);
        if (r < 0)
                return -r;
        r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_IFACE_GATEWAY, "RemoveDevice", &e, NULL, "s", id);
        if (r < 0)
                return fail_bus(id, &e, r);
        return 0;
}

static int verb_reprovision(void) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        int r = connect_or_fail(&bus);
        if (r < 0)
                return -r;
        r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_IFACE_GATEWAY, "Reprovision", &e, NULL, "s", arg_reason);
        if (r < 0)
                return fail_bus("Reprovision", &e, r);
        if (!arg_json)
                printf("Provisioning again.\n");
        return 0;
}

/* ---- doctor --------------------------------------------------------------- */

static unsigned doctor_failures;

/* warn: reported with its hint, but not a failure (provisioning works without it) */
static void check_full(struct json_object *arr, const char *name, bool ok, bool warn, const char *detail,
                       const char *hint) {
        if (!ok && !warn)
                doctor_failures++;
        if (arr) {
                struct json_object *o = json_object_new_object();
                json_object_object_add(o, "check", json_object_new_string(name));
                json_object_object_add(o, "ok", json_object_new_boolean(ok || warn));
                if (!ok && warn)
                        json_object_object_add(o, "warning", json_object_new_boolean(true));
                json_object_object_add(o, "detail", json_object_new_string(detail));
                if (!ok)
                        json_object_object_add(o, "hint", json_object_new_string(hint));
                json_object_array_add(arr, o);
                return;
        }
        printf("%-5s %-14s %s\n", ok ? "OK" : warn ? "WARN" : "FAIL", name, detail);
        if (!ok)
                printf("      → %s\n", hint);
        fflush(stdout);
}

static void check(struct json_object *arr, const char *name, bool ok, const char *detail, const char *hint) {
        check_full(arr, name, ok, false, detail, hint);
}

/* A TPM (or swtpm) that never answers must not hang the doctor: ESYS has no timeout. */
static void on_tpm_alarm(int sig) {
        static const char msg[] = "FAIL  tpm            no answer from the TPM within 20 s\n"
                                  "      → check tpm.tcti; a swtpm serves one client at a time: is another one "
                                  "holding it?\n";
        static const char json[] = "[{\"check\": \"tpm\", \"ok\": false, \"detail\": \"no answer from the TPM "
                                   "within 20 s\", \"hint\": \"check tpm.tcti; a swtpm serves one client at a time: "
                                   "is another one holding it?\"}]\n";
        /* the checks so far are lost in --json mode: this one says why */
        if (arg_json)
                (void) !write(STDOUT_FILENO, json, sizeof(json) - 1);
        else
                (void) !write(STDOUT_FILENO, msg, sizeof(msg) - 1);
        _exit(EXIT_FAILURE);
}

#define EK_CERT_MAX 4096

static void doctor_tpm(struct json_object *arr, const Config *c, bool have_conf) {
        const char *tcti = have_conf && c->tpm_tcti ? c->tpm_tcti : TPM_TCTI_DEFAULT;
        bool needed = have_conf && c->attestation == ATTESTATION_TPM;
        bool group_key = have_conf && c->downstream_group_key_in_tpm;
        _cleanup_(erase_and_freep) char *eauth = NULL, *oauth = NULL;
        _cleanup_(tpm_closep) Tpm *t = NULL;
        /* declared before the first goto: cleanup attributes must never see them uninitialised */
        _cleanup_free_ uint8_t *ek = NULL, *rsa_der = NULL, *ecc_der = NULL;
        size_t ek_len = 0, rsa_len = 0, ecc_len = 0;
        char detail[768];
        int r;

        if (!needed && !group_key && !(have_conf && c->tpm_tcti)) {
                struct stat st;
                bool tpm = stat("/dev/tpmrm0", &st) >= 0 && access("/dev/tpmrm0", R_OK | W_OK) >= 0;
                snprintf(detail, sizeof(detail), "/dev/tpmrm0 %s (not used: symmetric-key attestation)",
                         tpm ? "accessible" : "not accessible");
                check(arr, "tpm", true, detail, "");
                return;
        }
        if (have_conf && (tpm_read_auth_file(c, c->tpm_endorsement_auth_file, &eauth) < 0 ||
                          tpm_read_auth_file(c, c->tpm_owner_auth_file, &oauth) < 0)) {
                check(arr, "tpm", false, "the hierarchy password file named in the tpm group is not readable",
                      "fix tpm.endorsement_auth_file / tpm.owner_auth_file (0600, readable by edgeprovd)");
                return;
        }
        struct sigaction sa = { .sa_handler = on_tpm_alarm }, old;
        (void) sigaction(SIGALRM, &sa, &old);
        alarm(20);
        log_set_max_level(LOG_CRIT);    /* tpm.c logs its errors; here they become checks */
        r = tpm_open(tcti, eauth, oauth, &t);
        if (r < 0) {
                snprintf(detail, sizeof(detail), "cannot open the TPM through \"%s\": %s", tcti, strerror(-r));
                check(arr, "tpm", false, detail,
                      "load the TPM driver (tpm_tis/tpm_crb), add the service user to group tss, or fix tpm.tcti");
                goto out;
        }
        snprintf(detail, sizeof(detail), "TPM answers through \"%s\"", tcti);
        check(arr, "tpm", true, detail, "");

        if (group_key) {
                _cleanup_free_ char *path = NULL;
                struct stat st;
                bool ok = group_key_blob_path(c, &path) >= 0 && stat(path, &st) >= 0 && !(st.st_mode & 0077);
                snprintf(detail, sizeof(detail), "%s %s", strna(path), ok ? "present, 0600" : "missing or accessible to others");
                check(arr, "group-key", ok, detail,
                      "import the downstream group key: edgeprovd --import-group-key=FILE (then delete FILE)");
        }

        /* EK certificate: RSA at 0x01c00002, ECC at 0x01c0000a (TCG EK Credential Profile) */
        int rr = tpm_nv_read_all(t, TPM_EK_CERT_NV_INDEX, EK_CERT_MAX, &rsa_der, &rsa_len);
        int re = tpm_nv_read_all(t, TPM_EK_CERT_ECC_NV_INDEX, EK_CERT_MAX, &ecc_der, &ecc_len);
        int rk = tpm_read_public(t, TPM_EK_HANDLE, &ek, &ek_len);
        if (rr == -ENOENT && re == -ENOENT) {
                check_full(arr, "ek-certificate", false, !needed,
                           "no EK certificate in the TPM (NV 0x01c00002 RSA, 0x01c0000a ECC)",
                           "the TPM cannot prove it is genuine: TPM attestation still works with the EK enrolled "
                           "by hand (edgeprovd --print-tpm-identity); ask the vendor for the EK certificate, or "
                           "for a lab TPM create one (swtpm_setup --create-ek-cert)");
                goto out;
        }
        if (rr < 0 && rr != -ENOENT) {
                snprintf(detail, sizeof(detail), "cannot read NV 0x01c00002: %s", strerror(-rr));
                check(arr, "ek-certificate", false, detail, "the NV index is unreadable: check tpm.tcti and the TPM's state");
                goto out;
        }
        if (rr == 0 && rk == -ENOENT) {
                check_full(arr, "ek-certificate", false, !needed,
                           "RSA EK certificate present in NV 0x01c00002, but no EK at 0x81010001 to compare it with",
                           "edgeprovd creates and persists the EK on first use (edgeprovd --print-tpm-identity)");
                goto out;
        }
        if (rr == 0 && rk == 0) {
                _cleanup_free_ char *msg = NULL;
                r = tpm_check_ek_cert(t, ek, ek_len, have_conf ? c->tpm_ek_ca_file : NULL, &msg);
                snprintf(detail, sizeof(detail), "%s", msg ?: r >= 0 ? "EK certificate matches" : strerror(-r));
                check(arr, "ek-certificate", r > 0, detail,
                      r == -EKEYREJECTED && msg && strstr(msg, "does not verify")
                              ? "tpm.ek_ca_file must hold the TPM manufacturer's root and intermediate CAs"
                              : "the EK certificate in NV does not belong to this TPM's EK: the EK at 0x81010001 "
                                "was replaced or the NV index overwritten; clear the TPM or restore the EK");
                goto out;
        }
        if (rr == 0 && rk < 0) {
                snprintf(detail, sizeof(detail), "cannot read the EK at 0x81010001: %s", strerror(-rk));
                check(arr, "ek-certificate", false, detail, "check tpm.tcti and the TPM's state");
                goto out;
        }
        if (re < 0) {
                snprintf(detail, sizeof(detail), "cannot read NV 0x01c0000a: %s", strerror(-re));
                check(arr, "ek-certificate", false, detail, "the NV index is unreadable: check tpm.tcti and the TPM's state");
                goto out;
        }
        /* only an ECC EK certificate: parse it, we do not enroll ECC EKs */
        {
                const unsigned char *p = ecc_der;
                X509 *x = d2i_X509(NULL, &p, (long) ecc_len);
                snprintf(detail, sizeof(detail), "%s", x ? "ECC EK certificate in NV 0x01c0000a (no RSA one)"
                                                         : "NV 0x01c0000a does not hold an X.509 certificate");
                check_full(arr, "ek-certificate", false, x != NULL, detail,
                           "DPS TPM attestation uses the RSA EK (NV 0x01c00002): ask the vendor for an RSA EK "
                           "certificate, or enroll the EK printed by edgeprovd --print-tpm-identity");
                X509_free(x);
        }
out:
        alarm(0);
        (void) sigaction(SIGALRM, &old, NULL);
        log_set_max_level(LOG_INFO);
}

/* connect() with a timeout; -errno */
static int connect_timeout(const char *host, int port, int timeout_ms, int *ret_fd) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
        char ps[16];
        int r = -EHOSTUNREACH, g;

        snprintf(ps, sizeof(ps), "%d", port);
        g = getaddrinfo(host, ps, &hints, &res);
        if (g != 0)
                return g == EAI_NONAME || g == EAI_AGAIN ? -EHOSTUNREACH : -EIO;
        for (struct addrinfo *a = res; a; a = a->ai_next) {
                int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
                if (fd < 0)
                        continue;
                if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
                        r = -errno;
                        close(fd);
                        continue;
                }
                struct pollfd pfd = { .fd = fd, .events = POLLOUT };
                int err = 0;
                socklen_t l = sizeof(err);
                int n = poll(&pfd, 1, timeout_ms);
                if (n == 0)
                        err = ETIMEDOUT;
                else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                        err = errno;
                if (err != 0) {
                        r = -err;
                        close(fd);
                        continue;
                }
                /* blocking from here on, bounded by socket timeouts */
                (void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
                struct timeval tv = { .tv_sec = timeout_ms / 1000 };
                (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
                (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
                *ret_fd = fd;
                r = 0;
                break;
        }
        freeaddrinfo(res);
        return r;
}

/* A real TLS handshake with the service, verified like edgeprovd does: against ca_file (or the
 * system store), and the endpoint name (or IP address) in the certificate. */
static void doctor_tls(struct json_object *arr, const Config *c) {
        _cleanup_close_ int fd = -1;
        int port = conf_port(c);
        SSL_CTX *ctx = NULL;
        SSL *ssl = NULL;
        char detail[768];
        const char *hint = "";
        bool ok = false;
        int r;

        r = connect_timeout(c->endpoint, port, 5000, &fd);
        snprintf(detail, sizeof(detail), "%s:%d %s%s", c->endpoint, port,
                 r >= 0 ? "accepts TCP connections" : "unreachable: ", r >= 0 ? "" : strerror(-r));
        check(arr, "service", r >= 0, detail,
              r == -ECONNREFUSED ? "nothing listens there: check provisioning.endpoint/port and that the service runs"
                                 : "check provisioning.endpoint/port, DNS, routes and firewalls");
        if (r < 0)
                return;

        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
                goto oom;
        (void) SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (c->ca_file) {
                if (SSL_CTX_load_verify_locations(ctx, c->ca_file, NULL) != 1) {
                        snprintf(detail, sizeof(detail), "cannot load CA certificates from %s", c->ca_file);
                        hint = "provisioning.ca_file must be a readable PEM file with the CA that signed the "
                               "service's certificate";
                        goto done;
                }
        } else if (SSL_CTX_set_default_verify_paths(ctx) != 1)
                goto oom;
        ssl = SSL_new(ctx);
        if (!ssl)
                goto oom;
        unsigned char ip[16];
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        if (inet_pton(AF_INET, c->endpoint, ip) == 1 || inet_pton(AF_INET6, c->endpoint, ip) == 1)
                (void) X509_VERIFY_PARAM_set1_ip_asc(param, c->endpoint);
        else {
                (void) SSL_set_tlsext_host_name(ssl, c->endpoint);
                (void) SSL_set1_host(ssl, c->endpoint);
        }
        SSL_set_fd(ssl, fd);
        ERR_clear_error();
        if (SSL_connect(ssl) == 1) {
                X509 *peer = SSL_get1_peer_certificate(ssl);
                char subject[256] = "?", notafter[64] = "?";
                if (peer) {
                        X509_NAME_oneline(X509_get_subject_name(peer), subject, sizeof(subject));
                        BIO *b = BIO_new(BIO_s_mem());
                        if (b && ASN1_TIME_print(b, X509_get0_notAfter(peer)) == 1) {
                                int n = BIO_read(b, notafter, sizeof(notafter) - 1);
                                notafter[n > 0 ? n : 0] = 0;
                        }
                        BIO_free(b);
                        X509_free(peer);
                }
                snprintf(detail, sizeof(detail), "%s handshake with %s:%d, certificate %s verified against %s, "
                         "valid until %s", SSL_get_version(ssl), c->endpoint, port, subject,
                         c->ca_file ?: "the system CA store", notafter);
                ok = true;
                (void) SSL_shutdown(ssl);
                goto done;
        }
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK) {
                snprintf(detail, sizeof(detail), "%s:%d: certificate verification failed: %s", c->endpoint, port,
                         X509_verify_cert_error_string(v));
                switch (v) {
                case X509_V_ERR_HOSTNAME_MISMATCH:
                case X509_V_ERR_IP_ADDRESS_MISMATCH:
                        hint = "the service's certificate is not for this name: set provisioning.endpoint to a name "
                               "(or address) the certificate lists";
                        break;
                case X509_V_ERR_CERT_HAS_EXPIRED:
                case X509_V_ERR_CERT_NOT_YET_VALID:
                        hint = "check the clock (see the clock check); otherwise the service must renew its certificate";
                        break;
                default:
                        hint = c->ca_file ? "provisioning.ca_file does not hold the CA that signed the service's "
                                            "certificate: install the right CA there"
                                          : "the system CA store does not trust the service: set provisioning.ca_file";
                }
        } else {
                char e[256] = "";
                ERR_error_string_n(ERR_peek_last_error(), e, sizeof(e));
                snprintf(detail, sizeof(detail), "%s:%d: TLS handshake failed: %s", c->endpoint, port,
                         *e ? e : "the connection was closed");
                hint = "is this port a TLS listener of the provisioning service? check provisioning.port";
        }
        goto done;
oom:
        snprintf(detail, sizeof(detail), "cannot set up TLS: out of memory");
done:
        check(arr, "tls", ok, detail, hint);
        if (ssl)
                SSL_free(ssl);
        SSL_CTX_free(ctx);
}

static int verb_doctor(void) {
        _cleanup_free_ char *error = NULL, *dir = NULL, *key = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        struct json_object *arr = arg_json ? json_object_new_array() : NULL;
        char detail[512];
        Config c;
        bool have_conf;
        int r;

        conf_init(&c);
        r = conf_load(arg_config, &c, &error);
        have_conf = r >= 0;
        snprintf(detail, sizeof(detail), "%s: %s", arg_config, have_conf ? "valid" : strna(error));
        check(arr, "config", have_conf, detail, "fix the file:line named above, then: edgeprovd --check-config");

        if (have_conf && c.attestation == ATTESTATION_SYMMETRIC_KEY) {
                _cleanup_free_ char *kerr = NULL;
                r = conf_read_key(&c, &key, &kerr);
                key = erase_and_free(key);
                snprintf(detail, sizeof(detail), "%s", r >= 0 ? "readable, not accessible to others" : strna(kerr));
                check(arr, "key", r >= 0, detail,
                      "provide the key with LoadCredential= or a 0600 file named by provisioning.attestation.key_file");
        }

        struct stat st;
        doctor_tpm(arr, &c, have_conf);

        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        bool clock_ok = tm.tm_year + 1900 >= 2024;
        strftime(detail, sizeof(detail), "system time %Y-%m-%dT%H:%M:%SZ", &tm);
        check(arr, "clock", clock_ok, detail,
              "SAS tokens carry an expiry: synchronise the clock (systemd-timesyncd, chrony) before provisioning");

        if (have_conf)
                doctor_tls(arr, &c);

        if (state_dir(&dir) >= 0) {
                bool ok = stat(dir, &st) >= 0 && S_ISDIR(st.st_mode) && !(st.st_mode & 0007);
                snprintf(detail, sizeof(detail), "%s %s", dir,
                         ok ? "exists, not accessible to others" : "missing or accessible to others");
                check(arr, "state", ok, detail,
                      "systemd creates it with StateDirectory=edgeprov (mode 0700); by hand: install -d -m 0700 DIR");
        }

        r = bus_open(&bus);
        bool running = false;
        if (r >= 0) {
                _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
                struct json_object *o = NULL;
                running = get_all(bus, BUS_PATH, BUS_IFACE_GATEWAY, &o, &e) >= 0;
                if (running) {
                        snprintf(detail, sizeof(detail), "edgeprovd is %s", jstr(o, "State"));
                        json_object_put(o);
                }
        }
        if (!running)
                snprintf(detail, sizeof(detail), "edgeprovd does not answer on the bus");
        check(arr, "daemon", running, detail, "systemctl start edgeprovd; journalctl -u edgeprovd");

        conf_done(&c);
        if (arr) {
                print_json(arr);
                json_object_put(arr);
        }
        return doctor_failures ? EXIT_FAILURE : 0;
}

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_STATE_DIR, ARG_JSON, ARG_BUS_ADDRESS, ARG_WAIT, ARG_REASON };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, 'c' },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "bus-address", required_argument, NULL, ARG_BUS_ADDRESS },
                { "json", no_argument, NULL, ARG_JSON },
                { "option", required_argument, NULL, 'o' },
                { "file", required_argument, NULL, 'f' },
                { "wait", no_argument, NULL, ARG_WAIT },
                { "reason", required_argument, NULL, ARG_REASON },
                {},
        };
        const char *verb;
        int c, r;

        log_setup("edgeprovctl");
        log_set_target(LOG_TARGET_CONSOLE);
        while ((c = getopt_long(argc, argv, "hc:o:f:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("edgeprovctl %s\n", PACKAGE_VERSION);
                        return EXIT_SUCCESS;
                case 'c':
                        arg_config = optarg;
                        break;
                case ARG_STATE_DIR:
                        arg_state_dir = optarg;
                        break;
                case ARG_BUS_ADDRESS:
                        arg_bus_address = optarg;
                        break;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case 'o': {
                        char **n = realloc(arg_options, (arg_n_options + 1) * sizeof(char *));
                        if (!n)
                                return EXIT_FAILURE;
                        arg_options = n;
                        arg_options[arg_n_options++] = optarg;
                        break;
                }
                case 'f':
                        arg_file = optarg;
                        break;
                case ARG_WAIT:
                        arg_wait = true;
                        break;
                case ARG_REASON:
                        arg_reason = optarg;
                        break;
                default:
                        return EXIT_USAGE;
                }
        verb = optind < argc ? argv[optind++] : "status";
        int nargs = argc - optind;
        if (streq(verb, "status") && nargs == 0)
                r = verb_status();
        else if (streq(verb, "devices") && nargs == 0)
                r = verb_devices();
        else if (streq(verb, "device") && nargs == 1)
                r = verb_device(argv[optind]);
        else if (streq(verb, "register"))
                r = verb_register(nargs, argv + optind);
        else if (streq(verb, "remove") && nargs == 1)
                r = verb_remove(argv[optind]);
        else if (streq(verb, "reprovision") && nargs == 0)
                r = verb_reprovision();
        else if (streq(verb, "doctor") && nargs == 0)
                r = verb_doctor();
        else {
                log_error("Unknown command or wrong arguments: '%s'. See --help.", verb);
                r = EXIT_USAGE;
        }
        free(arg_options);
        return r < 0 ? EXIT_FAILURE : r;
}
