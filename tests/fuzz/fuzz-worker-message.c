/* SPDX-License-Identifier: MIT */
/* What edgeprovd reads from its helper process (src/agent/worker.h): one datagram, parsed by
 * worker_recv(), and a "result" event turned into a DpsResult.  The helper parses network input;
 * whatever it sends must not crash the daemon. */
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/dps-client.h"
#include "agent/worker.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct json_object *m = NULL;
        int sv[2];

        if (size > WORKER_MSG_MAX + 16 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return 0;
        int one = WORKER_MSG_MAX * 2 + 4096;
        (void) setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one));
        if (send(sv[1], data, size, MSG_DONTWAIT) == (ssize_t) size) {
                int r = worker_recv(sv[0], MSG_DONTWAIT, &m);
                if (r > 0 && size > WORKER_MSG_MAX)
                        abort(); /* an oversized datagram must be refused */
                if (r > 0) {
                        DpsResult res;
                        if (!json_object_is_type(m, json_type_object))
                                abort();
                        if (dps_result_from_event(m, &res) >= 0) {
                                if (res.outcome >= _DPS_OUTCOME_MAX || res.retry_after < -1 || res.status > 999)
                                        abort();
                                if (res.outcome == DPS_OUTCOME_ASSIGNED && (isempty(res.assigned_hub) || isempty(res.device_id)))
                                        abort();
                                if (res.outcome != DPS_OUTCOME_ASSIGNED && !res.error_message)
                                        abort();
                        }
                        json_object_put(m);
                }
        }
        close(sv[0]);
        close(sv[1]);
        return 0;
}
