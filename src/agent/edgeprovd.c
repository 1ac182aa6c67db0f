/* SPDX-License-Identifier: MIT */
/* edgeprovd: provisions this gateway against an Azure-DPS-compatible service. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "agent/bus.h"
#include "agent/conf.h"
#include "agent/downstream.h"
#include "agent/group-key.h"
#include "agent/manager.h"
#include "agent/worker.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "agent/attest.h"
#include "agent/x509-identity.h"

static const char *arg_config = EDGEPROV_DEFAULT_CONFIG;
static bool arg_check_config = false;
static const char *arg_bus_address = NULL;     /* NULL: system bus, optional */
static bool arg_print_tpm_identity = false;
static const char *arg_import_group_key = NULL;

static void help(void) {
        printf("%s [OPTIONS...]\n\n"
               "Provision this gateway against an Azure-DPS-compatible provisioning service.\n\n"
               "  -h --help            Show this help\n"
               "     --version         Show the version\n"
               "  -c --config=PATH     Configuration file (default: %s)\n"
               "     --check-config    Validate the configuration (and drop-ins) and exit\n"
               "     --print-tpm-identity  Print the TPM registration id and base64 EK to enroll, and exit\n"
               "     --import-group-key=FILE  Import the downstream group key (base64, 0600) into the TPM\n"
               "                       and exit; then set downstream.group_key_in_tpm = true\n"
               "     --bus-address=ADDR  D-Bus to serve on: a D-Bus address, \"session\", or \"none\"\n"
               "                       (default: the system bus, if there is one)\n",
               program_invocation_short_name, EDGEPROV_DEFAULT_CONFIG);
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_CHECK_CONFIG, ARG_BUS_ADDRESS, ARG_PRINT_TPM_IDENTITY, ARG_IMPORT_GROUP_KEY };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
                { "bus-address", required_argument, NULL, ARG_BUS_ADDRESS },
                { "print-tpm-identity", no_argument, NULL, ARG_PRINT_TPM_IDENTITY },
                { "import-group-key", required_argument, NULL, ARG_IMPORT_GROUP_KEY },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "hc:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("edgeprovd %s\n", PACKAGE_VERSION);
                        return 0;
                case 'c':
                        arg_config = optarg;
                        break;
                case ARG_CHECK_CONFIG:
                        arg_check_config = true;
                        break;
                case ARG_BUS_ADDRESS:
                        arg_bus_address = optarg;
                        break;
                case ARG_PRINT_TPM_IDENTITY:
                        arg_print_tpm_identity = true;
                        break;
                case ARG_IMPORT_GROUP_KEY:
                        arg_import_group_key = optarg;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                log_error("%s takes no positional arguments.", program_invocation_short_name);
                return -EINVAL;
        }
        return 1;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        log_info("Received %s, shutting down.", si->ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Shutting down");
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

typedef struct Daemon {
        Downstream *downstream;
        Bus *bus;
} Daemon;

/* The manager's change notification fans out to the sensors (they need the gateway's
 * device id) and to D-Bus. */
static void on_manager_changed(Manager *m, void *userdata) {
        Daemon *dmn = userdata;
        const GatewayState *a = manager_get_assignment(m);

        (void) downstream_set_gateway(dmn->downstream, a ? a->device_id : NULL);
        bus_gateway_changed(dmn->bus);
}

static int daemon_setup(Daemon *dmn, sd_event *event, Manager *m) {
        const Config *c = manager_get_config(m);
        int r;

        r = downstream_new(event, c, &dmn->downstream);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the downstream registry: %m");
        r = downstream_start(dmn->downstream);
        if (r < 0)
                return r;
        for (char **p = c->downstream_sensors; p && *p; p++) {
                const char *why = NULL;
                r = downstream_add(dmn->downstream, *p, NULL, NULL, &why);
                if (r < 0)
                        log_warning_errno(r, "Inventory sensor '%s' skipped: %s", *p, why ?: strerror(-r));
        }
        if (!streq_ptr(arg_bus_address, "none")) {
                r = bus_new(event, m, dmn->downstream, arg_bus_address, c->admin_group ?: "edgeprov", &dmn->bus);
                if (r < 0 && arg_bus_address)
                        return r;
                if (r < 0)
                        log_notice("Continuing without D-Bus.");
        }
        manager_set_changed_callback(m, on_manager_changed, dmn);
        return 0;
}

static int run(int argc, char *argv[]) {
        Daemon dmn = {};
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_free_ char *error = NULL;
        Manager *m = NULL;
        Config config;
        int r;

        log_setup("edgeprovd");
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;

        r = conf_load(arg_config, &config, &error);
        if (r < 0) {
                log_error("Invalid configuration: %s", error ?: strerror(-r));
                return r;
        }
        if (config.log_level && !getenv("LOG_LEVEL"))
                log_set_max_level(log_level_from_string(config.log_level));
        if (arg_print_tpm_identity) {
                /* the operator enrolls these (dps-protocol.md §6.3); creates EK/SRK if absent */
                TpmAttestation *a = NULL;
                r = tpm_attestation_new(&config, &a);
                if (r >= 0)
                        r = tpm_attestation_load_identity(a);
                if (r >= 0)
                        printf("registrationId: %s\nendorsementKey: %s\n",
                               config.registration_id ?: tpm_attestation_registration_id(a),
                               tpm_attestation_ek_b64(a));
                tpm_attestation_free(a);
                conf_done(&config);
                return r < 0 ? r : 0;
        }
        if (arg_import_group_key) {
                r = group_key_import(&config, arg_import_group_key);
                conf_done(&config);
                return r < 0 ? r : 0;
        }
        if (arg_check_config) {
                _cleanup_free_ char *key_error = NULL;
                char *key = NULL;
                if (config.attestation == ATTESTATION_X509) {
                        /* X.509 (issue 6): certificate, key and CN, as the daemon would load them */
                        X509Identity *xi = NULL;
                        r = x509_identity_load(&config, &xi, &key_error);
                        x509_identity_free(xi);
                } else
                        r = config.attestation == ATTESTATION_TPM ? 0 : conf_read_key(&config, &key, &key_error);
                erase_and_free(key);
                conf_done(&config);
                if (r < 0) {
                        log_error("Invalid configuration: %s", strna(key_error));
                        return r;
                }
                printf("%s: OK\n", arg_config);
                return 0;
        }

        r = sd_event_default(&event);
        if (r < 0) {
                conf_done(&config);
                return log_error_errno(r, "Failed to allocate the event loop: %m");
        }
        (void) sd_event_set_watchdog(event, true);
        worker_set_event(event);
        r = sd_event_add_signal(event, NULL, SIGTERM | SD_EVENT_SIGNAL_PROCMASK, on_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT | SD_EVENT_SIGNAL_PROCMASK, on_signal, NULL);
        if (r < 0) {
                conf_done(&config);
                return log_error_errno(r, "Failed to install signal handlers: %m");
        }
        (void) signal(SIGPIPE, SIG_IGN);

        r = manager_new(event, &config, &m);
        if (r < 0) {
                conf_done(&config);
                return log_error_errno(r, "Failed to set up: %m");
        }
        r = daemon_setup(&dmn, event, m);
        if (r >= 0)
                r = manager_start(m);
        if (r < 0) {
                bus_free(dmn.bus);
                downstream_free(dmn.downstream);
                manager_free(m);
                return r;
        }

        (void) sd_notify(false, "READY=1");
        r = sd_event_loop(event);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        int status = manager_exit_status(m);
        dmn.bus = bus_free(dmn.bus);
        dmn.downstream = downstream_free(dmn.downstream);
        manager_free(m);
        if (r < 0)
                return r;
        return status; /* 0, or 2 when fail_fast stopped us after a rejection */
}

/* Exit codes: 0 clean stop, 1 error (bad configuration, unreadable key, ...),
 * 2 the service rejected the registration and agent.fail_fast is set. */
int main(int argc, char *argv[]) {
        int r = run(argc, argv);
        worker_shutdown(); /* the worker exits when its socket closes; wait for it */
        return r < 0 ? EXIT_FAILURE : r;
}
