/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/conf.h"

/* The downstream enrollment group's key, from which each sensor's device key is derived:
 * device key = HMAC-SHA256(group key, registration id).
 *
 * Two sources:
 *   downstream.group_key_file    base64 key in a 0600 file (or credential); held in memory
 *   downstream.group_key_in_tpm  imported once with `edgeprovd --import-group-key FILE` into
 *                                the TPM as a keyedhash HMAC object under the SRK; its blob
 *                                (TPM2B_PUBLIC + TPM2B_PRIVATE, encrypted by the SRK) is
 *                                <state_directory>/downstream-group-key.tpm (0600).  The
 *                                derivation runs in the TPM (TPM2_HMAC); the group key is never
 *                                in this process' memory or on disk after the import. */

#define GROUP_KEY_BLOB_FILE "downstream-group-key.tpm"
#define GROUP_KEY_BLOB_MAX 4096

typedef struct GroupKey GroupKey;

/* *ret = NULL (and 0) when no group key is configured.  For the TPM, only reads the blob
 * (the TPM is opened per derivation). */
int group_key_open(const Config *c, GroupKey **ret);
GroupKey *group_key_free(GroupKey *g);
bool group_key_in_tpm(const GroupKey *g);

/* The device keys (base64) of n registration ids; ret_keys[i] are secrets the caller wipes.
 * With the TPM: one TPM open, one Load, n HMACs.  ret_usec (optional): time spent. */
int group_key_derive(GroupKey *g, const char *const *ids, size_t n, char **ret_keys, uint64_t *ret_usec);

/* <state_directory>/downstream-group-key.tpm */
int group_key_blob_path(const Config *c, char **ret);

/* edgeprovd --import-group-key: reads the base64 key from key_path (must not be accessible to
 * others), creates the TPM object (SRK created first if absent), writes the blob crash-safely
 * (0600), checks that the TPM derives what the key derives in software, and wipes the key. */
int group_key_import(const Config *c, const char *key_path);
