/* SPDX-License-Identifier: MIT */
/* edgeprov-dpsctl: edits the enrollment data file of the local provisioning service.
 * The running plugin picks changes up on the next device connection. */

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <getopt.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "dps/datafile.h"
#include "edgeprov/codec.h"
#include "edgeprov/dps.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"
#include "edgeprov/sas.h"

#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"
#endif
#define DEFAULT_DATA_FILE LOCALSTATEDIR "/lib/edgeprov-dps/data.json"
#define GENERATED_KEY_BYTES 64
#define MAX_HUBS_ARG 50

static const char *arg_data = DEFAULT_DATA_FILE;
static const char *program = "edgeprov-dpsctl";

_printf_(1, 2) static int err_msg(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "%s: ", program);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return EXIT_FAILURE;
}

static void help(void) {
        printf("%s [--data FILE] COMMAND ...\n\n"
               "Edit the enrollment data file of the local provisioning service (edgeprov_dps).\n\n"
               "Options:\n"
               "  -d --data FILE         Data file (default: %s)\n"
               "  -h --help              Show this help\n\n"
               "Commands:\n"
               "  init --id-scope SCOPE [--force]\n"
               "                         Create an empty data file\n"
               "  hub add NAME [--weight N] [--no-apply-allocation-policy]\n"
               "  hub remove NAME\n"
               "  hub list\n"
               "  enrollment add REGID [--device-id ID] [--hub NAME]... [--primary-key B64 | --generate-keys]\n"
               "                 [--secondary-key B64] [--disabled] [--iot-edge] [--print-key]\n"
               "  enrollment remove REGID\n"
               "  enrollment list\n"
               "  group add GROUPID [--hub NAME]... [--primary-key B64 | --generate-keys]\n"
               "            [--secondary-key B64] [--disabled] [--iot-edge] [--print-key]\n"
               "  group remove GROUPID\n"
               "  group list\n"
               "  compute-key --group-key B64 REGID\n"
               "                         Print the device key derived from a group key\n"
               "  token REGID [--key B64 | --group-key B64 | --group GROUPID] [--ttl SECONDS]\n"
               "                         Print a DPS SAS token (for tests); the key defaults to the\n"
               "                         individual enrollment's primary key\n\n"
               "Keys are generated (%d random bytes, base64) unless given, and never printed\n"
               "without --print-key.  The file is written atomically with mode 0640.\n",
               program, DEFAULT_DATA_FILE, GENERATED_KEY_BYTES);
}

/* ---- data file I/O ---------------------------------------------------------------------- */

/* Serializes concurrent edits: an exclusive flock() on the file's directory, held until exit
 * (the file itself is replaced on every save, so it cannot carry the lock). */
static int lock_data(void) {
        static int lock_fd = -1;
        _cleanup_free_ char *copy = strdup(arg_data);

        if (lock_fd >= 0)
                return 0;
        if (!copy)
                return err_msg("Out of memory.");
        const char *dir = dirname(copy);
        lock_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (lock_fd < 0) {
                if (errno == ENOENT)
                        return 0; /* reported when the file is read or written */
                return err_msg("Failed to open %s: %m", dir);
        }
        if (flock(lock_fd, LOCK_EX) < 0)
                return err_msg("Failed to lock %s: %m", dir);
        return 0;
}

static int load(DpsData **ret) {
        _cleanup_free_ char *msg = NULL;
        if (lock_data() != 0)
                return EXIT_FAILURE;
        int r = dps_data_load(arg_data, ret, &msg);
        if (r == -ENOENT)
                return err_msg("%s does not exist; create it with '%s init --id-scope SCOPE'.", arg_data, program);
        if (r < 0)
                return err_msg("%s", msg ?: strerror(-r));
        return 0;
}

static int save(const DpsData *d) {
        struct stat st;
        bool existed = stat(arg_data, &st) >= 0;
        int r;

        r = dps_data_save(d, arg_data);
        if (r < 0)
                return err_msg("Failed to write %s: %s", arg_data, strerror(-r));

        /* The broker reads the file as its own user: keep the owner and group of the old file. */
        if (existed) {
                struct stat nst;
                if (stat(arg_data, &nst) >= 0 && (nst.st_uid != st.st_uid || nst.st_gid != st.st_gid) &&
                    chown(arg_data, st.st_uid, st.st_gid) < 0)
                        fprintf(stderr, "%s: warning: could not restore owner %u:%u of %s: %m\n", program,
                                (unsigned) st.st_uid, (unsigned) st.st_gid, arg_data);
        }
        return 0;
}

static int edit_failed(int r, const char *msg) {
        return err_msg("%s: %s", arg_data, msg ?: strerror(-r));
}

/* ---- helpers ------------------------------------------------------------------------------- */

static int parse_unsigned(const char *s, unsigned max, unsigned *ret) {
        char *end;
        if (isempty(s) || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno != 0 || *end || v > max)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

static int generate_key(char **ret) {
        uint8_t b[GENERATED_KEY_BYTES];
        int r;

        r = random_bytes(b, sizeof(b));
        if (r < 0)
                return r;
        r = base64_encode(b, sizeof(b), ret);
        explicit_bzero(b, sizeof(b));
        return r;
}

static int json_put(struct json_object *o, const char *key, struct json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static void timestamp_now(char buf[static 32]) {
        struct timespec ts;
        struct tm tm;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        if (!gmtime_r(&ts.tv_sec, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
                snprintf(buf, 32, "1970-01-01T00:00:00.0000000Z");
                return;
        }
        size_t l = strlen(buf);
        snprintf(buf + l, 32 - l, ".%07luZ", (unsigned long) ts.tv_nsec / 100);
}

/* ---- commands ------------------------------------------------------------------------------- */

static int verb_init(int argc, char *argv[]) {
        static const struct option options[] = {
                { "id-scope", required_argument, NULL, 's' },
                { "force", no_argument, NULL, 'f' },
                {},
        };
        _cleanup_(dps_data_freep) DpsData *d = NULL;
        const char *scope = NULL;
        bool force = false;
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, "s:f", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        scope = optarg;
                        break;
                case 'f':
                        force = true;
                        break;
                default:
                        return EXIT_FAILURE;
                }
        if (optind != argc)
                return err_msg("init: unexpected argument '%s'.", argv[optind]);
        if (!scope)
                return err_msg("init: --id-scope is required.");
        if (!dps_id_scope_is_valid(scope))
                return err_msg("init: --id-scope: '%s' is not a valid ID scope (1-%d alphanumeric characters).", scope,
                             DPS_ID_SCOPE_MAX);
        if (lock_data() != 0)
                return EXIT_FAILURE;
        if (!force && access(arg_data, F_OK) >= 0)
                return err_msg("%s already exists (use --force to overwrite it).", arg_data);

        int r = dps_data_new(scope, &d);
        if (r < 0)
                return err_msg("init: %s", strerror(-r));
        if (save(d) != 0)
                return EXIT_FAILURE;
        printf("Created %s for ID scope %s.\n", arg_data, scope);
        return EXIT_SUCCESS;
}

static int verb_hub(int argc, char *argv[]) {
        static const struct option options[] = {
                { "weight", required_argument, NULL, 'w' },
                { "no-apply-allocation-policy", no_argument, NULL, 'n' },
                {},
        };
        _cleanup_(dps_data_freep) DpsData *d = NULL;
        _cleanup_free_ char *msg = NULL;
        unsigned weight = 1;
        bool apply = true;
        int c, r;

        if (argc < 2)
                return err_msg("hub: expected add, remove or list.");
        const char *action = argv[1];
        argc--;
        argv++;

        optind = 0;
        while ((c = getopt_long(argc, argv, "w:n", options, NULL)) >= 0)
                switch (c) {
                case 'w':
                        if (parse_unsigned(optarg, DPS_ALLOCATION_WEIGHT_MAX, &weight) < 0 || weight < 1)
                                return err_msg("hub: --weight: '%s' is not a number in 1..%d.", optarg,
                                             DPS_ALLOCATION_WEIGHT_MAX);
                        break;
                case 'n':
                        apply = false;
                        break;
                default:
                        return EXIT_FAILURE;
                }

        if (load(&d) != 0)
                return EXIT_FAILURE;

        if (streq(action, "list")) {
                if (optind != argc)
                        return err_msg("hub list: unexpected argument '%s'.", argv[optind]);
                printf("%-40s %6s %s\n", "NAME", "WEIGHT", "APPLY-ALLOCATION-POLICY");
                for (size_t i = 0; i < d->n_hubs; i++)
                        printf("%-40s %6u %s\n", d->hubs[i].name, d->hubs[i].allocation_weight,
                               d->hubs[i].apply_allocation_policy ? "yes" : "no");
                return EXIT_SUCCESS;
        }

        if (optind + 1 != argc)
                return err_msg("hub %s: expected exactly one hub name.", action);
        const char *name = argv[optind];

        if (streq(action, "add")) {
                if (!dps_hub_name_is_valid(name))
                        return err_msg("hub add: '%s' is not a valid host name.", name);
                r = dps_data_add_hub(d, name, weight, apply, &msg);
        } else if (streq(action, "remove"))
                r = dps_data_remove_hub(d, name, &msg);
        else
                return err_msg("hub: unknown action '%s' (add, remove, list).", action);
        if (r < 0)
                return edit_failed(r, msg);
        return save(d) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static int verb_enrollment_or_group(int argc, char *argv[], bool group) {
        static const struct option options[] = {
                { "device-id", required_argument, NULL, 'D' },
                { "hub", required_argument, NULL, 'H' },
                { "primary-key", required_argument, NULL, 'p' },
                { "secondary-key", required_argument, NULL, 's' },
                { "generate-keys", no_argument, NULL, 'g' },
                { "disabled", no_argument, NULL, 'x' },
                { "iot-edge", no_argument, NULL, 'e' },
                { "print-key", no_argument, NULL, 'P' },
                {},
        };
        const char *what = group ? "group" : "enrollment";
        _cleanup_(dps_data_freep) DpsData *d = NULL;
        _cleanup_json_ struct json_object *e = NULL;
        _cleanup_erase_ char *primary = NULL, *secondary = NULL;
        _cleanup_free_ char *msg = NULL;
        const char *device_id = NULL, *hubs[MAX_HUBS_ARG];
        size_t n_hubs = 0;
        bool generate = false, disabled = false, edge = false, print_key = false;
        int c, r;

        if (argc < 2)
                return err_msg("%s: expected add, remove or list.", what);
        const char *action = argv[1];
        argc--;
        argv++;

        optind = 0;
        while ((c = getopt_long(argc, argv, "D:H:p:s:gxeP", options, NULL)) >= 0)
                switch (c) {
                case 'D':
                        if (group)
                                return err_msg("group: --device-id is for individual enrollments "
                                             "(group members use their registration id).");
                        device_id = optarg;
                        break;
                case 'H':
                        if (n_hubs >= ELEMENTSOF(hubs))
                                return err_msg("%s: too many --hub options.", what);
                        hubs[n_hubs++] = optarg;
                        break;
                case 'p':
                        free(primary);
                        primary = strdup(optarg);
                        if (!primary)
                                return err_msg("Out of memory.");
                        break;
                case 's':
                        free(secondary);
                        secondary = strdup(optarg);
                        if (!secondary)
                                return err_msg("Out of memory.");
                        break;
                case 'g':
                        generate = true;
                        break;
                case 'x':
                        disabled = true;
                        break;
                case 'e':
                        edge = true;
                        break;
                case 'P':
                        print_key = true;
                        break;
                default:
                        return EXIT_FAILURE;
                }

        if (load(&d) != 0)
                return EXIT_FAILURE;

        if (streq(action, "list")) {
                if (optind != argc)
                        return err_msg("%s list: unexpected argument '%s'.", what, argv[optind]);
                size_t n = group ? d->n_groups : d->n_individual;
                printf("%-32s %-24s %-8s %-12s %s\n", group ? "GROUP" : "REGISTRATION-ID",
                       group ? "" : "DEVICE-ID", "STATUS", "ATTESTATION", "HUBS");
                for (size_t i = 0; i < n; i++) {
                        const DpsEnrollment *x = group ? d->groups + i : d->individual + i;
                        printf("%-32s %-24s %-8s %-12s ", group ? x->enrollment_group_id : x->registration_id,
                               group ? "" : x->device_id ?: "-", x->enabled ? "enabled" : "disabled",
                               strna(dps_attestation_type_to_string(x->attestation)));
                        if (x->iot_hub_host_name)
                                printf("%s", x->iot_hub_host_name);
                        else if (x->n_iot_hubs == 0)
                                printf("(all linked)");
                        for (size_t j = 0; j < x->n_iot_hubs; j++)
                                printf("%s%s", j ? "," : "", x->iot_hubs[j]);
                        putchar('\n');
                }
                return EXIT_SUCCESS;
        }

        if (optind + 1 != argc)
                return err_msg("%s %s: expected exactly one %s.", what, action,
                             group ? "enrollment group id" : "registration id");
        const char *id = argv[optind];

        if (streq(action, "remove")) {
                r = group ? dps_data_remove_group(d, id, &msg) : dps_data_remove_individual(d, id, &msg);
                if (r < 0)
                        return edit_failed(r, msg);
                return save(d) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
        if (!streq(action, "add"))
                return err_msg("%s: unknown action '%s' (add, remove, list).", what, action);

        if (!dps_registration_id_is_valid(id))
                return err_msg("%s add: '%s' is not a valid %s (1-128 of [A-Za-z0-9.:_-], alphanumeric at both ends).",
                             what, id, group ? "enrollment group id" : "registration id");
        if (device_id && !dps_device_id_is_valid(device_id))
                return err_msg("enrollment add: --device-id: '%s' is not a valid device id.", device_id);
        if (generate && (primary || secondary))
                return err_msg("%s add: --generate-keys conflicts with --primary-key/--secondary-key.", what);
        if (secondary && !primary)
                return err_msg("%s add: --secondary-key needs --primary-key.", what);
        const char *names[] = { "--primary-key", "--secondary-key" };
        const char *given[] = { primary, secondary };
        for (size_t i = 0; i < 2; i++) {
                if (!given[i])
                        continue;
                r = dps_symmetric_key_check(given[i]);
                if (r < 0)
                        return err_msg("%s add: %s: not base64 of %d to %d bytes.", what, names[i],
                                     DPS_SYMMETRIC_KEY_MIN, DPS_SYMMETRIC_KEY_MAX);
        }
        if (!primary) {
                /* real DPS generates keys when none are given, too */
                if (generate_key(&primary) < 0 || generate_key(&secondary) < 0)
                        return err_msg("Failed to generate keys.");
        }

        char now[32];
        timestamp_now(now);

        e = json_object_new_object();
        _cleanup_json_ struct json_object *att = json_object_new_object(), *sk = json_object_new_object(),
                                          *caps = json_object_new_object();
        if (!e || !att || !sk || !caps)
                return err_msg("Out of memory.");
        if (json_put(e, group ? "enrollmentGroupId" : "registrationId", json_object_new_string(id)) < 0 ||
            (device_id && json_put(e, "deviceId", json_object_new_string(device_id)) < 0) ||
            json_put(e, "provisioningStatus", json_object_new_string(disabled ? "disabled" : "enabled")) < 0 ||
            json_put(sk, "primaryKey", json_object_new_string(primary)) < 0 ||
            (secondary && json_put(sk, "secondaryKey", json_object_new_string(secondary)) < 0) ||
            json_put(att, "type", json_object_new_string("symmetricKey")) < 0 ||
            json_put(att, "symmetricKey", TAKE_PTR(sk)) < 0 || json_put(e, "attestation", TAKE_PTR(att)) < 0 ||
            json_put(caps, "iotEdge", json_object_new_boolean(edge)) < 0 ||
            json_put(e, "capabilities", TAKE_PTR(caps)) < 0)
                return err_msg("Out of memory.");
        if (n_hubs > 0) {
                struct json_object *a = json_object_new_array();
                if (json_put(e, "iotHubs", a) < 0)
                        return err_msg("Out of memory.");
                for (size_t i = 0; i < n_hubs; i++)
                        if (json_object_array_add(a, json_object_new_string(hubs[i])) < 0)
                                return err_msg("Out of memory.");
        }
        if (json_put(e, "createdDateTimeUtc", json_object_new_string(now)) < 0 ||
            json_put(e, "lastUpdatedDateTimeUtc", json_object_new_string(now)) < 0)
                return err_msg("Out of memory.");

        r = group ? dps_data_add_group(d, TAKE_PTR(e), &msg) : dps_data_add_individual(d, TAKE_PTR(e), &msg);
        if (r == -EEXIST)
                return err_msg("%s: %s '%s' already exists.", arg_data,
                             group ? "enrollment group" : "individual enrollment", id);
        if (r < 0)
                return edit_failed(r, msg);
        if (save(d) != 0)
                return EXIT_FAILURE;
        if (print_key)
                printf("%s\n", primary);
        return EXIT_SUCCESS;
}

static int verb_compute_key(int argc, char *argv[]) {
        static const struct option options[] = {
                { "group-key", required_argument, NULL, 'k' },
                {},
        };
        _cleanup_erase_ char *key = NULL;
        const char *group_key = NULL;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "k:", options, NULL)) >= 0)
                switch (c) {
                case 'k':
                        group_key = optarg;
                        break;
                default:
                        return EXIT_FAILURE;
                }
        if (!group_key)
                return err_msg("compute-key: --group-key is required.");
        if (optind + 1 != argc)
                return err_msg("compute-key: expected exactly one registration id.");
        if (!dps_registration_id_is_valid(argv[optind]))
                return err_msg("compute-key: '%s' is not a valid registration id.", argv[optind]);
        if (dps_symmetric_key_check(group_key) < 0)
                return err_msg("compute-key: --group-key: not base64 of %d to %d bytes.", DPS_SYMMETRIC_KEY_MIN,
                             DPS_SYMMETRIC_KEY_MAX);

        r = sas_derive_device_key(group_key, argv[optind], &key);
        if (r < 0)
                return err_msg("compute-key: %s", strerror(-r));
        printf("%s\n", key);
        return EXIT_SUCCESS;
}

static int verb_token(int argc, char *argv[]) {
        static const struct option options[] = {
                { "key", required_argument, NULL, 'k' },
                { "group-key", required_argument, NULL, 'g' },
                { "group", required_argument, NULL, 'G' },
                { "ttl", required_argument, NULL, 't' },
                {},
        };
        _cleanup_(dps_data_freep) DpsData *d = NULL;
        _cleanup_erase_ char *derived = NULL;
        _cleanup_free_ char *token = NULL, *resource = NULL;
        const char *key = NULL, *group_key = NULL, *group = NULL;
        unsigned ttl = 3600;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "k:g:G:t:", options, NULL)) >= 0)
                switch (c) {
                case 'k':
                        key = optarg;
                        break;
                case 'g':
                        group_key = optarg;
                        break;
                case 'G':
                        group = optarg;
                        break;
                case 't':
                        if (parse_unsigned(optarg, 10 * 365 * 24 * 3600, &ttl) < 0)
                                return err_msg("token: --ttl: '%s' is not a number of seconds.", optarg);
                        break;
                default:
                        return EXIT_FAILURE;
                }
        if (optind + 1 != argc)
                return err_msg("token: expected exactly one registration id.");
        const char *id = argv[optind];
        if (!dps_registration_id_is_valid(id))
                return err_msg("token: '%s' is not a valid registration id.", id);
        if (!!key + !!group_key + !!group > 1)
                return err_msg("token: --key, --group-key and --group are mutually exclusive.");

        if (load(&d) != 0)
                return EXIT_FAILURE;

        if (group) {
                const DpsEnrollment *g = dps_data_find_group(d, group);
                if (!g || g->attestation != DPS_ATTESTATION_SYMMETRIC_KEY)
                        return err_msg("%s: no symmetric-key enrollment group '%s'.", arg_data, group);
                group_key = g->primary_key;
        } else if (!key && !group_key) {
                const DpsEnrollment *e = dps_data_find_individual(d, id);
                if (!e || e->attestation != DPS_ATTESTATION_SYMMETRIC_KEY)
                        return err_msg("%s: no symmetric-key individual enrollment '%s' (use --key, --group-key or "
                                     "--group).",
                                     arg_data, id);
                key = e->primary_key;
        }
        if (group_key) {
                r = sas_derive_device_key(group_key, id, &derived);
                if (r < 0)
                        return err_msg("token: cannot derive the device key: %s", strerror(-r));
                key = derived;
        }

        if (asprintf(&resource, "%s/registrations/%s", d->id_scope, id) < 0)
                return err_msg("Out of memory.");
        r = sas_token_build_b64(key, resource, (uint64_t) time(NULL) + ttl, SAS_DEFAULT_KEY_NAME, &token);
        if (r < 0)
                return err_msg("token: %s", strerror(-r));
        printf("%s\n", token);
        return EXIT_SUCCESS;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "data", required_argument, NULL, 'd' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "+d:h", options, NULL)) >= 0)
                switch (c) {
                case 'd':
                        arg_data = optarg;
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }

        if (optind >= argc) {
                help();
                return EXIT_FAILURE;
        }

        /* Each verb parses its own options, with its name as argv[0]. */
        const char *verb = argv[optind];
        int vargc = argc - optind;
        char **vargv = argv + optind;

        if (streq(verb, "init"))
                return verb_init(vargc, vargv);
        if (streq(verb, "hub"))
                return verb_hub(vargc, vargv);
        if (streq(verb, "enrollment"))
                return verb_enrollment_or_group(vargc, vargv, false);
        if (streq(verb, "group"))
                return verb_enrollment_or_group(vargc, vargv, true);
        if (streq(verb, "compute-key"))
                return verb_compute_key(vargc, vargv);
        if (streq(verb, "token"))
                return verb_token(vargc, vargv);
        if (streq(verb, "help"))
                return help(), EXIT_SUCCESS;
        return err_msg("unknown command '%s' (see --help).", verb);
}
