/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeprov/dps-rest.h"
#include "edgeprov/macro.h"
#include "fuzz.h"

/* What the HTTPS front parses (request paths) and what the agent parses (response header
 * lines, retry-after values): no crash, and every accepted path formats and parses back. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        DpsRestPath p = { .op = _DPS_REST_OP_INVALID };
        _cleanup_free_ char *s = NULL;
        const char *n, *v;
        size_t nl, vl;
        int r;

        s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;

        if (dps_rest_path_parse(s, &p) == 0) {
                _cleanup_free_ char *f = NULL;
                DpsRestPath again = { .op = _DPS_REST_OP_INVALID };
                if (p.op < 0 || p.op >= _DPS_REST_OP_MAX || isempty(p.id_scope) || isempty(p.registration_id) ||
                    (p.op == DPS_REST_OPERATION_STATUS) != !!p.operation_id)
                        abort();
                r = dps_rest_path_format(p.op, p.id_scope, p.registration_id, p.operation_id, "2021-06-01", &f);
                if (r == 0) {
                        *strchr(f, '?') = 0;
                        if (dps_rest_path_parse(f, &again) < 0 || again.op != p.op ||
                            !streq(again.registration_id, p.registration_id) ||
                            !streq_ptr(again.operation_id, p.operation_id))
                                abort();
                        dps_rest_path_done(&again);
                } else if (r != -E2BIG)
                        abort();
                dps_rest_path_done(&p);
        }

        r = dps_http_header_parse(s, size, &n, &nl, &v, &vl);
        if (r == 1) {
                if (nl == 0 || n < s || v < s || n + nl > s + size || v + vl > s + size)
                        abort();
                (void) dps_http_header_name_is(n, nl, "retry-after");
                r = dps_http_retry_after_parse(v, vl);
                if (r < -EINVAL || r > 86400)
                        abort();
        }
        r = dps_http_retry_after_parse(s, size);
        if (r != -EINVAL && (r < 0 || r > 86400))
                abort();
        return 0;
}
