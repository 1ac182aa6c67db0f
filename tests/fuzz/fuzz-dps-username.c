/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeprov/dps.h"
#include "edgeprov/macro.h"
#include "fuzz.h"

/* MQTT CONNECT usernames as the service receives them. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(dps_username_done) DpsUsername u = {};
        _cleanup_free_ char *s = NULL, *f = NULL;
        int r;

        s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;

        if (dps_username_parse(s, &u) < 0)
                return 0;

        if (!dps_id_scope_is_valid(u.id_scope) || !dps_registration_id_is_valid(u.registration_id) ||
            isempty(u.api_version))
                abort();

        r = dps_username_format(u.id_scope, u.registration_id, u.api_version, u.client_version, &f);
        if (r == -E2BIG) /* re-encoding may grow the ClientVersion */
                return 0;
        if (r < 0)
                abort();

        _cleanup_(dps_username_done) DpsUsername again = {};
        if (dps_username_parse(f, &again) < 0 || !streq(again.id_scope, u.id_scope) ||
            !streq(again.registration_id, u.registration_id) || !streq(again.api_version, u.api_version) ||
            !streq_ptr(again.client_version, u.client_version))
                abort();

        return 0;
}
