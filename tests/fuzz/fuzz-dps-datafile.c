/* SPDX-License-Identifier: MIT */
/* The enrollment data file loader (src/dps/datafile.c), and what the service does with
 * whatever it accepts: lookups, hub allocation, and a save/load round trip. */
#include <stdlib.h>
#include <string.h>

#include "dps/datafile.h"
#include "dps/service.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(dps_data_freep) DpsData *d = NULL, *d2 = NULL;
        _cleanup_free_ char *msg = NULL, *text = NULL, *text2 = NULL, *msg2 = NULL;
        const char *hub;
        int r;

        log_set_max_level(LOG_CRIT);
        if (size > 1024 * 1024)
                return 0;

        r = dps_data_parse(data, size, &d, &msg);
        if (r < 0) {
                /* every refusal explains itself */
                if (r != -ENOMEM && !msg)
                        abort();
                return 0;
        }

        for (size_t i = 0; i < d->n_individual; i++) {
                const DpsEnrollment *e = d->individual + i;
                if (dps_data_find_individual(d, e->registration_id) != e)
                        abort();
                r = dps_allocate_hub(d, e, e->registration_id, &hub);
                if (r < 0 && r != -ENXIO && r != -ENOMEM)
                        abort();
                if (r == 0 && !dps_data_find_hub(d, hub))
                        abort();
        }
        for (size_t i = 0; i < d->n_groups; i++) {
                const DpsEnrollment *e = d->groups + i;
                if (!dps_data_find_group(d, e->enrollment_group_id))
                        abort();
                r = dps_allocate_hub(d, e, "device-1", &hub);
                if (r < 0 && r != -ENXIO && r != -ENOMEM)
                        abort();
        }

        /* what was accepted must survive a round trip unchanged */
        if (dps_data_format(d, &text) < 0)
                return 0;
        r = dps_data_parse(text, strlen(text), &d2, &msg2);
        if (r == -ENOMEM)
                return 0;
        if (r < 0)
                abort();
        if (dps_data_format(d2, &text2) < 0)
                return 0;
        if (!streq(text, text2) || d->n_individual != d2->n_individual || d->n_groups != d2->n_groups ||
            d->n_hubs != d2->n_hubs)
                abort();
        return 0;
}
