/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeprov/macro.h"
#include "edgeprov/sas.h"
#include "fuzz.h"

/* MQTT passwords (SAS tokens) as the service receives them. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* the derived key of dps-protocol.md §4.3 */
        static const uint8_t key[32] = {
                0x26, 0xc9, 0xb4, 0x97, 0x21, 0xa9, 0x8d, 0xa5, 0x58, 0x54, 0xfd, 0xa0, 0xdc, 0x59, 0xe6, 0x9e,
                0x61, 0xbd, 0x74, 0x8f, 0xfd, 0xa9, 0x4d, 0xb8, 0xc0, 0xda, 0x32, 0x91, 0x49, 0x9e, 0xae, 0x67,
        };
        _cleanup_(sas_token_done) SasToken t = {};
        int r;

        if (sas_token_parse((const char *) data, size, &t) < 0)
                return 0;

        if (!t.sr_raw || !t.resource || !t.se_raw)
                abort();

        r = sas_token_verify(&t, key, sizeof(key), "0ne00000A0A/registrations/sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
                             1600000000);
        if (r != 0 && r != -EBADR && r != -EKEYEXPIRED && r != -EKEYREJECTED)
                abort();

        /* the token's own resource always matches, so only the signature and expiry count */
        r = sas_token_verify(&t, key, sizeof(key), t.resource, 0);
        if (r != 0 && r != -EKEYEXPIRED && r != -EKEYREJECTED)
                abort();

        return 0;
}
