/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

/* Durable registration records of the local provisioning service (dps-protocol.md §2.7, §7.1
 * DeviceRegistrationState), in an SQLite database in WAL mode:
 *
 *  - one row per registration id (case-insensitive primary key): a lookup or an upsert is a
 *    B-tree operation, O(log n), and the cost of a registration does not depend on how many
 *    records exist (no file is rewritten as a whole, unlike the JSON enrollment file);
 *  - every change is its own transaction; WAL with synchronous=NORMAL makes a committed record
 *    survive the process being killed at any moment (kill -9: the WAL is in the page cache and
 *    is replayed by the next open); only an OS crash or power loss can lose the last commits;
 *  - several processes (the broker plugin, edgeprov-dpsctl, a future HTTPS front) can use the
 *    same file at once: readers never block the writer, and writers wait at most
 *    DPS_STORE_BUSY_TIMEOUT_MSEC for each other, so the broker is never stalled for long.
 *
 * All functions return 0 or -errno: -ENOENT (no such record), -EBUSY (locked longer than the
 * busy timeout), -EIO (any other SQLite error), -ENOMEM, -EINVAL. */

#define DPS_STORE_BUSY_TIMEOUT_MSEC 250

typedef struct DpsStore DpsStore;

typedef struct DpsRecord {
        char *registration_id;
        char *device_id;           /* NULL unless assigned */
        char *assigned_hub;        /* NULL unless assigned */
        char *initial_hub;         /* the hub of the first assignment */
        char *enrollment_group_id; /* NULL for an individual enrollment */
        char *status;              /* assigned | failed | disabled */
        char *substatus;           /* initialAssignment | deviceDataMigrated | deviceDataReset |
                                    * reprovisionedToInitialAssignment; NULL unless assigned */
        char *etag;
        char *initial_twin;        /* JSON text of the twin given to the device, or NULL */
        int64_t error_code;        /* 0 unless failed/disabled */
        char *error_message;
        uint64_t created_usec;
        uint64_t updated_usec;
} DpsRecord;

void dps_record_done(DpsRecord *r);

/* Creates the file (mode 0640) and the schema when needed. */
int dps_store_open(const char *path, DpsStore **ret, char **reterr_message);
DpsStore *dps_store_free(DpsStore *s);
static inline void dps_store_freep(DpsStore **s) {
        if (*s)
                dps_store_free(*s);
}

int dps_store_get(DpsStore *s, const char *registration_id, DpsRecord *ret);
int dps_store_put(DpsStore *s, const DpsRecord *r); /* insert or replace */
int dps_store_delete(DpsStore *s, const char *registration_id);
int dps_store_count(DpsStore *s, uint64_t *ret);

/* Operation records: the final answer of a register operation, so that a poll after a
 * restart of the broker, or through the other front, still finds it.  body NULL: the
 * operation is still assigning (custom allocation in flight).  Expired ones are removed by
 * dps_store_purge_operations() (oldest first, at most max per call: index on created_usec). */
typedef struct DpsOperationRecord {
        char *id;
        char *registration_id;
        uint64_t created_usec;
        char *body;
} DpsOperationRecord;

void dps_operation_record_done(DpsOperationRecord *op);
/* Stores r and/or op (either may be NULL); both in one transaction. */
int dps_store_put_operation(DpsStore *s, const DpsRecord *r, const DpsOperationRecord *op);
/* An explicit transaction around several puts (BEGIN IMMEDIATE … COMMIT). */
int dps_store_begin(DpsStore *s);
int dps_store_commit(DpsStore *s);
void dps_store_rollback(DpsStore *s); /* no-op outside a transaction */
static inline void dps_store_rollbackp(DpsStore **s) {
        if (*s)
                dps_store_rollback(*s);
}
int dps_store_get_operation(DpsStore *s, const char *id, DpsOperationRecord *ret);
int dps_store_purge_operations(DpsStore *s, uint64_t created_before_usec, unsigned max, unsigned *ret_n);

/* Calls cb for each record in registration id order; a negative return stops the walk and is
 * returned. */
typedef int (*DpsRecordFunc)(const DpsRecord *r, void *userdata);
int dps_store_foreach(DpsStore *s, DpsRecordFunc cb, void *userdata);
