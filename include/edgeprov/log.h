/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

#include "edgeprov/macro.h"

/* Where log lines go.  LOG_TARGET_AUTO picks the journal when stderr is connected to it
 * ($JOURNAL_STREAM) and the console otherwise.  The environment variable LOG_TARGET
 * (console|journal|auto) and LOG_LEVEL (debug|info|notice|warning|err) override the defaults. */
typedef enum LogTarget {
        LOG_TARGET_AUTO,
        LOG_TARGET_CONSOLE,
        LOG_TARGET_JOURNAL,
        LOG_TARGET_CUSTOM,
        _LOG_TARGET_MAX,
} LogTarget;

/* A custom sink (the mosquitto plugin routes everything to mosquitto_log_printf). */
typedef void (*LogSink)(int level, const char *message);

void log_setup(const char *ident);
void log_set_target(LogTarget t);
void log_set_sink(LogSink sink);
void log_set_max_level(int level);
int log_get_max_level(void);
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

/* Log a message. Returns -abs(error) so that callers can write
 *      return log_error_errno(r, "Failed to frobnicate: %m");
 * %m in the format expands to strerror(error). */
int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...)
        _printf_(6, 7);

/* Structured log entry: extra journal fields are passed as a NULL-terminated list of
 * "KEY=value" strings.  On the console the fields are appended in brackets. */
int log_struct_internal(int level, int error, const char *file, int line, const char *func,
                        const char *const *fields, const char *format, ...) _printf_(7, 8);

#define log_full_errno(level, error, ...) \
        log_internal((level), (error), __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_full(level, ...) log_full_errno((level), 0, __VA_ARGS__)

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_notice_errno(e, ...) log_full_errno(LOG_NOTICE, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, (e), __VA_ARGS__)

#define log_oom() log_error_errno(ENOMEM, "Out of memory.")

/* Formats one journal field "KEY=value" into buf (value NULL → empty). */
static inline void log_field(char *buf, size_t size, const char *key, const char *value) {
        snprintf(buf, size, "%s=%s", key, value ?: "");
}

/* log_struct(LOG_INFO, STRV("MESSAGE_ID=...", field), "Gateway assigned to %s", hub) */
#define STRV(...) ((const char *const[]) { __VA_ARGS__, NULL })
#define log_struct(level, fields, ...) \
        log_struct_internal((level), 0, __FILE__, __LINE__, __func__, (fields), __VA_ARGS__)
#define log_struct_errno(level, error, fields, ...) \
        log_struct_internal((level), (error), __FILE__, __LINE__, __func__, (fields), __VA_ARGS__)
