/* SPDX-License-Identifier: MIT */
#include <stdlib.h>

#include "agent/state.h"
#include "edgeprov/macro.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        GatewayState s = {};
        if (gateway_state_parse((const char *) data, size, &s) >= 0) {
                _cleanup_free_ char *text = NULL;
                GatewayState t = {};
                /* what we accept, we can write and read back */
                if (gateway_state_format(&s, &text) >= 0 && gateway_state_parse(text, strlen(text), &t) < 0)
                        abort();
                gateway_state_done(&t);
        }
        gateway_state_done(&s);
        return 0;
}
