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
 * Commands: listHubs, listEnrollments, getEnrollment {registrationId}, listEnrollmentGroups,
 * getEnrollmentGroup {enrollmentGroupId} (symmetric keys are never returned),
 * listRegistrations, getRegistration {registrationId}, deleteRegistration {registrationId}.
 * A command may carry "correlationData", echoed in its response.  Enrollments are changed
 * through the data file (edgeprov-dpsctl --data), which the plugin reloads by itself.
 * Errors per command: "Not found", "Invalid/missing <field>", "Unknown command",
 * "No registration database", "Internal error". */

#define DPS_ADMIN_TOPIC "$CONTROL/edgeprov-dps/v1"
#define DPS_ADMIN_RESPONSE_TOPIC "$CONTROL/edgeprov-dps/v1/response"
#define DPS_ADMIN_MAX_COMMANDS 100

/* Always produces a response document (even for a malformed request); -ENOMEM otherwise. */
int dps_admin_handle(DpsService *s, const void *payload, size_t len, char **ret_json, size_t *ret_len);
