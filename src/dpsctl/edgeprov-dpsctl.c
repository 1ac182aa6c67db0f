/* SPDX-License-Identifier: MIT */
/* edgeprov-dpsctl: edits the enrollment data file of the local provisioning service.
 * The running plugin picks changes up on the next device connection. */

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <getopt.h>
#include <inttypes.h>
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

#include <mosquitto.h>

#include "dps/admin.h"
#include "dpsctl/dpsctl.h"
#include "dps/datafile.h"
#include "dps/store.h"
#include "edgeprov/codec.h"
#include "edgeprov/dps.h"
#include "edgeprov/fileio.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"
#include "edgeprov/tpm-blob.h"
#include "edgeprov/sas.h"
#include "edgeprov/time-util.h"

#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"
#endif
#define DEFAULT_DATA_FILE LOCALSTATEDIR "/lib/edgeprov-dps/data.json"
#define GENERATED_KEY_BYTES 64
#define MAX_HUBS_ARG 50

/* exit codes (also in the man page) */
#define EXIT_INVALID 2
#define EXIT_ADMIN_API 3
#define EXIT_NOT_FOUND 4
#define EXIT_EXISTS 5
#define EXIT_CONFLICT 6 /* ifMatch/etag mismatch, or the data file is being edited */

static int admin_entry_command(const char *command, const char *id_key, const char *id, const char *obj_key,
                               struct json_object *obj, const char *if_match, struct json_object **ret_data);
static int entry_show(DpsDataList list, const char *id);
static int entry_list_admin(DpsDataList list);
static int entry_update(DpsDataList list, const char *id, struct json_object *changes);
static void print_json(struct json_object *o);
static int file_error(int r, const char *msg);
static int admin_error_exit(const char *error);

static const char *arg_data = DEFAULT_DATA_FILE;
static const char *arg_db = NULL;
static const char *arg_broker = NULL; /* host:port of the running service: use the admin API */
static const char *arg_cafile = NULL;
static const char *arg_admin_user = "dps-admin";
static const char *arg_admin_password_file = NULL;
static bool arg_json = false;
static const char *program = "edgeprov-dpsctl";

_printf_(1, 2) int err_msg(const char *fmt, ...) {
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
               "     --db FILE           Registration records (plugin_opt_registrations_db;\n"
               "                         default: registrations.db beside the data file)\n"
               "     --json              Print records, hubs and enrollments as JSON\n"
               "     --broker HOST:PORT  Use the running service's admin API ($CONTROL/edgeprov-dps/v1,\n"
               "                         MQTT over TLS) for the hub, enrollment, group and\n"
               "                         registration commands\n"
               "     --cafile FILE       CA of the broker's TLS certificate\n"
               "     --admin-user NAME   Admin username (default: dps-admin)\n"
               "     --admin-password-file FILE\n"
               "                         File with the admin password\n"
               "  -h --help              Show this help\n\n"
               "Commands:\n"
               "  init --id-scope SCOPE [--force]\n"
               "                         Create an empty data file\n"
               "  hub add NAME [--weight N] [--no-apply-allocation-policy] [--probe-address IP:PORT]\n"
               "  hub show NAME | update NAME [--weight N] [--[no-]apply-allocation-policy]\n"
               "             [--probe-address IP:PORT]\n"
               "  hub remove NAME\n"
               "  hub list\n"
               "  enrollment add REGID [--device-id ID] [--hub NAME]... [--primary-key B64 | --generate-keys]\n"
               "                 [--secondary-key B64] [--disabled] [--iot-edge] [--print-key]\n"
               "                 [--reprovision migrate|reset|never] [--initial-twin JSON]\n"
               "  enrollment add REGID --tpm-ek B64 [--device-id ID] [--hub NAME]... [...]\n"
               "                         A TPM enrollment (EK as edgeprovd --print-tpm-identity prints it)\n"
               "  enrollment show REGID | remove REGID | list\n"
               "  enrollment update REGID [--device-id ID] [--hub NAME]... [--enabled | --disabled]\n"
               "                 [--iot-edge | --no-iot-edge] [--reprovision ...] [--initial-twin JSON]\n"
               "                 [--primary-key B64 [--secondary-key B64]]\n"
               "                         Changes only what is given (over the API: with the etag)\n"
               "  group add GROUPID [--hub NAME]... [--primary-key B64 | --generate-keys]\n"
               "            [--secondary-key B64] [--disabled] [--iot-edge] [--print-key]\n"
               "            [--reprovision migrate|reset|never] [--initial-twin JSON]\n"
               "  group show GROUPID | update GROUPID [options] | remove GROUPID | list\n"
               "  registration list | show REGID | delete REGID\n"
               "                         The service's registration records\n"
               "  compute-key --group-key B64 REGID\n"
               "                         Print the device key derived from a group key\n"
               "  token REGID [--key B64 | --group-key B64 | --group GROUPID] [--ttl SECONDS]\n"
               "                         Print a DPS SAS token (for tests); the key defaults to the\n"
               "                         individual enrollment's primary key\n"
               "  cert root|intermediate|verification CODE|device REGID [--out PREFIX] [--ca PREFIX]\n"
               "       [--cn NAME] [--days N] [--key-type ec|rsa2048|rsa3072] [--pathlen N]\n"
               "                         X.509 certificates (PREFIX.cert.pem, .key.pem 0600, .chain.pem)\n"
               "  ca add NAME FILE [--verified] | list | show NAME | verification-code NAME |\n"
               "     verify NAME FILE | delete NAME\n"
               "                         The service's CA certificates (admin API, --broker)\n"
               "  group add GROUPID --ca NAME | --signing-cert FILE [--hub NAME]... [--disabled]\n"
               "  enrollment add REGID --x509-cert FILE | --x509-thumbprint HEX [--device-id ID] [...]\n"
               "                         X.509 enrollments (see edgeprov-dpsctl(1))\n\n"
               "create = add, delete = remove.  Exit status: 2 invalid, 3 the admin API refused or\n"
               "could not be reached, 4 not found, 5 exists already, 6 changed meanwhile (etag) or\n"
               "locked, 1 other errors.\n"
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

int load(DpsData **ret) {
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

int save(const DpsData *d) {
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
        err_msg("%s: %s", arg_data, msg ?: strerror(-r));
        return file_error(r, msg);
}

static int file_error(int r, const char *msg) {
        return r == -ENOENT ? EXIT_NOT_FOUND
             : r == -EEXIST ? EXIT_EXISTS
             : r == -EINVAL || r == -E2BIG || r == -EOPNOTSUPP ? EXIT_INVALID
             : EXIT_FAILURE;
}

/* ---- helpers ------------------------------------------------------------------------------- */


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
                { "apply-allocation-policy", no_argument, NULL, 'a' },
                { "probe-address", required_argument, NULL, 'A' },
                {},
        };
        bool weight_set = false, apply_set = false;
        const char *probe = NULL;
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
        while ((c = getopt_long(argc, argv, "w:naA:", options, NULL)) >= 0)
                switch (c) {
                case 'A':
                        if (dps_probe_address_parse(optarg, NULL, NULL) < 0)
                                return err_msg("hub: --probe-address: '%s' is not a numeric IP:PORT.", optarg),
                                       EXIT_INVALID;
                        probe = optarg;
                        break;
                case 'w':
                        if (parse_uint_range(optarg, 0, DPS_ALLOCATION_WEIGHT_MAX, &weight) < 0 || weight < 1)
                                return err_msg("hub: --weight: '%s' is not a number in 1..%d.", optarg,
                                             DPS_ALLOCATION_WEIGHT_MAX), EXIT_INVALID;
                        weight_set = true;
                        break;
                case 'n':
                        apply = false;
                        apply_set = true;
                        break;
                case 'a':
                        apply = true;
                        apply_set = true;
                        break;
                default:
                        return EXIT_FAILURE;
                }

        if (streq(action, "list") && arg_broker) {
                if (optind != argc)
                        return err_msg("hub list: unexpected argument '%s'.", argv[optind]);
                return entry_list_admin(DPS_DATA_LINKED_HUBS);
        }
        if (!streq(action, "list")) {
                if (optind + 1 != argc)
                        return err_msg("hub %s: expected exactly one hub name.", action);
                const char *name = argv[optind];
                if (streq(action, "show"))
                        return entry_show(DPS_DATA_LINKED_HUBS, name);
                if (streq(action, "update") || ((arg_broker || probe) && (streq(action, "add") || streq(action, "link") ||
                                                                          streq(action, "create")))) {
                        _cleanup_json_ struct json_object *h = json_object_new_object();
                        bool create = !streq(action, "update");
                        if (!h || json_add_string(h, "name", name) < 0 ||
                            ((create || weight_set) &&
                             json_add(h, "allocationWeight", json_object_new_int((int) weight)) < 0) ||
                            ((create || apply_set) &&
                             json_add(h, "applyAllocationPolicy", json_object_new_boolean(apply)) < 0) ||
                            (probe && json_add_string(h, "probeAddress", probe) < 0))
                                return err_msg("Out of memory.");
                        if (create && arg_broker)
                                return admin_entry_command("linkHub", NULL, NULL, "hub", h, NULL, NULL);
                        if (create) {
                                if (load(&d) != 0)
                                        return EXIT_FAILURE;
                                r = dps_data_put(d, DPS_DATA_LINKED_HUBS, json_object_get(h), DPS_DATA_PUT_CREATE, &msg);
                                if (r < 0)
                                        return edit_failed(r, msg);
                                return save(d) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
                        }
                        return entry_update(DPS_DATA_LINKED_HUBS, name, h);
                }
                if (arg_broker && (streq(action, "remove") || streq(action, "unlink") || streq(action, "delete")))
                        return admin_entry_command("unlinkHub", "name", name, NULL, NULL, NULL, NULL);
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

        if (streq(action, "add") || streq(action, "link") || streq(action, "create")) {
                if (!dps_hub_name_is_valid(name))
                        return err_msg("hub add: '%s' is not a valid host name.", name), EXIT_INVALID;
                r = dps_data_add_hub(d, name, weight, apply, &msg);
        } else if (streq(action, "remove") || streq(action, "unlink") || streq(action, "delete"))
                r = dps_data_remove_hub(d, name, &msg);
        else
                return err_msg("hub: unknown action '%s' (add, show, list, update, remove).", action);
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
                { "reprovision", required_argument, NULL, 'R' },
                { "initial-twin", required_argument, NULL, 'T' },
                { "tpm-ek", required_argument, NULL, 'K' },
                { "enabled", no_argument, NULL, 'E' },
                { "no-iot-edge", no_argument, NULL, 'N' },
                {},
        };
        bool enabled = false, no_edge = false;
        const char *what = group ? "group" : "enrollment";
        const char *tpm_ek = NULL;
        _cleanup_json_ struct json_object *twin = NULL;
        const char *reprovision = NULL;
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
        while ((c = getopt_long(argc, argv, "D:H:p:s:gxePR:T:K:EN", options, NULL)) >= 0)
                switch (c) {
                case 'E':
                        enabled = true;
                        break;
                case 'N':
                        no_edge = true;
                        break;
                case 'K':
                        tpm_ek = optarg;
                        break;
                case 'R':
                        if (!streq(optarg, "migrate") && !streq(optarg, "reset") && !streq(optarg, "never"))
                                return err_msg("%s: --reprovision must be migrate, reset or never.", what);
                        reprovision = optarg;
                        break;
                case 'T':
                        json_object_put(twin);
                        twin = NULL;
                        if (json_parse_limited(optarg, strlen(optarg), DPS_BODY_MAX, DPS_JSON_MAX_DEPTH, &twin) < 0 ||
                            !json_object_is_type(twin, json_type_object))
                                return err_msg("%s: --initial-twin must be a JSON object "
                                               "({\"tags\":{...},\"properties\":{\"desired\":{...}}}).", what);
                        break;
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

        DpsDataList list = group ? DPS_DATA_ENROLLMENT_GROUPS : DPS_DATA_INDIVIDUAL_ENROLLMENTS;
        bool is_delete = streq(action, "remove") || streq(action, "delete");
        if (streq(action, "list") && arg_broker) {
                if (optind != argc)
                        return err_msg("%s list: unexpected argument '%s'.", what, argv[optind]);
                return entry_list_admin(list);
        }
        if (!streq(action, "list")) {
                if (optind + 1 != argc)
                        return err_msg("%s %s: expected exactly one %s.", what, action,
                                       group ? "enrollment group id" : "registration id");
                const char *eid = argv[optind];
                if (streq(action, "show"))
                        return entry_show(list, eid);
                if (is_delete && arg_broker)
                        return admin_entry_command(group ? "deleteEnrollmentGroup" : "deleteEnrollment",
                                                   group ? "enrollmentGroupId" : "registrationId", eid, NULL, NULL,
                                                   NULL, NULL);
                if (streq(action, "update")) {
                        /* only what was given changes */
                        _cleanup_json_ struct json_object *ch = json_object_new_object();
                        if (!ch)
                                return err_msg("Out of memory.");
                        if (enabled && disabled)
                                return err_msg("%s update: --enabled conflicts with --disabled.", what), EXIT_INVALID;
                        if ((device_id && json_add_string(ch, "deviceId", device_id) < 0) ||
                            ((enabled || disabled) &&
                             json_add_string(ch, "provisioningStatus", disabled ? "disabled" : "enabled") < 0))
                                return err_msg("Out of memory.");
                        if (edge || no_edge) {
                                struct json_object *caps = json_object_new_object();
                                if (json_add(ch, "capabilities", caps) < 0 ||
                                    json_add(caps, "iotEdge", json_object_new_boolean(edge)) < 0)
                                        return err_msg("Out of memory.");
                        }
                        if (reprovision) {
                                struct json_object *rp = json_object_new_object();
                                if (json_add(ch, "reprovisionPolicy", rp) < 0 ||
                                    json_add(rp, "updateHubAssignment",
                                             json_object_new_boolean(!streq(reprovision, "never"))) < 0 ||
                                    json_add(rp, "migrateDeviceData",
                                             json_object_new_boolean(streq(reprovision, "migrate"))) < 0)
                                        return err_msg("Out of memory.");
                        }
                        if (twin && json_add(ch, "initialTwin", TAKE_PTR(twin)) < 0)
                                return err_msg("Out of memory.");
                        if (n_hubs > 0) {
                                struct json_object *a = json_object_new_array();
                                if (json_add(ch, "iotHubs", a) < 0)
                                        return err_msg("Out of memory.");
                                for (size_t i = 0; i < n_hubs; i++)
                                        if (json_object_array_add(a, json_object_new_string(hubs[i])) < 0)
                                                return err_msg("Out of memory.");
                        }
                        if (primary) {
                                struct json_object *att = json_object_new_object(), *sk = json_object_new_object();
                                if (json_add(ch, "attestation", att) < 0 || json_add_string(att, "type", "symmetricKey") < 0 ||
                                    json_add(att, "symmetricKey", sk) < 0 || json_add_string(sk, "primaryKey", primary) < 0 ||
                                    (secondary && json_add_string(sk, "secondaryKey", secondary) < 0))
                                        return err_msg("Out of memory.");
                        }
                        return entry_update(list, eid, ch);
                }
        }

        if (arg_broker && !streq(action, "add") && !streq(action, "create"))
                return err_msg("%s: unknown action '%s' (create, show, list, update, delete).", what, action);
        if (!arg_broker && load(&d) != 0)
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

        if (is_delete) {
                r = group ? dps_data_remove_group(d, id, &msg) : dps_data_remove_individual(d, id, &msg);
                if (r < 0)
                        return edit_failed(r, msg);
                return save(d) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
        if (!streq(action, "add") && !streq(action, "create"))
                return err_msg("%s: unknown action '%s' (create, show, list, update, delete).", what, action);

        if (!dps_registration_id_is_valid(id))
                return err_msg("%s add: '%s' is not a valid %s (1-128 of [A-Za-z0-9.:_-], alphanumeric at both ends).",
                             what, id, group ? "enrollment group id" : "registration id"), EXIT_INVALID;
        if (device_id && !dps_device_id_is_valid(device_id))
                return err_msg("enrollment add: --device-id: '%s' is not a valid device id.", device_id), EXIT_INVALID;
        if (tpm_ek) {
                /* a TPM individual enrollment: the EK as `edgeprovd --print-tpm-identity` prints it */
                _cleanup_free_ uint8_t *ekbuf = NULL;
                size_t eklen = 0;
                TpmRsaPublic ekpub;
                if (group)
                        return err_msg("group add: --tpm-ek is for individual enrollments only.");
                if (primary || secondary || generate || print_key)
                        return err_msg("enrollment add: --tpm-ek conflicts with the symmetric key options.");
                if (base64_decode(tpm_ek, strlen(tpm_ek), &ekbuf, &eklen) < 0 ||
                    tpm_rsa_public_parse(ekbuf, eklen, &ekpub) < 0)
                        return err_msg("enrollment add: --tpm-ek: not base64 of an RSA endorsement key TPM2B_PUBLIC "
                                       "(as edgeprovd --print-tpm-identity prints it).");
        }
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
        if (!primary && !tpm_ek) {
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
        if (json_add(e, group ? "enrollmentGroupId" : "registrationId", json_object_new_string(id)) < 0 ||
            (device_id && json_add(e, "deviceId", json_object_new_string(device_id)) < 0) ||
            json_add(e, "provisioningStatus", json_object_new_string(disabled ? "disabled" : "enabled")) < 0 ||
            (tpm_ek ? json_add(sk, "endorsementKey", json_object_new_string(tpm_ek)) < 0 ||
                              json_add(att, "type", json_object_new_string("tpm")) < 0 ||
                              json_add(att, "tpm", TAKE_PTR(sk)) < 0
                    : json_add(sk, "primaryKey", json_object_new_string(primary)) < 0 ||
                              (secondary && json_add(sk, "secondaryKey", json_object_new_string(secondary)) < 0) ||
                              json_add(att, "type", json_object_new_string("symmetricKey")) < 0 ||
                              json_add(att, "symmetricKey", TAKE_PTR(sk)) < 0) ||
            json_add(e, "attestation", TAKE_PTR(att)) < 0 ||
            json_add(caps, "iotEdge", json_object_new_boolean(edge)) < 0 ||
            json_add(e, "capabilities", TAKE_PTR(caps)) < 0)
                return err_msg("Out of memory.");
        if (n_hubs > 0) {
                struct json_object *a = json_object_new_array();
                if (json_add(e, "iotHubs", a) < 0)
                        return err_msg("Out of memory.");
                for (size_t i = 0; i < n_hubs; i++)
                        if (json_object_array_add(a, json_object_new_string(hubs[i])) < 0)
                                return err_msg("Out of memory.");
        }
        if (reprovision) {
                struct json_object *rp = json_object_new_object();
                if (json_add(e, "reprovisionPolicy", rp) < 0 ||
                    json_add(rp, "updateHubAssignment", json_object_new_boolean(!streq(reprovision, "never"))) < 0 ||
                    json_add(rp, "migrateDeviceData", json_object_new_boolean(streq(reprovision, "migrate"))) < 0)
                        return err_msg("Out of memory.");
        }
        if (twin && json_add(e, "initialTwin", TAKE_PTR(twin)) < 0)
                return err_msg("Out of memory.");
        if (json_add(e, "createdDateTimeUtc", json_object_new_string(now)) < 0 ||
            json_add(e, "lastUpdatedDateTimeUtc", json_object_new_string(now)) < 0)
                return err_msg("Out of memory.");

        if (arg_broker) {
                r = admin_entry_command(group ? "createEnrollmentGroup" : "createEnrollment", NULL, NULL,
                                        group ? "enrollmentGroup" : "enrollment", e, NULL, NULL);
                if (r == EXIT_SUCCESS && print_key)
                        printf("%s\n", primary);
                return r;
        }
        r = group ? dps_data_add_group(d, TAKE_PTR(e), &msg) : dps_data_add_individual(d, TAKE_PTR(e), &msg);
        if (r == -EEXIST)
                return err_msg("%s: %s '%s' already exists.", arg_data,
                             group ? "enrollment group" : "individual enrollment", id), EXIT_EXISTS;
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
                        if (parse_uint_range(optarg, 0, 10 * 365 * 24 * 3600, &ttl) < 0)
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

/* ---- registration records (the SQLite store shared with the running plugin) -------------- */

static int open_store(DpsStore **ret) {
        _cleanup_free_ char *path = NULL, *msg = NULL;
        int r;

        if (arg_db)
                path = strdup(arg_db);
        else {
                _cleanup_free_ char *copy = strdup(arg_data);
                if (copy)
                        (void) asprintf(&path, "%s/registrations.db", dirname(copy));
        }
        if (!path)
                return err_msg("Out of memory.");
        r = dps_store_open(path, ret, &msg);
        if (r < 0)
                return err_msg("%s", msg ?: strerror(-r));
        return 0;
}

static char *format_usec(uint64_t usec, char buf[static 32]) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;
        if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, 32, "-");
        return buf;
}

static struct json_object *record_to_json(const DpsRecord *r) {
        struct json_object *o = json_object_new_object();
        char c[32], u[32];

        if (!o)
                return NULL;
        const struct {
                const char *key;
                const char *value;
        } fields[] = {
                { "registrationId", r->registration_id },
                { "deviceId", r->device_id },
                { "assignedHub", r->assigned_hub },
                { "initialHub", r->initial_hub },
                { "enrollmentGroupId", r->enrollment_group_id },
                { "status", r->status },
                { "substatus", r->substatus },
                { "etag", r->etag },
                { "errorMessage", r->error_message },
                { "createdDateTimeUtc", format_usec(r->created_usec, c) },
                { "lastUpdatedDateTimeUtc", format_usec(r->updated_usec, u) },
        };
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (fields[i].value && json_add(o, fields[i].key, json_object_new_string(fields[i].value)) < 0)
                        goto fail;
        if (r->error_code != 0 && json_add(o, "errorCode", json_object_new_int64(r->error_code)) < 0)
                goto fail;
        if (r->initial_twin) {
                struct json_object *t = NULL;
                if (json_parse_limited(r->initial_twin, strlen(r->initial_twin), DPS_BODY_MAX, DPS_JSON_MAX_DEPTH,
                                       &t) >= 0 &&
                    json_add(o, "initialTwin", t) < 0)
                        goto fail;
        }
        return o;
fail:
        json_object_put(o);
        return NULL;
}

static int print_record_row(const DpsRecord *r, void *userdata) {
        struct json_object *arr = userdata;
        char u[32];

        if (arr) {
                struct json_object *o = record_to_json(r);
                if (!o || json_object_array_add(arr, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
                return 0;
        }
        printf("%-32s %-24s %-9s %-33s %-32s %s\n", r->registration_id, r->device_id ?: "-", r->status,
               r->substatus ?: "-", r->assigned_hub ?: "-", format_usec(r->updated_usec, u));
        return 0;
}

static void print_json(struct json_object *o) {
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* ---- the admin API client ---------------------------------------------------------------- */

#define ADMIN_TIMEOUT_MSEC 10000

typedef struct AdminCall {
        const char *request;
        char *response;
        int state; /* 0 waiting, 1 answered, -1 failed */
        int connack;
} AdminCall;

static void admin_on_connect(struct mosquitto *m, void *ud, int rc) {
        AdminCall *a = ud;
        a->connack = rc;
        if (rc != 0) {
                a->state = -1;
                return;
        }
        mosquitto_subscribe(m, NULL, DPS_ADMIN_RESPONSE_TOPIC, 1);
}

static void admin_on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted) {
        AdminCall *a = ud;
        if (n < 1 || granted[0] > 2) {
                a->state = -1;
                return;
        }
        mosquitto_publish(m, NULL, DPS_ADMIN_TOPIC, (int) strlen(a->request), a->request, 1, false);
}

static void admin_on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg) {
        AdminCall *a = ud;
        if (!streq(msg->topic, DPS_ADMIN_RESPONSE_TOPIC) || a->state != 0)
                return;
        a->response = strndup(msg->payload ?: "", (size_t) msg->payloadlen);
        a->state = a->response ? 1 : -1;
}


/* Sends one command and returns its response object ("data" or "error"). */
int admin_command(struct json_object *cmd, struct json_object **ret) {
        _cleanup_json_ struct json_object *req = json_object_new_object(), *resp = NULL;
        _cleanup_erase_ char *password = NULL;
        struct json_object *arr = json_object_new_array(), *responses = NULL;
        AdminCall a = {};
        int r;

        if (!req || json_add(req, "commands", arr) < 0 || json_object_array_add(arr, cmd) < 0)
                return err_msg("Out of memory.");
        a.request = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);

        if (!arg_admin_password_file)
                return err_msg("--broker needs --admin-password-file."), EXIT_ADMIN_API;
        r = read_secret_file(arg_admin_password_file, 4096, &password);
        if (r < 0)
                return err_msg("%s: %s", arg_admin_password_file, strerror(-r)), EXIT_ADMIN_API;
        password[strcspn(password, "\r\n")] = 0;

        _cleanup_free_ char *host = strdup(arg_broker);
        if (!host)
                return err_msg("Out of memory.");
        char *colon = strrchr(host, ':');
        int port = 8883;
        if (colon) {
                *colon = 0;
                port = atoi(colon + 1);
        }
        if (isempty(host) || port <= 0 || port > 65535)
                return err_msg("--broker: expected HOST:PORT, not '%s'.", arg_broker), EXIT_ADMIN_API;

        mosquitto_lib_init();
        char client_id[64];
        snprintf(client_id, sizeof(client_id), "edgeprov-dpsctl-%d", (int) getpid());
        struct mosquitto *m = mosquitto_new(client_id, true, &a);
        if (!m)
                return err_msg("Out of memory.");
        mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
        mosquitto_username_pw_set(m, arg_admin_user, password);
        if (mosquitto_tls_set(m, arg_cafile, arg_cafile ? NULL : "/etc/ssl/certs", NULL, NULL, NULL) != MOSQ_ERR_SUCCESS) {
                mosquitto_destroy(m);
                return err_msg("--cafile %s: cannot be used.", strna(arg_cafile)), EXIT_ADMIN_API;
        }
        mosquitto_connect_callback_set(m, admin_on_connect);
        mosquitto_subscribe_callback_set(m, admin_on_subscribe);
        mosquitto_message_callback_set(m, admin_on_message);

        uint64_t deadline = clock_now_usec(CLOCK_MONOTONIC) / 1000 + ADMIN_TIMEOUT_MSEC;
        r = mosquitto_connect(m, host, port, 30);
        if (r != MOSQ_ERR_SUCCESS) {
                mosquitto_destroy(m);
                mosquitto_lib_cleanup();
                return err_msg("Cannot connect to %s: %s", arg_broker,
                               r == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(r)), EXIT_ADMIN_API;
        }
        while (a.state == 0 && clock_now_usec(CLOCK_MONOTONIC) / 1000 < deadline) {
                r = mosquitto_loop(m, 100, 1);
                if (r != MOSQ_ERR_SUCCESS && a.state == 0)
                        a.state = -1;
        }
        mosquitto_disconnect(m);
        mosquitto_destroy(m);
        mosquitto_lib_cleanup();

        if (a.state != 1) {
                free(a.response);
                if (a.connack != 0)
                        return err_msg("The admin API refused the connection: %s", mosquitto_connack_string(a.connack)),
                               EXIT_ADMIN_API;
                return err_msg("No answer from the admin API at %s.", arg_broker), EXIT_ADMIN_API;
        }
        r = json_parse_limited(a.response, strlen(a.response), 64 * 1024 * 1024, 64, &resp);
        free(a.response);
        if (r < 0 || !json_object_object_get_ex(resp, "responses", &responses) ||
            !json_object_is_type(responses, json_type_array) || json_object_array_length(responses) != 1)
                return err_msg("Malformed answer from the admin API."), EXIT_ADMIN_API;
        *ret = json_object_get(json_object_array_get_idx(responses, 0));
        return 0;
}

static const char *jstr(struct json_object *o, const char *key) {
        struct json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static int registration_via_admin_api(const char *action, const char *id) {
        _cleanup_json_ struct json_object *data = NULL;
        struct json_object *v = NULL;
        const char *name = streq(action, "list")   ? "listRegistrations"
                           : streq(action, "show") ? "getRegistration"
                                                   : "deleteRegistration";
        int r;

        r = admin_entry_command(name, id ? "registrationId" : NULL, id, NULL, NULL, NULL, &data);
        if (r != EXIT_SUCCESS)
                return r;
        if (streq(action, "delete"))
                return EXIT_SUCCESS;
        if (streq(action, "show")) {
                if (!json_object_object_get_ex(data, "registration", &v))
                        return err_msg("Malformed answer from the admin API."), EXIT_ADMIN_API;
                if (arg_json) {
                        print_json(v);
                        return EXIT_SUCCESS;
                }
                json_object_object_foreach(v, key, val) {
                        printf("%-24s %s\n", key,
                               json_object_is_type(val, json_type_string)
                                       ? json_object_get_string(val)
                                       : json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN));
                }
                return EXIT_SUCCESS;
        }
        if (!json_object_object_get_ex(data, "registrations", &v) || !json_object_is_type(v, json_type_array))
                return err_msg("Malformed answer from the admin API."), EXIT_ADMIN_API;
        if (arg_json) {
                print_json(v);
                return EXIT_SUCCESS;
        }
        printf("%-32s %-24s %-9s %-33s %-32s %s\n", "REGISTRATION-ID", "DEVICE-ID", "STATUS", "SUBSTATUS", "HUB",
               "UPDATED");
        for (size_t i = 0; i < json_object_array_length(v); i++) {
                struct json_object *x = json_object_array_get_idx(v, i);
                printf("%-32s %-24s %-9s %-33s %-32s %s\n", strna(jstr(x, "registrationId")),
                       jstr(x, "deviceId") ?: "-", strna(jstr(x, "status")), jstr(x, "substatus") ?: "-",
                       jstr(x, "assignedHub") ?: "-", strna(jstr(x, "lastUpdatedDateTimeUtc")));
        }
        return EXIT_SUCCESS;
}

/* ---- hubs and enrollments through the admin API, or in the file -------------------------- */

static const struct {
        const char *get, *list, *update, *id_key, *obj_key, *list_key;
} entry_commands[_DPS_DATA_LIST_MAX] = {
        [DPS_DATA_LINKED_HUBS] = { "getHub", "listHubs", "updateHub", "name", "hub", "linkedHubs" },
        [DPS_DATA_INDIVIDUAL_ENROLLMENTS] = { "getEnrollment", "listEnrollments", "updateEnrollment",
                                              "registrationId", "enrollment", "individualEnrollments" },
        [DPS_DATA_ENROLLMENT_GROUPS] = { "getEnrollmentGroup", "listEnrollmentGroups", "updateEnrollmentGroup",
                                         "enrollmentGroupId", "enrollmentGroup", "enrollmentGroups" },
};

/* The error classes of admin.h → exit codes. */
static int admin_error_exit(const char *error) {
        if (startswith(error, "Not found"))
                return EXIT_NOT_FOUND;
        if (startswith(error, "Already exists"))
                return EXIT_EXISTS;
        if (startswith(error, "Precondition failed") || startswith(error, "Busy"))
                return EXIT_CONFLICT;
        if (startswith(error, "Invalid"))
                return EXIT_INVALID;
        return EXIT_FAILURE;
}

/* {"command": command, id_key: id, obj_key: obj, "ifMatch": if_match}; obj is not taken. */
static int admin_entry_command(const char *command, const char *id_key, const char *id, const char *obj_key,
                               struct json_object *obj, const char *if_match, struct json_object **ret_data) {
        _cleanup_json_ struct json_object *resp = NULL;
        struct json_object *cmd = json_object_new_object(), *data = NULL;
        int r;

        if (!cmd || json_add_string(cmd, "command", command) < 0 || (id_key && json_add_string(cmd, id_key, id) < 0) ||
            (obj_key && json_add(cmd, obj_key, json_object_get(obj)) < 0) ||
            (if_match && json_add_string(cmd, "ifMatch", if_match) < 0)) {
                json_object_put(cmd);
                return err_msg("Out of memory.");
        }
        r = admin_command(cmd, &resp);
        if (r != 0)
                return r;
        const char *error = jstr(resp, "error");
        if (error) {
                err_msg("%s: %s", command, error);
                return admin_error_exit(error);
        }
        if (!json_object_object_get_ex(resp, "data", &data))
                return err_msg("Malformed answer from the admin API."), EXIT_ADMIN_API;
        if (ret_data)
                *ret_data = json_object_get(data);
        return EXIT_SUCCESS;
}

static void strip_keys(struct json_object *o) {
        struct json_object *att = NULL, *sk = NULL;
        if (json_object_object_get_ex(o, "attestation", &att) && json_object_object_get_ex(att, "symmetricKey", &sk) &&
            json_object_is_type(sk, json_type_object)) {
                json_object_object_del(sk, "primaryKey");
                json_object_object_del(sk, "secondaryKey");
        }
}

/* The current entry (keys removed), from the service or the file. */
static int entry_get(DpsDataList list, const char *id, struct json_object **ret) {
        if (arg_broker) {
                _cleanup_json_ struct json_object *data = NULL;
                struct json_object *o = NULL;
                int r = admin_entry_command(entry_commands[list].get, entry_commands[list].id_key, id, NULL, NULL,
                                            NULL, &data);
                if (r != EXIT_SUCCESS)
                        return r;
                if (!json_object_object_get_ex(data, entry_commands[list].obj_key, &o))
                        return err_msg("Malformed answer from the admin API."), EXIT_ADMIN_API;
                *ret = json_object_get(o);
                return EXIT_SUCCESS;
        }
        _cleanup_(dps_data_freep) DpsData *d = NULL;
        struct json_object *c = NULL;
        if (load(&d) != 0)
                return EXIT_FAILURE;
        struct json_object *o = dps_data_find_json(d, list, id);
        if (!o)
                return err_msg("%s: no %s '%s'.", arg_data, entry_commands[list].obj_key, id), EXIT_NOT_FOUND;
        if (json_object_deep_copy(o, &c, NULL) < 0 || !c)
                return err_msg("Out of memory.");
        strip_keys(c);
        *ret = c;
        return EXIT_SUCCESS;
}

static void print_fields(struct json_object *o) {
        json_object_object_foreach(o, key, val)
                printf("%-24s %s\n", key,
                       json_object_is_type(val, json_type_string)
                               ? json_object_get_string(val)
                               : json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

static int entry_show(DpsDataList list, const char *id) {
        _cleanup_json_ struct json_object *o = NULL;
        int r = entry_get(list, id, &o);
        if (r != EXIT_SUCCESS)
                return r;
        if (arg_json)
                print_json(o);
        else
                print_fields(o);
        return EXIT_SUCCESS;
}

static int entry_list_admin(DpsDataList list) {
        _cleanup_json_ struct json_object *data = NULL;
        struct json_object *a = NULL;
        int r;

        r = admin_entry_command(entry_commands[list].list, NULL, NULL, NULL, NULL, NULL, &data);
        if (r != EXIT_SUCCESS)
                return r;
        if (!json_object_object_get_ex(data, entry_commands[list].list_key, &a) || !json_object_is_type(a, json_type_array))
                return err_msg("Malformed answer from the admin API."), EXIT_ADMIN_API;
        if (arg_json) {
                print_json(a);
                return EXIT_SUCCESS;
        }
        if (list == DPS_DATA_LINKED_HUBS)
                printf("%-40s %6s %s\n", "NAME", "WEIGHT", "APPLY-ALLOCATION-POLICY");
        else
                printf("%-32s %-24s %-8s %-12s %s\n", list == DPS_DATA_ENROLLMENT_GROUPS ? "GROUP" : "REGISTRATION-ID",
                       list == DPS_DATA_ENROLLMENT_GROUPS ? "" : "DEVICE-ID", "STATUS", "ATTESTATION", "HUBS");
        for (size_t i = 0; i < json_object_array_length(a); i++) {
                struct json_object *x = json_object_array_get_idx(a, i), *v = NULL, *att = NULL;
                if (list == DPS_DATA_LINKED_HUBS) {
                        struct json_object *w = NULL, *ap = NULL;
                        (void) json_object_object_get_ex(x, "allocationWeight", &w);
                        (void) json_object_object_get_ex(x, "applyAllocationPolicy", &ap);
                        printf("%-40s %6d %s\n", strna(jstr(x, "name")), w ? json_object_get_int(w) : 1,
                               !ap || json_object_get_boolean(ap) ? "yes" : "no");
                        continue;
                }
                (void) json_object_object_get_ex(x, "attestation", &att);
                printf("%-32s %-24s %-8s %-12s ", strna(jstr(x, entry_commands[list].id_key)),
                       list == DPS_DATA_ENROLLMENT_GROUPS ? "" : jstr(x, "deviceId") ?: "-",
                       jstr(x, "provisioningStatus") ?: "enabled", strna(jstr(att, "type")));
                if (jstr(x, "iotHubHostName"))
                        printf("%s", jstr(x, "iotHubHostName"));
                else if (!json_object_object_get_ex(x, "iotHubs", &v) || json_object_array_length(v) == 0)
                        printf("(all linked)");
                else
                        for (size_t j = 0; j < json_object_array_length(v); j++)
                                printf("%s%s", j ? "," : "", json_object_get_string(json_object_array_get_idx(v, j)));
                putchar('\n');
        }
        return EXIT_SUCCESS;
}

/* Read, change the given members, write back; through the admin API with ifMatch = the etag
 * read, so a concurrent change is refused (exit 6) instead of overwritten. */
static int entry_update(DpsDataList list, const char *id, struct json_object *changes) {
        _cleanup_json_ struct json_object *o = NULL;
        _cleanup_free_ char *etag = NULL, *msg = NULL;
        int r;

        if (!arg_broker) {
                _cleanup_(dps_data_freep) DpsData *d = NULL;
                struct json_object *cur, *c = NULL;
                if (load(&d) != 0)
                        return EXIT_FAILURE;
                cur = dps_data_find_json(d, list, id);
                if (!cur)
                        return err_msg("%s: no %s '%s'.", arg_data, entry_commands[list].obj_key, id), EXIT_NOT_FOUND;
                if (json_object_deep_copy(cur, &c, NULL) < 0 || !c)
                        return err_msg("Out of memory.");
                json_object_object_foreach(changes, k, v)
                        if (json_object_object_add(c, k, json_object_get(v)) < 0) {
                                json_object_put(c);
                                return err_msg("Out of memory.");
                        }
                if (list != DPS_DATA_LINKED_HUBS) {
                        char now[32];
                        timestamp_now(now);
                        if (json_object_object_add(c, "lastUpdatedDateTimeUtc", json_object_new_string(now)) < 0) {
                                json_object_put(c);
                                return err_msg("Out of memory.");
                        }
                }
                r = dps_data_put(d, list, c, DPS_DATA_PUT_UPDATE, &msg);
                if (r < 0)
                        return edit_failed(r, msg);
                return save(d) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }

        r = entry_get(list, id, &o);
        if (r != EXIT_SUCCESS)
                return r;
        if (jstr(o, "etag") && !(etag = strdup(jstr(o, "etag"))))
                return err_msg("Out of memory.");
        json_object_object_foreach(changes, k, v)
                if (json_object_object_add(o, k, json_object_get(v)) < 0)
                        return err_msg("Out of memory.");
        return admin_entry_command(entry_commands[list].update, NULL, NULL, entry_commands[list].obj_key, o, etag,
                                   NULL);
}

static int verb_registration(int argc, char *argv[]) {
        _cleanup_(dps_store_freep) DpsStore *st = NULL;
        int r;

        if (argc < 2)
                return err_msg("registration: expected list, show or delete.");
        const char *action = argv[1];
        if (streq(action, "list")) {
                if (argc != 2)
                        return err_msg("registration list: unexpected argument '%s'.", argv[2]);
        } else if ((streq(action, "show") || streq(action, "delete"))) {
                if (argc != 3)
                        return err_msg("registration %s: expected exactly one registration id.", action);
        } else
                return err_msg("registration: unknown action '%s' (list, show, delete).", action);

        if (arg_broker)
                return registration_via_admin_api(action, argc > 2 ? argv[2] : NULL);

        if (open_store(&st) != 0)
                return EXIT_FAILURE;

        if (streq(action, "list")) {
                _cleanup_json_ struct json_object *arr = arg_json ? json_object_new_array() : NULL;
                if (arg_json && !arr)
                        return err_msg("Out of memory.");
                if (!arg_json)
                        printf("%-32s %-24s %-9s %-33s %-32s %s\n", "REGISTRATION-ID", "DEVICE-ID", "STATUS",
                               "SUBSTATUS", "HUB", "UPDATED");
                r = dps_store_foreach(st, print_record_row, arr);
                if (r < 0)
                        return err_msg("registration list: %s", strerror(-r));
                if (arr)
                        print_json(arr);
                return EXIT_SUCCESS;
        }

        const char *id = argv[2];
        if (streq(action, "delete")) {
                r = dps_store_delete(st, id);
                if (r == -ENOENT)
                        return err_msg("registration delete: no record for '%s'.", id), EXIT_NOT_FOUND;
                if (r < 0)
                        return err_msg("registration delete: %s", strerror(-r));
                return EXIT_SUCCESS;
        }

        _cleanup_(dps_record_done) DpsRecord rec = {};
        r = dps_store_get(st, id, &rec);
        if (r == -ENOENT)
                return err_msg("registration show: no record for '%s'.", id), EXIT_NOT_FOUND;
        if (r < 0)
                return err_msg("registration show: %s", strerror(-r));
        _cleanup_json_ struct json_object *o = record_to_json(&rec);
        if (!o)
                return err_msg("Out of memory.");
        if (arg_json) {
                print_json(o);
                return EXIT_SUCCESS;
        }
        char c[32], u[32];
        printf("Registration id: %s\n", rec.registration_id);
        printf("Status:          %s%s%s\n", rec.status, rec.substatus ? " / " : "", strempty(rec.substatus));
        printf("Device id:       %s\n", strna(rec.device_id));
        printf("Assigned hub:    %s\n", strna(rec.assigned_hub));
        printf("Initial hub:     %s\n", strna(rec.initial_hub));
        printf("Enrollment:      %s\n", rec.enrollment_group_id ?: "individual");
        if (rec.error_code != 0)
                printf("Error:           %" PRIi64 " %s\n", rec.error_code, strna(rec.error_message));
        printf("Etag:            %s\n", rec.etag);
        printf("Created:         %s\n", format_usec(rec.created_usec, c));
        printf("Updated:         %s\n", format_usec(rec.updated_usec, u));
        printf("Initial twin:    %s\n", rec.initial_twin ?: "-");
        return EXIT_SUCCESS;
}

int main(int argc, char *argv[]) {
        enum { ARG_DB = 0x100, ARG_JSON, ARG_BROKER, ARG_CAFILE, ARG_ADMIN_USER, ARG_ADMIN_PASSWORD_FILE };
        static const struct option options[] = {
                { "data", required_argument, NULL, 'd' },
                { "db", required_argument, NULL, ARG_DB },
                { "json", no_argument, NULL, ARG_JSON },
                { "broker", required_argument, NULL, ARG_BROKER },
                { "cafile", required_argument, NULL, ARG_CAFILE },
                { "admin-user", required_argument, NULL, ARG_ADMIN_USER },
                { "admin-password-file", required_argument, NULL, ARG_ADMIN_PASSWORD_FILE },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "+d:h", options, NULL)) >= 0)
                switch (c) {
                case 'd':
                        arg_data = optarg;
                        break;
                case ARG_DB:
                        arg_db = optarg;
                        break;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case ARG_BROKER:
                        arg_broker = optarg;
                        break;
                case ARG_CAFILE:
                        arg_cafile = optarg;
                        break;
                case ARG_ADMIN_USER:
                        arg_admin_user = optarg;
                        break;
                case ARG_ADMIN_PASSWORD_FILE:
                        arg_admin_password_file = optarg;
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
                return x509_enrollment_wanted(vargc, vargv) ? verb_x509_enrollment(vargc, vargv, false)
                                                            : verb_enrollment_or_group(vargc, vargv, false);
        if (streq(verb, "group"))
                return x509_enrollment_wanted(vargc, vargv) ? verb_x509_enrollment(vargc, vargv, true)
                                                            : verb_enrollment_or_group(vargc, vargv, true);
        if (streq(verb, "registration"))
                return verb_registration(vargc, vargv);
        if (streq(verb, "compute-key"))
                return verb_compute_key(vargc, vargv);
        if (streq(verb, "cert"))
                return verb_cert(vargc, vargv);
        if (streq(verb, "ca"))
                return verb_ca(vargc, vargv, arg_json);
        if (streq(verb, "token"))
                return verb_token(vargc, vargv);
        if (streq(verb, "help"))
                return help(), EXIT_SUCCESS;
        return err_msg("unknown command '%s' (see --help).", verb);
}
