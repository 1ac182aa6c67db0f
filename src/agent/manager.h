/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <systemd/sd-event.h>

#include "agent/conf.h"
#include "agent/state.h"

/* The gateway's provisioning state machine.
 *
 *   start ─► committed assignment for this identity? ─yes─► ASSIGNED (no network)
 *                 │no
 *                 ▼
 *          PROVISIONING ─assigned─► commit (atomic) ─► ASSIGNED
 *                 │ transient (network, 429, 5xx)   ─► RETRYING (backoff, full jitter, ≥ retry-after)
 *                 │ rejected (401, 404, disabled…)  ─► REJECTED (slow retry; exit when fail_fast)
 */

typedef enum ManagerState {
        MANAGER_STARTING,
        MANAGER_PROVISIONING,
        MANAGER_ASSIGNED,
        MANAGER_RETRYING,
        MANAGER_REJECTED,
        _MANAGER_STATE_MAX,
        _MANAGER_STATE_INVALID = -EINVAL,
} ManagerState;

const char *manager_state_to_string(ManagerState s);

typedef struct Manager Manager;

/* Takes ownership of *config (it is reset). */
int manager_new(sd_event *e, Config *config, Manager **ret);
Manager *manager_free(Manager *m);
int manager_start(Manager *m);

ManagerState manager_get_state(const Manager *m);
const GatewayState *manager_get_assignment(const Manager *m);
/* The exit status the daemon should use when the loop ends. */
int manager_exit_status(const Manager *m);

/* For the D-Bus layer: called after every change of state, assignment, last error or next
 * retry time (possibly more often; compare values). */
typedef void (*ManagerChangedCallback)(Manager *m, void *userdata);
void manager_set_changed_callback(Manager *m, ManagerChangedCallback cb, void *userdata);
const Config *manager_get_config(const Manager *m);
const char *manager_get_last_error(const Manager *m);
/* CLOCK_REALTIME µs of the next attempt, 0 if none is scheduled. */
uint64_t manager_get_next_retry_usec(const Manager *m);
/* Starts a new provisioning now (operator request); -EBUSY if one is in flight. */
int manager_reprovision(Manager *m, const char *reason);
