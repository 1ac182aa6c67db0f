/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/* Downstream sensor ids and bulk sensor files (pure functions, no I/O). */

#define SENSOR_FILE_MAX (16 * 1024 * 1024)
#define SENSOR_FILE_ENTRIES_MAX 100000
#define SENSOR_OPTIONS_MAX 32
#define SENSOR_OPTION_KEY_MAX 64
#define SENSOR_OPTION_VALUE_MAX 1024

/* Turns a sensor id as people write it into a valid DPS registration id and names its
 * protocol:
 *   "ble:AA:BB:CC:DD:EE:FF", or a bare 6-octet MAC      → "ble-aabbccddeeff", "ble"
 *   "zigbee:00:12:4B:00:01:02:03:04", bare 8-octet EUI  → "zigbee-00124b0001020304", "zigbee"
 *   "modbus:3@/dev/ttyUSB0", or bare "3@ttyUSB0"        → "modbus-ttyusb0-3", "modbus"
 *   anything else that is already a valid registration id → itself, protocol NULL
 * Returns -EINVAL (with a static reason in *reterr if non-NULL) for anything else. */
int sensor_id_normalize(const char *input, char **ret_id, const char **ret_protocol, const char **reterr);

typedef struct SensorEntry {
        char *id;               /* as written in the file (normalised later by the daemon) */
        char **keys;            /* options */
        char **values;
        size_t n_options;
} SensorEntry;

typedef struct SensorList {
        SensorEntry *entries;
        size_t n;
} SensorList;

void sensor_list_done(SensorList *l);

/* Parses a bulk sensor file.  JSON: an array whose elements are either a string (the id) or
 * an object {"id": "...", "options": {"k": "v", ...}} (option values: strings, numbers or
 * booleans, stored as text).  CSV (anything not starting with '[' after blanks): one sensor per
 * line, "id[,key=value]..."; blank lines and lines starting with '#' are skipped, an optional
 * first line "id,..." or "registration_id,..." is a header.  On error returns -EINVAL and
 * stores "line N: what" (or "entry N: what") in *reterr. */
int sensor_list_parse(const char *buf, size_t len, SensorList *ret, char **reterr);
