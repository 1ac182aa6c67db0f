/* SPDX-License-Identifier: MIT */
/* The admin API request handler (src/dps/admin.c) fed arbitrary requests, with a data file
 * and no registration database.  Every request must produce one JSON document
 * {"responses":[...]} with a "command" and either "data" or "error" in each response, and no
 * symmetric key may ever appear in it. */
#include <stdlib.h>
#include <string.h>

#include "dps/admin.h"
#include "dps/datafile.h"
#include "dps/service.h"
#include "edgeprov/dps.h"
#include "edgeprov/json-util.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "fuzz.h"

#define K1 "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
#define K2 "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
#define SK(p, s) "{\"type\":\"symmetricKey\",\"symmetricKey\":{\"primaryKey\":\"" p "\",\"secondaryKey\":\"" s "\"}}"

static const char data_json[] =
        "{\"idScope\":\"0ne00000A0A\",\"linkedHubs\":[{\"name\":\"hub1.example.net\"}],"
        "\"individualEnrollments\":[{\"registrationId\":\"gw1\",\"attestation\":" SK(K1, K2) "}],"
        "\"enrollmentGroups\":[{\"enrollmentGroupId\":\"sensors\",\"attestation\":" SK(K2, K1) "}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(dps_service_freep) DpsService *s = NULL;
        _cleanup_free_ char *out = NULL, *msg = NULL;
        _cleanup_json_ struct json_object *o = NULL;
        struct json_object *responses = NULL;
        DpsData *d = NULL;
        size_t len = 0;

        log_set_max_level(LOG_CRIT);
        if (size > 256 * 1024)
                return 0;
        if (dps_service_new(&s) < 0 || dps_data_parse(data_json, strlen(data_json), &d, &msg) < 0)
                abort();
        dps_service_set_data(s, d);

        if (dps_admin_handle(s, data, size, &out, &len) < 0)
                return 0;
        if (strlen(out) != len)
                abort();
        /* no stored key may leak; a key the request itself carries may be echoed (e.g. inside
         * an unknown command's name, found by libFuzzer) */
        if ((strstr(out, K1) && !memmem(data, size, K1, strlen(K1))) ||
            (strstr(out, K2) && !memmem(data, size, K2, strlen(K2))))
                abort();
        if (json_parse_limited(out, len, SIZE_MAX / 2, DPS_JSON_MAX_DEPTH + 8, &o) < 0 ||
            !json_object_object_get_ex(o, "responses", &responses) ||
            !json_object_is_type(responses, json_type_array) ||
            json_object_array_length(responses) > DPS_ADMIN_MAX_COMMANDS) /* {"commands":[]}: none */
                abort();
        for (size_t i = 0; i < json_object_array_length(responses); i++) {
                struct json_object *r = json_object_array_get_idx(responses, i), *x = NULL;
                if (!json_object_object_get_ex(r, "command", &x) ||
                    (!json_object_object_get_ex(r, "data", &x) && !json_object_object_get_ex(r, "error", &x)))
                        abort();
        }
        return 0;
}
