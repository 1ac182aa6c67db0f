/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeprov/dps.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"
#include "fuzz.h"

/* Response bodies (and, on the same bytes, response topics) as the agent receives them
 * from a possibly hostile service. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(dps_response_done) DpsResponse r = {};
        _cleanup_(dps_response_topic_done) DpsResponseTopic t = {};
        _cleanup_free_ char *s = NULL, *f = NULL;

        if (dps_response_parse(data, size, &r) == 0 && r.state.payload_json) {
                /* the re-serialized payload must itself be JSON */
                _cleanup_json_ struct json_object *o = NULL;
                if (json_parse_limited(r.state.payload_json, strlen(r.state.payload_json), SIZE_MAX / 2,
                                       DPS_JSON_MAX_DEPTH, &o) < 0)
                        abort();
        }

        s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;

        if (dps_response_topic_parse(s, &t) == 0) {
                /* whatever we accept we can produce again */
                _cleanup_(dps_response_topic_done) DpsResponseTopic t2 = {};
                if (dps_response_topic_format(t.status, t.rid, t.retry_after, &f) < 0)
                        abort();
                if (dps_response_topic_parse(f, &t2) < 0 || t2.status != t.status || !streq(t2.rid, t.rid) ||
                    t2.retry_after != t.retry_after)
                        abort();
        }

        return 0;
}
