/* SPDX-License-Identifier: MIT */
/* The parts of the DPS client interface that both sides of the process split use: the daemon
 * (which schedules registrations) and edgeprov-worker (which performs them). */
#include "agent/dps-client.h"
#include "edgeprov/macro.h"

#define DPS_DEFAULT_POLL_SEC 2
#define DPS_MAX_POLL_SEC 300

static const char *const outcome_table[_DPS_OUTCOME_MAX] = {
        [DPS_OUTCOME_ASSIGNED] = "assigned",
        [DPS_OUTCOME_TRANSIENT] = "transient",
        [DPS_OUTCOME_REJECTED] = "rejected",
};

const char *dps_outcome_to_string(DpsOutcome o) {
        return o < _DPS_OUTCOME_MAX ? outcome_table[o] : NULL;
}

static const char *const transport_table[_DPS_TRANSPORT_MAX] = {
        [DPS_TRANSPORT_MQTT] = "mqtt",
        [DPS_TRANSPORT_HTTPS] = "https",
};

const char *dps_transport_to_string(DpsTransport t) {
        return t >= 0 && t < _DPS_TRANSPORT_MAX ? transport_table[t] : NULL;
}

DpsTransport dps_transport_from_string(const char *s) {
        for (DpsTransport t = 0; t < _DPS_TRANSPORT_MAX; t++)
                if (streq_ptr(s, transport_table[t]))
                        return t;
        return _DPS_TRANSPORT_INVALID;
}

int dps_poll_delay_sec(int retry_after) {
        if (retry_after < 0)
                return DPS_DEFAULT_POLL_SEC;
        return MIN(MAX(retry_after, 1), DPS_MAX_POLL_SEC);
}
