/* SPDX-License-Identifier: MIT */
/* The bulk sensor file parser (edgeprovctl register --file), the id normaliser it feeds, and
 * the per-sensor state record. */
#include <stdlib.h>
#include <string.h>

#include "agent/downstream.h"
#include "agent/sensor-list.h"
#include "edgeprov/dps.h"
#include "edgeprov/macro.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        SensorList l = {};
        char *err = NULL;

        if (sensor_list_parse((const char *) data, size, &l, &err) >= 0) {
                for (size_t i = 0; i < l.n; i++) {
                        char *id = NULL;
                        const char *proto = NULL, *why = NULL;
                        if (!l.entries[i].id)
                                abort();
                        if (sensor_id_normalize(l.entries[i].id, &id, &proto, &why) >= 0) {
                                /* whatever we normalise must be a valid registration id */
                                if (!dps_registration_id_is_valid(id))
                                        abort();
                                free(id);
                        } else if (!why)
                                abort();
                }
        } else if (!err)
                abort();
        sensor_list_done(&l);
        free(err);

        Sensor s = {};
        if (sensor_record_parse((const char *) data, size, &s) >= 0) {
                char *text = NULL;
                Sensor t = {};
                if (sensor_record_format(&s, &text) < 0 || sensor_record_parse(text, strlen(text), &t) < 0 ||
                    !streq(s.id, t.id))
                        abort();
                free(text);
                sensor_done(&t);
        }
        sensor_done(&s);
        return 0;
}
