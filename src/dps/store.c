/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "dps/store.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"

#define SCHEMA_VERSION 1

struct DpsStore {
        sqlite3 *db;
        sqlite3_stmt *get;
        sqlite3_stmt *put;
        sqlite3_stmt *del;
        sqlite3_stmt *count;
        sqlite3_stmt *begin;
        sqlite3_stmt *commit;
        sqlite3_stmt *rollback;
        sqlite3_stmt *op_put;
        sqlite3_stmt *op_get;
        sqlite3_stmt *op_purge;
};

#define COLUMNS                                                                                             \
        "registration_id, device_id, assigned_hub, initial_hub, enrollment_group_id, status, substatus, " \
        "etag, initial_twin, error_code, error_message, created_usec, updated_usec"

static int sqlite_to_errno(int rc) {
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_DONE:
        case SQLITE_ROW:
                return 0;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_CANTOPEN:
        case SQLITE_PERM:
        case SQLITE_READONLY:
                return -EACCES;
        default:
                return -EIO;
        }
}

void dps_record_done(DpsRecord *r) {
        if (!r)
                return;
        free(r->registration_id);
        free(r->device_id);
        free(r->assigned_hub);
        free(r->initial_hub);
        free(r->enrollment_group_id);
        free(r->status);
        free(r->substatus);
        free(r->etag);
        free(r->initial_twin);
        free(r->error_message);
        *r = (DpsRecord) {};
}

DpsStore *dps_store_free(DpsStore *s) {
        if (!s)
                return NULL;
        sqlite3_finalize(s->get);
        sqlite3_finalize(s->put);
        sqlite3_finalize(s->del);
        sqlite3_finalize(s->count);
        sqlite3_finalize(s->begin);
        sqlite3_finalize(s->commit);
        sqlite3_finalize(s->rollback);
        sqlite3_finalize(s->op_put);
        sqlite3_finalize(s->op_get);
        sqlite3_finalize(s->op_purge);
        sqlite3_close_v2(s->db);
        free(s);
        return NULL;
}

static int fail(char **reterr, int r, sqlite3 *db, const char *what) {
        if (reterr)
                (void) asprintf(reterr, "%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(r));
        return sqlite_to_errno(r) ?: -EIO;
}

int dps_store_open(const char *path, DpsStore **ret, char **reterr_message) {
        _cleanup_(dps_store_freep) DpsStore *s = NULL;
        int rc;

        if (!path || !ret)
                return -EINVAL;

        /* create it with our mode; SQLite would use 0644 */
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0) {
                int r = -errno;
                if (reterr_message)
                        (void) asprintf(reterr_message, "%s: %s", path, strerror(-r));
                return r;
        }
        close(fd);

        s = calloc(1, sizeof(DpsStore));
        if (!s)
                return -ENOMEM;

        rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK)
                return fail(reterr_message, rc, s->db, path);
        sqlite3_busy_timeout(s->db, DPS_STORE_BUSY_TIMEOUT_MSEC);

        static const char *const setup =
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                "PRAGMA foreign_keys=OFF;"
                "CREATE TABLE IF NOT EXISTS registrations ("
                " registration_id TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,"
                " device_id TEXT, assigned_hub TEXT, initial_hub TEXT, enrollment_group_id TEXT,"
                " status TEXT NOT NULL, substatus TEXT, etag TEXT NOT NULL, initial_twin TEXT,"
                " error_code INTEGER NOT NULL DEFAULT 0, error_message TEXT,"
                " created_usec INTEGER NOT NULL, updated_usec INTEGER NOT NULL"
                ") WITHOUT ROWID;"
                /* operation records (version 2): what a poll answers, until they expire */
                "CREATE TABLE IF NOT EXISTS operations ("
                " id TEXT NOT NULL PRIMARY KEY, registration_id TEXT NOT NULL COLLATE NOCASE,"
                " created_usec INTEGER NOT NULL, body TEXT"
                ") WITHOUT ROWID;"
                "CREATE INDEX IF NOT EXISTS operations_by_age ON operations (created_usec);"
                "PRAGMA user_version=2;";
        char *err = NULL;
        rc = sqlite3_exec(s->db, setup, NULL, NULL, &err);
        if (rc != SQLITE_OK) {
                if (reterr_message)
                        (void) asprintf(reterr_message, "%s: %s", path, err ?: sqlite3_errstr(rc));
                sqlite3_free(err);
                return sqlite_to_errno(rc) ?: -EIO;
        }

        struct {
                sqlite3_stmt **stmt;
                const char *sql;
        } stmts[] = {
                { &s->get, "SELECT " COLUMNS " FROM registrations WHERE registration_id = ?1" },
                { &s->put, "INSERT OR REPLACE INTO registrations (" COLUMNS ") VALUES "
                           "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)" },
                { &s->del, "DELETE FROM registrations WHERE registration_id = ?1" },
                { &s->count, "SELECT count(*) FROM registrations" },
                { &s->begin, "BEGIN IMMEDIATE" },
                { &s->commit, "COMMIT" },
                { &s->rollback, "ROLLBACK" },
                { &s->op_put, "INSERT OR REPLACE INTO operations (id, registration_id, created_usec, body) "
                              "VALUES (?1, ?2, ?3, ?4)" },
                { &s->op_get, "SELECT registration_id, created_usec, body FROM operations WHERE id = ?1" },
                { &s->op_purge, "DELETE FROM operations WHERE id IN (SELECT id FROM operations WHERE "
                                "created_usec < ?1 ORDER BY created_usec LIMIT ?2)" },
        };
        for (size_t i = 0; i < ELEMENTSOF(stmts); i++) {
                rc = sqlite3_prepare_v3(s->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, stmts[i].stmt, NULL);
                if (rc != SQLITE_OK)
                        return fail(reterr_message, rc, s->db, path);
        }

        *ret = TAKE_PTR(s);
        return 0;
}

static int column_strdup(sqlite3_stmt *st, int i, char **ret) {
        const unsigned char *t = sqlite3_column_text(st, i);
        if (!t) {
                *ret = NULL;
                return sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_NOMEM ? -ENOMEM : 0;
        }
        *ret = strdup((const char *) t);
        return *ret ? 0 : -ENOMEM;
}

static int read_row(sqlite3_stmt *st, DpsRecord *ret) {
        DpsRecord r = {};
        char **strings[] = { &r.registration_id, &r.device_id, &r.assigned_hub, &r.initial_hub,
                             &r.enrollment_group_id, &r.status, &r.substatus, &r.etag, &r.initial_twin };

        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                if (column_strdup(st, (int) i, strings[i]) < 0) {
                        dps_record_done(&r);
                        return -ENOMEM;
                }
        r.error_code = sqlite3_column_int64(st, 9);
        if (column_strdup(st, 10, &r.error_message) < 0) {
                dps_record_done(&r);
                return -ENOMEM;
        }
        r.created_usec = (uint64_t) sqlite3_column_int64(st, 11);
        r.updated_usec = (uint64_t) sqlite3_column_int64(st, 12);
        if (!r.registration_id || !r.status || !r.etag) {
                dps_record_done(&r);
                return -EIO;
        }
        *ret = r;
        return 0;
}

int dps_store_get(DpsStore *s, const char *registration_id, DpsRecord *ret) {
        int rc, r;

        if (!s || !registration_id || !ret)
                return -EINVAL;
        sqlite3_reset(s->get);
        rc = sqlite3_bind_text(s->get, 1, registration_id, -1, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return sqlite_to_errno(rc);
        rc = sqlite3_step(s->get);
        if (rc == SQLITE_DONE)
                r = -ENOENT;
        else if (rc == SQLITE_ROW)
                r = read_row(s->get, ret);
        else
                r = sqlite_to_errno(rc) ?: -EIO;
        sqlite3_reset(s->get);
        sqlite3_clear_bindings(s->get);
        return r;
}

static int bind_text(sqlite3_stmt *st, int i, const char *v) {
        return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static int record_put(DpsStore *s, const DpsRecord *r) {
        int rc = SQLITE_OK;

        sqlite3_stmt *st = s->put;
        sqlite3_reset(st);
        const char *strings[] = { r->registration_id, r->device_id, r->assigned_hub, r->initial_hub,
                                  r->enrollment_group_id, r->status, r->substatus, r->etag, r->initial_twin };
        for (size_t i = 0; i < ELEMENTSOF(strings) && rc == SQLITE_OK; i++)
                rc = bind_text(st, (int) i + 1, strings[i]);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 10, r->error_code);
        if (rc == SQLITE_OK)
                rc = bind_text(st, 11, r->error_message);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 12, (sqlite3_int64) r->created_usec);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 13, (sqlite3_int64) r->updated_usec);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE) {
                log_error("Failed to store the registration record of '%s': %s", r->registration_id,
                          sqlite3_errstr(rc));
                return sqlite_to_errno(rc) ?: -EIO;
        }
        return 0;
}

int dps_store_delete(DpsStore *s, const char *registration_id) {
        int rc;

        if (!s || !registration_id)
                return -EINVAL;
        sqlite3_reset(s->del);
        rc = sqlite3_bind_text(s->del, 1, registration_id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(s->del);
        int changes = sqlite3_changes(s->db);
        sqlite3_reset(s->del);
        sqlite3_clear_bindings(s->del);
        if (rc != SQLITE_DONE)
                return sqlite_to_errno(rc) ?: -EIO;
        return changes > 0 ? 0 : -ENOENT;
}

int dps_store_count(DpsStore *s, uint64_t *ret) {
        int rc;

        if (!s || !ret)
                return -EINVAL;
        sqlite3_reset(s->count);
        rc = sqlite3_step(s->count);
        if (rc != SQLITE_ROW) {
                sqlite3_reset(s->count);
                return sqlite_to_errno(rc) ?: -EIO;
        }
        *ret = (uint64_t) sqlite3_column_int64(s->count, 0);
        sqlite3_reset(s->count);
        return 0;
}

int dps_store_foreach(DpsStore *s, DpsRecordFunc cb, void *userdata) {
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        if (!s || !cb)
                return -EINVAL;
        rc = sqlite3_prepare_v2(s->db, "SELECT " COLUMNS " FROM registrations ORDER BY registration_id", -1, &st,
                                NULL);
        if (rc != SQLITE_OK)
                return sqlite_to_errno(rc) ?: -EIO;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                DpsRecord rec;
                r = read_row(st, &rec);
                if (r < 0)
                        break;
                r = cb(&rec, userdata);
                dps_record_done(&rec);
                if (r < 0)
                        break;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = sqlite_to_errno(rc) ?: -EIO;
        sqlite3_finalize(st);
        return r < 0 ? r : 0;
}

int dps_store_put(DpsStore *s, const DpsRecord *r) {
        if (!s || !r || !r->registration_id || !r->status || !r->etag)
                return -EINVAL;
        return record_put(s, r);
}

static int step_once(sqlite3_stmt *st) {
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sqlite_to_errno(rc) ?: -EIO;
}

static int operation_put(DpsStore *s, const DpsOperationRecord *op) {
        sqlite3_stmt *st = s->op_put;
        int rc;

        sqlite3_reset(st);
        rc = sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 2, op->registration_id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 3, (sqlite3_int64) op->created_usec);
        if (rc == SQLITE_OK)
                rc = op->body ? sqlite3_bind_text(st, 4, op->body, -1, SQLITE_STATIC) : sqlite3_bind_null(st, 4);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE) {
                log_error("Failed to store operation %s: %s", op->id, sqlite3_errstr(rc));
                return sqlite_to_errno(rc) ?: -EIO;
        }
        return 0;
}

int dps_store_put_operation(DpsStore *s, const DpsRecord *r, const DpsOperationRecord *op) {
        int k;

        if (!s || (!r && !op))
                return -EINVAL;
        if (r && (!r->registration_id || !r->status || !r->etag))
                return -EINVAL;
        if (op && (!op->id || !op->registration_id))
                return -EINVAL;
        if (!r)
                return operation_put(s, op);
        if (!op)
                return record_put(s, r);

        /* both in one transaction: one commit, and never a result without its record */
        k = step_once(s->begin);
        if (k < 0)
                return k;
        k = record_put(s, r);
        if (k >= 0)
                k = operation_put(s, op);
        if (k >= 0)
                k = step_once(s->commit);
        if (k < 0)
                (void) step_once(s->rollback);
        return k;
}

int dps_store_begin(DpsStore *s) {
        return s ? step_once(s->begin) : -EINVAL;
}

int dps_store_commit(DpsStore *s) {
        return s ? step_once(s->commit) : -EINVAL;
}

void dps_store_rollback(DpsStore *s) {
        if (s && !sqlite3_get_autocommit(s->db))
                (void) step_once(s->rollback);
}

void dps_operation_record_done(DpsOperationRecord *op) {
        if (!op)
                return;
        free(op->id);
        free(op->registration_id);
        free(op->body);
        *op = (DpsOperationRecord) {};
}

int dps_store_get_operation(DpsStore *s, const char *id, DpsOperationRecord *ret) {
        DpsOperationRecord op = {};
        int rc, r;

        if (!s || !id || !ret)
                return -EINVAL;
        sqlite3_reset(s->op_get);
        rc = sqlite3_bind_text(s->op_get, 1, id, -1, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return sqlite_to_errno(rc);
        rc = sqlite3_step(s->op_get);
        if (rc == SQLITE_DONE)
                r = -ENOENT;
        else if (rc == SQLITE_ROW) {
                op.id = strdup(id);
                r = op.id ? column_strdup(s->op_get, 0, &op.registration_id) : -ENOMEM;
                op.created_usec = (uint64_t) sqlite3_column_int64(s->op_get, 1);
                if (r >= 0)
                        r = column_strdup(s->op_get, 2, &op.body);
                if (r >= 0 && !op.registration_id)
                        r = -EIO;
        } else
                r = sqlite_to_errno(rc) ?: -EIO;
        sqlite3_reset(s->op_get);
        sqlite3_clear_bindings(s->op_get);
        if (r < 0) {
                dps_operation_record_done(&op);
                return r;
        }
        *ret = op;
        return 0;
}

int dps_store_purge_operations(DpsStore *s, uint64_t created_before_usec, unsigned max, unsigned *ret_n) {
        int rc;

        if (!s)
                return -EINVAL;
        sqlite3_reset(s->op_purge);
        rc = sqlite3_bind_int64(s->op_purge, 1, (sqlite3_int64) MIN(created_before_usec, (uint64_t) INT64_MAX));
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(s->op_purge, 2, (int) MIN(max, (unsigned) INT32_MAX));
        if (rc == SQLITE_OK)
                rc = sqlite3_step(s->op_purge);
        int changes = sqlite3_changes(s->db);
        sqlite3_reset(s->op_purge);
        sqlite3_clear_bindings(s->op_purge);
        if (rc != SQLITE_DONE)
                return sqlite_to_errno(rc) ?: -EIO;
        if (ret_n)
                *ret_n = (unsigned) MAX(changes, 0);
        return 0;
}
