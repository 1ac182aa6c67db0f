/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <time.h>

#include "edgeprov/log.h"
#include "edgeprov/time-util.h"
#include "lib/log-internal.h"

static const char *log_ident = "edgeprov";
static LogTarget log_target = LOG_TARGET_AUTO;
static LogSink log_sink = NULL;
static int log_max_level = LOG_INFO;
static int log_resolved = -1; /* resolved target, -1 = not yet */

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit",  [LOG_ERR] = "err",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

int log_level_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (streq(s, level_names[i]))
                        return (int) i;
        if (streq(s, "error"))
                return LOG_ERR;
        if (streq(s, "warn"))
                return LOG_WARNING;
        return -EINVAL;
}

const char *log_level_to_string(int level) {
        if (level < 0 || (size_t) level >= ELEMENTSOF(level_names))
                return NULL;
        return level_names[level];
}

/* stderr is connected to the journal if $JOURNAL_STREAM names its device and inode. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

static LogTarget resolve_target(void) {
        if (log_resolved >= 0)
                return (LogTarget) log_resolved;
        LogTarget t = log_target;
        if (t == LOG_TARGET_AUTO)
                t = stderr_is_journal() ? LOG_TARGET_JOURNAL : LOG_TARGET_CONSOLE;
        log_resolved = (int) t;
        return t;
}

void log_setup(const char *ident) {
        const char *e;

        if (ident)
                log_ident = ident;
        e = getenv("LOG_TARGET");
        if (e) {
                if (streq(e, "console"))
                        log_target = LOG_TARGET_CONSOLE;
                else if (streq(e, "journal"))
                        log_target = LOG_TARGET_JOURNAL;
                else
                        log_target = LOG_TARGET_AUTO;
        }
        e = getenv("LOG_LEVEL");
        if (e) {
                int l = log_level_from_string(e);
                if (l >= 0)
                        log_max_level = l;
        }
        log_resolved = -1;
}

void log_set_target(LogTarget t) {
        log_target = t;
        log_resolved = -1;
}

void log_set_sink(LogSink sink) {
        log_sink = sink;
        log_target = sink ? LOG_TARGET_CUSTOM : LOG_TARGET_AUTO;
        log_resolved = -1;
}

void log_set_max_level(int level) {
        if (level >= LOG_EMERG && level <= LOG_DEBUG)
                log_max_level = level;
}

int log_get_max_level(void) {
        return log_max_level;
}

/* Expands %m to strerror(error) since errno may have changed by now. */
static void format_message(char *buf, size_t size, int error, const char *format, va_list ap) {
        char fmt[1024];
        size_t j = 0;

        for (const char *p = format; *p && j + 1 < sizeof(fmt); p++) {
                if (p[0] == '%' && p[1] == '%') {
                        if (j + 2 >= sizeof(fmt))
                                break;
                        fmt[j++] = '%';
                        fmt[j++] = '%';
                        p++;
                } else if (p[0] == '%' && p[1] == 'm') {
                        const char *e = strerror(error);
                        for (; *e && j + 1 < sizeof(fmt); e++) {
                                if (*e == '%') {
                                        if (j + 2 >= sizeof(fmt))
                                                break;
                                        fmt[j++] = '%';
                                }
                                fmt[j++] = *e;
                        }
                        p++;
                } else
                        fmt[j++] = *p;
        }
        fmt[j] = 0;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        (void) vsnprintf(buf, size, fmt, ap);
#pragma GCC diagnostic pop
}

static void emit(int level, int error, const char *file, int line, const char *func,
                 const char *const *fields, const char *message) {
        switch (resolve_target()) {
        case LOG_TARGET_CUSTOM:
                if (log_sink) {
                        log_sink(level, message);
                        return;
                }
                _fallthrough_;
        case LOG_TARGET_CONSOLE:
        case LOG_TARGET_AUTO:
        case _LOG_TARGET_MAX: {
                char extra[1024] = "";
                size_t n = 0;
                for (const char *const *f = fields; f && *f; f++) {
                        if (startswith(*f, "MESSAGE_ID="))
                                continue;
                        int k = snprintf(extra + n, sizeof(extra) - n, "%s%s", n ? " " : " [", *f);
                        if (k < 0 || (size_t) k >= sizeof(extra) - n)
                                break;
                        n += (size_t) k;
                }
                if (n > 0 && n + 1 < sizeof(extra)) {
                        extra[n++] = ']';
                        extra[n] = 0;
                }
                fprintf(stderr, "%s[%d]: %s%s%s\n", log_ident, (int) getpid(),
                        level <= LOG_ERR ? "error: " : level == LOG_WARNING ? "warning: " : "", message, extra);
                return;
        }
        case LOG_TARGET_JOURNAL: {
                struct iovec iov[32];
                char buf[6][256];
                size_t n = 0;
                _cleanup_free_ char *msg = NULL;

                if (asprintf(&msg, "MESSAGE=%s", message) < 0)
                        return;
                iov[n++] = (struct iovec) { msg, strlen(msg) };
                snprintf(buf[0], sizeof(buf[0]), "PRIORITY=%d", level);
                iov[n++] = (struct iovec) { buf[0], strlen(buf[0]) };
                snprintf(buf[1], sizeof(buf[1]), "SYSLOG_IDENTIFIER=%s", log_ident);
                iov[n++] = (struct iovec) { buf[1], strlen(buf[1]) };
                snprintf(buf[2], sizeof(buf[2]), "CODE_FILE=%s", file);
                iov[n++] = (struct iovec) { buf[2], strlen(buf[2]) };
                snprintf(buf[3], sizeof(buf[3]), "CODE_LINE=%d", line);
                iov[n++] = (struct iovec) { buf[3], strlen(buf[3]) };
                snprintf(buf[4], sizeof(buf[4]), "CODE_FUNC=%s", func);
                iov[n++] = (struct iovec) { buf[4], strlen(buf[4]) };
                if (error != 0) {
                        snprintf(buf[5], sizeof(buf[5]), "ERRNO=%d", error);
                        iov[n++] = (struct iovec) { buf[5], strlen(buf[5]) };
                }
                for (const char *const *f = fields; f && *f && n < ELEMENTSOF(iov); f++)
                        iov[n++] = (struct iovec) { (void *) *f, strlen(*f) };
                (void) sd_journal_sendv(iov, (int) n);
                return;
        }
        }
}

/* Rate limit of repeated identical messages (see log-internal.h): a small fixed table, no
 * allocation, CLOCK_MONOTONIC unless a test replaced the clock. */
typedef struct RateSlot {
        bool used;
        int level;
        const char *file;
        int line;
        const char *func;
        uint64_t hash;
        uint64_t window_start;
        unsigned count;
        unsigned suppressed;
        char text[LOG_RATELIMIT_TEXT_MAX];
} RateSlot;

static RateSlot rate_slots[LOG_RATELIMIT_SLOTS];
static LogClock rate_clock = NULL;


static uint64_t text_hash(const char *s) {
        uint64_t h = 14695981039346656037ULL; /* FNV-1a */
        for (; *s; s++) {
                h ^= (unsigned char) *s;
                h *= 1099511628211ULL;
        }
        return h;
}

static void rate_slot_release(RateSlot *slot) {
        if (slot->used && slot->suppressed > 0) {
                char msg[LOG_RATELIMIT_TEXT_MAX + 64];

                (void) snprintf(msg, sizeof(msg), "Suppressed %u similar message%s: %s", slot->suppressed,
                                slot->suppressed == 1 ? "" : "s", slot->text);
                emit(slot->level, 0, slot->file, slot->line, slot->func, NULL, msg);
        }
        *slot = (RateSlot) {};
}

void log_ratelimit_reset(void) {
        for (size_t i = 0; i < ELEMENTSOF(rate_slots); i++)
                rate_slots[i] = (RateSlot) {};
}

void log_ratelimit_flush(void) {
        for (size_t i = 0; i < ELEMENTSOF(rate_slots); i++)
                rate_slot_release(&rate_slots[i]);
}

void log_test_set_clock(LogClock clock) {
        rate_clock = clock;
        log_ratelimit_reset();
}

/* Returns true if the message may be emitted now.  Emits the summaries of windows that ended. */
static bool ratelimit_pass(int level, const char *file, int line, const char *func, const char *message) {
        uint64_t now = rate_clock ? rate_clock() : clock_now_usec(CLOCK_MONOTONIC);
        uint64_t h = text_hash(message);
        RateSlot *free_slot = NULL, *oldest = NULL;

        for (size_t i = 0; i < ELEMENTSOF(rate_slots); i++) {
                RateSlot *s = &rate_slots[i];
                if (s->used && now - s->window_start >= LOG_RATELIMIT_INTERVAL_USEC)
                        rate_slot_release(s);
        }
        for (size_t i = 0; i < ELEMENTSOF(rate_slots); i++) {
                RateSlot *s = &rate_slots[i];
                if (!s->used) {
                        if (!free_slot)
                                free_slot = s;
                        continue;
                }
                if (s->level == level && s->line == line && s->hash == h && streq(s->file, file)) {
                        if (s->count < LOG_RATELIMIT_BURST) {
                                s->count++;
                                return true;
                        }
                        if (s->suppressed < UINT_MAX)
                                s->suppressed++;
                        return false;
                }
                if (!oldest || s->window_start < oldest->window_start)
                        oldest = s;
        }
        if (!free_slot) {
                rate_slot_release(oldest);
                free_slot = oldest;
        }
        *free_slot = (RateSlot) {
                .used = true,
                .level = level,
                .file = file,
                .line = line,
                .func = func,
                .hash = h,
                .window_start = now,
                .count = 1,
        };
        size_t len = strnlen(message, sizeof(free_slot->text) - 1);
        memcpy(free_slot->text, message, len);
        free_slot->text[len] = 0;
        return true;
}

static int log_dispatch(int level, int error, const char *file, int line, const char *func,
                        const char *const *fields, const char *format, va_list ap) {
        char message[2048];

        error = abs(error);
        if (level > log_max_level)
                return -error;
        format_message(message, sizeof(message), error, format, ap);
        if (level < LOG_DEBUG && !ratelimit_pass(level, file, line, func, message))
                return -error;
        emit(level, error, file, line, func, fields, message);
        return -error;
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = log_dispatch(level, error, file, line, func, NULL, format, ap);
        va_end(ap);
        return r;
}

int log_struct_internal(int level, int error, const char *file, int line, const char *func,
                        const char *const *fields, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = log_dispatch(level, error, file, line, func, fields, format, ap);
        va_end(ap);
        return r;
}
