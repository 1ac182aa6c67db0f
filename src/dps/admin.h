/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "dps/service.h"

/* The admin API of the local provisioning service, transport-independent.  Requests and
 * responses follow the convention of mosquitto's dynamic-security plugin: the front end (the
 * plugin, on $CONTROL/edgeprov-dps/v1, for the configured admin identity only) hands over
 *
 *   {"commands":[{"command":"listRegistrations"}, {"command":"getRegistration","registrationId":"dev1"}, ...]}
 *
 * and publishes the answer on $CONTROL/edgeprov-dps/v1/response:
 *
 *   {"responses":[{"command":"listRegistrations","data":{...}}, {"command":"getRegistration","error":"Not found"}]}
 *
 * Commands: listHubs, getHub {name}, linkHub {hub}, updateHub {hub}, unlinkHub {name};
 * listEnrollments, getEnrollment {registrationId}, createEnrollment {enrollment},
 * updateEnrollment {enrollment, ifMatch?}, deleteEnrollment {registrationId, ifMatch?}; the same
 * for groups (listEnrollmentGroups, getEnrollmentGroup {enrollmentGroupId},
 * createEnrollmentGroup {enrollmentGroup}, …); listRegistrations, getRegistration
 * {registrationId}, deleteRegistration {registrationId}.  Symmetric keys are never returned.
 * Writes go through dps_service_edit_data() (validated, written to the data file atomically,
 * used at once).  A command may carry "correlationData", echoed in its response.  Errors per
 * command: see DpsAdminHandler below; "Unknown command", "Payload too large". */

/* One admin command: fills data (the response's "data") and returns 0, or sets *ret_error
 * (allocated; the response's "error") and returns 0; -ENOMEM is fatal.  Error texts start
 * with a class edgeprov-dpsctl maps to exit codes: "Not found", "Already exists",
 * "Precondition failed", "Busy", "Invalid", "Internal error". */
struct json_object;
typedef int (*DpsAdminHandler)(DpsService *s, struct json_object *cmd, struct json_object *data, char **ret_error);
typedef struct DpsAdminCommand {
        const char *name;
        DpsAdminHandler handler;
} DpsAdminCommand;

/* Tables end with an entry whose name is NULL.  To add commands from another file, define a
 * table there, declare it here and add it to command_tables[] in admin.c (one line). */
extern const DpsAdminCommand dps_admin_core_commands[];
extern const DpsAdminCommand dps_admin_ca_commands[]; /* src/dps/admin-ca.c (issue 6) */

#define DPS_ADMIN_TOPIC "$CONTROL/edgeprov-dps/v1"
#define DPS_ADMIN_RESPONSE_TOPIC "$CONTROL/edgeprov-dps/v1/response"
#define DPS_ADMIN_MAX_COMMANDS 100

/* Always produces a response document (even for a malformed request); -ENOMEM otherwise. */
int dps_admin_handle(DpsService *s, const void *payload, size_t len, char **ret_json, size_t *ret_len);
