/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeprov/dps.h"
#include "edgeprov/macro.h"
#include "fuzz.h"

/* Register request bodies as the service receives them. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(dps_register_request_done) DpsRegisterRequest r = {};
        _cleanup_free_ char *f = NULL;
        int k;

        if (dps_register_request_parse(data, size, &r) < 0)
                return 0;

        /* an SRK without an EK cannot be formatted; everything else must round-trip */
        if (r.tpm_storage_root_key && !r.tpm_endorsement_key)
                return 0;

        k = dps_register_request_format(r.registration_id, r.payload_json, r.tpm_endorsement_key,
                                        r.tpm_storage_root_key, &f);
        if (k == -E2BIG) /* re-serialization may escape more ("\/") */
                return 0;
        if (k < 0)
                abort();

        _cleanup_(dps_register_request_done) DpsRegisterRequest again = {};
        if (dps_register_request_parse(f, strlen(f), &again) < 0)
                abort();
        if (!streq_ptr(again.registration_id, r.registration_id) || !streq_ptr(again.payload_json, r.payload_json) ||
            !streq_ptr(again.tpm_endorsement_key, r.tpm_endorsement_key) ||
            !streq_ptr(again.tpm_storage_root_key, r.tpm_storage_root_key))
                abort();

        return 0;
}
