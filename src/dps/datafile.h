/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct json_object;

/* The enrollment data file of the local provisioning service (dps-protocol.md §7.1):
 *
 *   { "idScope": "0ne00000A0A",
 *     "allocationPolicy": "hashed",
 *     "linkedHubs": [ { "name": "hub1.example.net", "allocationWeight": 1, "applyAllocationPolicy": true } ],
 *     "individualEnrollments": [ IndividualEnrollment... ],
 *     "enrollmentGroups": [ EnrollmentGroup... ] }
 *
 * The JSON tree is the source of truth (so fields this code does not interpret, e.g.
 * initialTwin, survive a load/save round trip); DpsData carries a validated, typed view whose
 * strings are borrowed from that tree.  Loading is strict: unknown keys and wrong types are
 * errors, and every error comes with a message naming the field. */

#define DPS_DATAFILE_MAX (32 * 1024 * 1024)
#define DPS_DATAFILE_MAX_DEPTH 32
#define DPS_DATAFILE_MODE 0640
#define DPS_LINKED_HUBS_MAX 50
#define DPS_INDIVIDUAL_ENROLLMENTS_MAX 1000000
#define DPS_ENROLLMENT_GROUPS_MAX 1000
#define DPS_HUB_NAME_MAX 253
#define DPS_DEVICE_ID_MAX 128
#define DPS_ENROLLMENT_GROUP_ID_MAX 128
#define DPS_ALLOCATION_WEIGHT_MAX 1000
#define DPS_SYMMETRIC_KEY_MIN 16 /* bytes, after base64 decoding */
#define DPS_SYMMETRIC_KEY_MAX 64

typedef enum DpsAttestationType {
        DPS_ATTESTATION_NONE,
        DPS_ATTESTATION_SYMMETRIC_KEY,
        DPS_ATTESTATION_TPM,
        DPS_ATTESTATION_X509,
        _DPS_ATTESTATION_MAX,
        _DPS_ATTESTATION_INVALID = -EINVAL,
} DpsAttestationType;

typedef enum DpsAllocationPolicy {
        DPS_ALLOCATION_HASHED,
        DPS_ALLOCATION_GEO_LATENCY, /* the lowest TCP connect time to the hubs' probeAddress (latency.c) */
        DPS_ALLOCATION_STATIC,
        DPS_ALLOCATION_CUSTOM,      /* the enrollment's customAllocationDefinition.webhookUrl (webhook.c) */
        _DPS_ALLOCATION_MAX,
        _DPS_ALLOCATION_INVALID = -EINVAL,
} DpsAllocationPolicy;

const char *dps_attestation_type_to_string(DpsAttestationType t);
DpsAttestationType dps_attestation_type_from_string(const char *s);
const char *dps_allocation_policy_to_string(DpsAllocationPolicy p);
DpsAllocationPolicy dps_allocation_policy_from_string(const char *s); /* case-insensitive */

typedef struct DpsLinkedHub {
        const char *name;
        unsigned allocation_weight;     /* 1..1000, default 1 */
        bool apply_allocation_policy;   /* default true */
        const char *probe_address;      /* "IP:PORT" / "[IPv6]:PORT" (numeric), NULL when absent */
} DpsLinkedHub;

typedef struct DpsEnrollment {
        const char *registration_id;     /* individual enrollments only, NULL for groups */
        const char *enrollment_group_id; /* groups only, NULL for individual enrollments */
        const char *device_id;           /* NULL when absent */
        bool enabled;                    /* provisioningStatus */
        DpsAttestationType attestation;
        const char *primary_key;         /* base64, symmetricKey attestation only (secret) */
        const char *secondary_key;       /* base64 or NULL */
        const char *iot_hub_host_name;   /* NULL when absent or null */
        const char **iot_hubs;           /* n_iot_hubs entries, each a linked hub */
        size_t n_iot_hubs;
        DpsAllocationPolicy allocation_policy; /* _DPS_ALLOCATION_INVALID: the instance default */
        bool iot_edge;                   /* capabilities.iotEdge */
        struct json_object *json;        /* borrowed: the enrollment object itself */
} DpsEnrollment;

typedef struct DpsData {
        struct json_object *root;        /* owned */
        const char *id_scope;
        DpsAllocationPolicy allocation_policy;
        DpsLinkedHub *hubs;
        size_t n_hubs;
        DpsEnrollment *individual;
        size_t n_individual;
        DpsEnrollment *groups;
        size_t n_groups;
        const DpsEnrollment **individual_index; /* sorted by registration id, case-insensitively */
} DpsData;

/* All of these return 0 or -errno; on failure *reterr_message (optional) receives an
 * allocated human-readable reason naming the field, e.g.
 *   "individualEnrollments[2] ('gw1').attestation.symmetricKey.primaryKey: not valid base64".
 *   -EINVAL   bad JSON, wrong type, missing or invalid value
 *   -E2BIG    file or list too large
 *   -EEXIST   duplicate registration id / group id / hub
 *   -EOPNOTSUPP  a valid DPS setting this service does not implement
 *   -ENOENT   (load) no such file / (remove) no such enrollment */
int dps_data_new(const char *id_scope, DpsData **ret);
int dps_data_parse(const void *buf, size_t len, DpsData **ret, char **reterr_message);
/* Takes ownership of root (also on failure). */
int dps_data_from_json(struct json_object *root, DpsData **ret, char **reterr_message);
/* Like dps_data_parse on the file's content; messages are prefixed with the path. */
int dps_data_load(const char *path, DpsData **ret, char **reterr_message);
/* Pretty-printed JSON, replaced atomically with mode DPS_DATAFILE_MODE. */
int dps_data_save(const DpsData *d, const char *path);
int dps_data_format(const DpsData *d, char **ret);
DpsData *dps_data_free(DpsData *d);
static inline void dps_data_freep(DpsData **d) {
        if (*d)
                dps_data_free(*d);
}

/* Lookups (case-insensitive).  NULL when absent. */
const DpsEnrollment *dps_data_find_individual(const DpsData *d, const char *registration_id);
const DpsEnrollment *dps_data_find_group(const DpsData *d, const char *enrollment_group_id);
const DpsLinkedHub *dps_data_find_hub(const DpsData *d, const char *name);

/* Edits for the admin tools.  Each one validates the whole result and leaves d unchanged on
 * failure.  The add functions take ownership of the enrollment object (also on failure). */
int dps_data_set_id_scope(DpsData *d, const char *id_scope, char **reterr_message);
int dps_data_add_hub(DpsData *d, const char *name, unsigned weight, bool apply_allocation_policy,
                     char **reterr_message);
int dps_data_remove_hub(DpsData *d, const char *name, char **reterr_message);
int dps_data_add_individual(DpsData *d, struct json_object *enrollment, char **reterr_message);
int dps_data_add_group(DpsData *d, struct json_object *group, char **reterr_message);
int dps_data_remove_individual(DpsData *d, const char *registration_id, char **reterr_message);
int dps_data_remove_group(DpsData *d, const char *enrollment_group_id, char **reterr_message);

/* Generic edits for the admin API (src/dps/admin.c): create or replace (by name /
 * registrationId / enrollmentGroupId, case-insensitively) one entry of a list, or remove it.
 * The whole result is validated; d is unchanged on failure.  dps_data_put takes ownership of
 * object (also on failure).  -EEXIST: create of an existing entry; -ENOENT: update or remove
 * of a missing one; -EINVAL (with the field named): the result does not validate, e.g. a hub
 * still used by an enrollment. */
typedef enum DpsDataList {
        DPS_DATA_LINKED_HUBS,
        DPS_DATA_INDIVIDUAL_ENROLLMENTS,
        DPS_DATA_ENROLLMENT_GROUPS,
        _DPS_DATA_LIST_MAX,
        _DPS_DATA_LIST_INVALID = -EINVAL,
} DpsDataList;

typedef enum DpsDataPutMode {
        DPS_DATA_PUT_CREATE,
        DPS_DATA_PUT_UPDATE,
        DPS_DATA_PUT_ANY,
} DpsDataPutMode;

int dps_data_put(DpsData *d, DpsDataList list, struct json_object *object, DpsDataPutMode mode,
                 char **reterr_message);
int dps_data_remove(DpsData *d, DpsDataList list, const char *id, char **reterr_message);
/* The JSON object of an entry (borrowed from d's tree), NULL when absent. */
struct json_object *dps_data_find_json(const DpsData *d, DpsDataList list, const char *id);
/* A deep copy (for editing without touching d). */
int dps_data_copy(const DpsData *d, DpsData **ret);

/* Helpers shared with the admin tool. */
struct sockaddr_storage;
/* A numeric "IPv4:PORT" or "[IPv6]:PORT" (no name lookups: the service must never block);
 * either output may be NULL.  -EINVAL otherwise. */
int dps_probe_address_parse(const char *s, struct sockaddr_storage *ret_addr, unsigned *ret_len);
bool dps_hub_name_is_valid(const char *name);
bool dps_device_id_is_valid(const char *id);
/* 0 if s is base64 of DPS_SYMMETRIC_KEY_MIN..MAX bytes. */
int dps_symmetric_key_check(const char *s);
