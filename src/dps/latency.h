/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

#include "dps/datafile.h"

/* Lowest-latency allocation (geoLatency, dps-protocol.md §7.2): the TCP connect time from the
 * service to each linked hub's probeAddress, measured again every interval with non-blocking
 * connects.  dps_latency_process() starts due probes and collects finished ones; it never
 * waits (connect() on an O_NONBLOCK socket, poll() with timeout 0), so a front end calls it
 * from its loop (the plugin: every MOSQ_EVT_TICK).
 *
 * The connect time is the kernel's handshake RTT (TCP_INFO tcpi_rtt) when the SYN was not
 * retransmitted, so it does not depend on how often the loop runs; when it was (a lost SYN,
 * a listener whose accept queue is full) it is the time from the connect() call until the
 * loop saw the connection established, which is ≥ 1 s (the initial retransmission timeout).
 * A refused connect, a timeout or any other error makes the hub unreachable until a later
 * probe succeeds. */

#define DPS_LATENCY_INTERVAL_USEC_DEFAULT (30 * UINT64_C(1000000))
#define DPS_LATENCY_TIMEOUT_USEC_DEFAULT (3 * UINT64_C(1000000))
/* Hubs whose connect times are within max(1 ms, 20 %) of the lowest are tied; the weighted
 * hash of the registration id picks among them. */
#define DPS_LATENCY_TIE_USEC 1000
#define DPS_LATENCY_TIE_PERCENT 20

typedef struct DpsLatency DpsLatency;

int dps_latency_new(DpsLatency **ret);
DpsLatency *dps_latency_free(DpsLatency *l);
void dps_latency_set_interval(DpsLatency *l, uint64_t interval_usec, uint64_t timeout_usec);

/* Probes exactly the hubs of d that have a probeAddress (measurements of unchanged hubs are
 * kept). */
int dps_latency_sync(DpsLatency *l, const DpsData *d);
/* now: CLOCK_MONOTONIC in µs. */
int dps_latency_process(DpsLatency *l, uint64_t now);
size_t dps_latency_n_targets(const DpsLatency *l);

/* 0 with the connect time; -EHOSTUNREACH when the last probe failed; -ENODATA when not
 * measured yet or not probed at all. */
int dps_latency_get(const DpsLatency *l, const char *hub, uint64_t *ret_usec);

/* The geoLatency choice for one registration: among the candidate hubs (as for hashed), those
 * measured reachable; the lowest connect time wins, ties (see above) go to the weighted hash.
 * When no candidate has a measurement yet, the weighted hash over the candidates that are not
 * known to be unreachable.  -ENXIO when there is no candidate left. */
typedef int (*DpsLatencyFunc)(const char *hub, uint64_t *ret_usec, void *userdata);
int dps_allocate_hub_latency(const DpsData *d, const DpsEnrollment *e, const char *registration_id,
                             DpsLatencyFunc latency, void *userdata, const char **ret_hub);
