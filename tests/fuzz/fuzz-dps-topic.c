/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeprov/dps.h"
#include "edgeprov/macro.h"
#include "fuzz.h"

/* Request topics as the service receives them, response topics as the agent does. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(dps_request_topic_done) DpsRequestTopic rq = {};
        _cleanup_(dps_response_topic_done) DpsResponseTopic rs = {};
        _cleanup_free_ char *s = NULL;

        s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;

        if (dps_request_topic_parse(s, &rq) == 0) {
                _cleanup_(dps_request_topic_done) DpsRequestTopic again = {};
                _cleanup_free_ char *f = NULL, *resp = NULL;
                int r;

                if (rq.type == DPS_REQUEST_REGISTER)
                        r = dps_register_topic_format(rq.rid, &f);
                else if (rq.type == DPS_REQUEST_OPERATION_STATUS)
                        r = dps_poll_topic_format(rq.rid, rq.operation_id, &f);
                else
                        abort();
                if (r == 0) {
                        if (dps_request_topic_parse(f, &again) < 0 || again.type != rq.type ||
                            !streq(again.rid, rq.rid) || !streq_ptr(again.operation_id, rq.operation_id))
                                abort();
                } else if (r != -E2BIG) /* the encoded operation id may be longer */
                        abort();

                /* every accepted rid can be echoed */
                if (dps_response_topic_format(202, rq.rid, 3, &resp) < 0)
                        abort();
        }

        if (dps_response_topic_parse(s, &rs) == 0) {
                if (rs.status < 100 || rs.status > 599 || rs.retry_after < -1 || isempty(rs.rid))
                        abort();
        }

        return 0;
}
