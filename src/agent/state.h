/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The committed assignment of the gateway, kept in <state_directory>/state.json and
 * written crash-safely (write_file_atomic).  Holds no secret. */

#define STATE_FILE_NAME "state.json"
#define STATE_FILE_MAX (1024 * 1024)
#define STATE_VERSION 1

typedef struct GatewayState {
        char *registration_id;
        char *device_id;
        char *assigned_hub;
        char *substatus;
        char *operation_id;
        char *attestation;
        char *fingerprint;
        char *endpoint;
        char *id_scope;
        char *tpm_key_slot;      /* TPM attestation: the persistent handle of the active key, "0x81000100" */
        uint64_t provisioned_at; /* seconds since the epoch */
} GatewayState;

void gateway_state_done(GatewayState *s);
bool gateway_state_is_committed(const GatewayState *s);

/* -EBADMSG for anything that is not a well-formed state document. */
int gateway_state_parse(const char *buf, size_t len, GatewayState *ret);
int gateway_state_format(const GatewayState *s, char **ret);

/* -ENOENT when there is no state file yet. */
int gateway_state_load(const char *dir, GatewayState *ret);
int gateway_state_save(const char *dir, const GatewayState *s);
