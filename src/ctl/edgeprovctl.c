/* SPDX-License-Identifier: MIT */
/* edgeprovctl: look at what edgeprovd did.  (The D-Bus API will replace the direct file
 * access; the state file stays the ground truth that survives reboots.) */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "agent/conf.h"
#include "agent/state.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"

static const char *arg_state_dir = NULL;
static const char *arg_config = EDGEPROV_DEFAULT_CONFIG;
static bool arg_json = false;

static void help(void) {
        printf("%s [OPTIONS...] COMMAND\n\n"
               "Show the provisioning state of this gateway.\n\n"
               "Commands:\n"
               "  status               Show the committed hub assignment\n\n"
               "Options:\n"
               "  -h --help            Show this help\n"
               "     --version         Show the version\n"
               "  -c --config=PATH     edgeprovd configuration (to find the state directory)\n"
               "     --state-dir=DIR   State directory (overrides the configuration)\n"
               "     --json            Print the state document as JSON\n",
               program_invocation_short_name);
}

static int status(void) {
        _cleanup_free_ char *dir = NULL;
        GatewayState s = {};
        int r;

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
                return log_oom();

        r = gateway_state_load(dir, &s);
        if (r == -ENOENT) {
                printf("Not provisioned yet (no state in %s).\n", dir);
                return 3;
        }
        if (r < 0)
                return log_error_errno(r, "Cannot read the state in '%s': %m", dir);
        if (!gateway_state_is_committed(&s)) {
                printf("Not provisioned yet.\n");
                gateway_state_done(&s);
                return 3;
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

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_STATE_DIR, ARG_JSON };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, 'c' },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "json", no_argument, NULL, ARG_JSON },
                {},
        };
        int c, r;

        log_setup("edgeprovctl");
        log_set_target(LOG_TARGET_CONSOLE);
        while ((c = getopt_long(argc, argv, "hc:", options, NULL)) >= 0)
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
                case ARG_JSON:
                        arg_json = true;
                        break;
                default:
                        return EXIT_FAILURE;
                }
        if (optind >= argc || streq(argv[optind], "status"))
                r = status();
        else {
                log_error("Unknown command '%s'. See --help.", argv[optind]);
                return EXIT_FAILURE;
        }
        return r < 0 ? EXIT_FAILURE : r;
}
