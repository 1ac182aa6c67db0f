/* SPDX-License-Identifier: MIT */
/* The daemon's end of the process split (worker.h): starts edgeprov-worker when there is work
 * for it, stops it when there has been none for WORKER_LINGER_USEC, and passes messages. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/worker.h"
#include "edgeprov/json-util.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/time-util.h"

typedef struct QueuedEvent {
        struct QueuedEvent *next;
        struct json_object *ev;
} QueuedEvent;

static struct {
        sd_event *event;
        int fd, pidfd;
        pid_t pid;
        unsigned generation, holds;
        uint64_t next_id;
        sd_event_source *io, *child, *linger, *defer;
        QueuedEvent *queue_head, *queue_tail;
        WorkerEventHandler on_event;
        WorkerDiedHandler on_died;
        char last_error[256];
} w = { .fd = -1, .pidfd = -1 };

void worker_set_event(sd_event *e) {
        w.event = e;
}

void worker_set_handlers(WorkerEventHandler on_event, WorkerDiedHandler on_died) {
        w.on_event = on_event;
        w.on_died = on_died;
}

unsigned worker_generation(void) {
        return w.generation;
}

const char *worker_last_error(void) {
        return w.last_error[0] ? w.last_error : "the exchange helper is not running";
}

static void log_exit(pid_t pid, const siginfo_t *si) {
        if (si->si_code == CLD_EXITED && si->si_status == 0)
                log_debug("The exchange helper (PID %d) has stopped.", (int) pid);
        else if (si->si_code == CLD_EXITED)
                log_warning("The exchange helper (PID %d) exited with status %d.", (int) pid, si->si_status);
        else
                log_warning("The exchange helper (PID %d) was killed by signal %s.", (int) pid, strsignal(si->si_status));
}

/* Collects the worker if it has exited; with wait, gives it WORKER_STOP_MSEC (it exits when its
 * socket closes) and then kills it: a stuck helper must not hold up a stop. */
#define WORKER_STOP_MSEC 5000
static void reap(bool wait) {
        siginfo_t si = {};
        pid_t pid = w.pid;

        if (pid <= 0)
                return;
        if (waitid(P_PID, (id_t) pid, &si, WEXITED | WNOHANG) < 0)
                si.si_pid = pid; /* not our child any more: forget it */
        else if (si.si_pid == 0 && !wait)
                return;
        else if (si.si_pid == 0) {
                if (w.pidfd >= 0) {
                        struct pollfd p = { .fd = w.pidfd, .events = POLLIN };
                        (void) poll(&p, 1, WORKER_STOP_MSEC);
                } else
                        /* no pidfd (a kernel before 5.3): look every 10 ms */
                        for (unsigned i = 0; i < WORKER_STOP_MSEC / 10; i++) {
                                if (waitid(P_PID, (id_t) pid, &si, WEXITED | WNOHANG | WNOWAIT) >= 0 && si.si_pid)
                                        break;
                                (void) nanosleep(&(struct timespec) { .tv_nsec = 10 * 1000 * 1000 }, NULL);
                        }
                if (waitid(P_PID, (id_t) pid, &si, WEXITED | WNOHANG) >= 0 && si.si_pid == 0) {
                        log_warning("The exchange helper (PID %d) did not stop; killing it.", (int) pid);
                        (void) kill(pid, SIGKILL);
                        (void) waitid(P_PID, (id_t) pid, &si, WEXITED);
                }
        }
        if (si.si_pid == pid && si.si_code != 0)
                log_exit(pid, &si);
        w.pid = 0;
        w.child = sd_event_source_disable_unref(w.child);
        if (w.pidfd >= 0)
                close(w.pidfd);
        w.pidfd = -1;
}

/* Closes our end: the worker sees EOF and exits (its exchanges end with it). */
static void worker_close(void) {
        w.io = sd_event_source_disable_unref(w.io);
        w.linger = sd_event_source_disable_unref(w.linger);
        if (w.fd >= 0)
                close(w.fd);
        w.fd = -1;
}

static void worker_died(const char *fmt, ...) _printf_(1, 2);
static void worker_died(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(w.last_error, sizeof(w.last_error), fmt, ap);
        va_end(ap);
        log_warning("%s", w.last_error);
        worker_close();
        if (w.on_died)
                w.on_died(w.last_error);
}

static void dispatch(struct json_object *ev) {
        if (w.on_event)
                w.on_event(ev);
        json_object_put(ev);
}

static int on_defer(sd_event_source *s, void *userdata) {
        while (w.queue_head) {
                QueuedEvent *q = w.queue_head;
                w.queue_head = q->next;
                if (!w.queue_head)
                        w.queue_tail = NULL;
                struct json_object *ev = q->ev;
                free(q);
                dispatch(ev);
        }
        (void) sd_event_source_set_enabled(w.defer, SD_EVENT_OFF);
        return 0;
}

/* An event that arrived while a synchronous call waited for its reply: dispatched later from
 * the loop, never from inside the call. */
static void queue_event(struct json_object *ev) {
        QueuedEvent *q = calloc(1, sizeof(*q));
        if (!q || !w.event) {
                free(q);
                json_object_put(ev);
                return;
        }
        q->ev = ev;
        if (w.queue_tail)
                w.queue_tail->next = q;
        else
                w.queue_head = q;
        w.queue_tail = q;
        if (!w.defer && sd_event_add_defer(w.event, &w.defer, on_defer, NULL) < 0)
                return;
        (void) sd_event_source_set_enabled(w.defer, SD_EVENT_ONESHOT);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        unsigned gen = w.generation;

        for (;;) {
                struct json_object *m = NULL;
                int r = worker_recv(w.fd, MSG_DONTWAIT, &m);
                if (r == -EAGAIN)
                        return 0;
                if (r <= 0) {
                        worker_died(r == 0 ? "The exchange helper (PID %d) exited." :
                                             "The exchange helper (PID %d) sent an unreadable message; stopped it.",
                                    (int) w.pid);
                        return 0;
                }
                if (json_object_object_get_ex(m, "ev", NULL))
                        dispatch(m);
                else
                        json_object_put(m); /* the reply to a call that gave up waiting */
                if (w.fd < 0 || w.generation != gen)
                        return 0;
        }
}

static int on_child(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        pid_t pid = w.pid;

        reap(false);
        if (w.pid == pid)
                return 0; /* not yet */
        if (w.fd >= 0)
                worker_died("The exchange helper (PID %d) is gone.", (int) pid);
        (void) malloc_trim(0);
        return 0;
}

static int worker_spawn(void) {
        const char *path = worker_path();
        int sv[2], r;

        /* the previous helper, if it has not been collected: its socket is closed, so it is
         * exiting (or was killed); wait for it (bounded) rather than lose track of it */
        reap(true);
        if (access(path, X_OK) < 0) {
                r = -errno;
                snprintf(w.last_error, sizeof(w.last_error), "cannot run the exchange helper %s: %s", path,
                         strerror(-r));
                return log_error_errno(r, "Cannot run the exchange helper %s: %m", path);
        }
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return log_error_errno(errno, "Cannot create the exchange helper's socket: %m");
        pid_t pid = fork();
        if (pid < 0) {
                r = -errno;
                close(sv[0]);
                close(sv[1]);
                snprintf(w.last_error, sizeof(w.last_error), "cannot start the exchange helper: %s", strerror(-r));
                return log_error_errno(r, "Cannot start the exchange helper: %m");
        }
        if (pid == 0) {
                /* async-signal-safe calls only until execv */
                sigset_t none;
                /* ignored before unblocking (a SIGTERM already pending is dropped) and across
                 * execv: the helper ignores SIGTERM from its first instruction, so a unit stop
                 * right after the start ends it through the daemon too */
                (void) signal(SIGTERM, SIG_IGN);
                (void) signal(SIGINT, SIG_IGN);
                sigemptyset(&none);
                (void) sigprocmask(SIG_SETMASK, &none, NULL);
                (void) signal(SIGPIPE, SIG_DFL);
                if (dup2(sv[1], WORKER_FD) < 0)
                        _exit(126);
                if (sv[1] == WORKER_FD)
                        (void) fcntl(WORKER_FD, F_SETFD, 0);
                (void) syscall(SYS_close_range, WORKER_FD + 1, ~0U, 0);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                char *const argv[] = { (char *) "edgeprov-worker", NULL };
                execv(path, argv);
                _exit(127);
        }
        close(sv[1]);
        w.fd = sv[0];
        w.pid = pid;
        w.generation++;
        w.last_error[0] = 0;
        w.pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (w.event) {
                r = sd_event_add_io(w.event, &w.io, w.fd, EPOLLIN, on_io, NULL);
                if (r >= 0 && w.pidfd >= 0)
                        r = sd_event_add_io(w.event, &w.child, w.pidfd, EPOLLIN, on_child, NULL);
                if (r < 0) {
                        worker_close();
                        reap(true);
                        return log_error_errno(r, "Cannot watch the exchange helper: %m");
                }
        }
        log_debug("Started the exchange helper %s (PID %d).", path, (int) pid);
        return 0;
}

static int worker_ensure(void) {
        if (w.fd >= 0)
                return 0;
        return worker_spawn();
}

static int on_linger(sd_event_source *s, uint64_t usec, void *userdata) {
        w.linger = sd_event_source_disable_unref(w.linger);
        if (w.holds > 0 || w.fd < 0)
                return 0;
        log_debug("No work for the exchange helper (PID %d); stopping it.", (int) w.pid);
        worker_close(); /* on_child reaps it and trims the heap (without a pidfd: the next start
                         * or the daemon's stop does) */
        return 0;
}

void worker_hold(void) {
        w.holds++;
        w.linger = sd_event_source_disable_unref(w.linger);
}

void worker_release(void) {
        if (w.holds == 0)
                return;
        if (--w.holds > 0 || w.fd < 0 || !w.event)
                return;
        if (sd_event_add_time_relative(w.event, &w.linger, CLOCK_MONOTONIC, WORKER_LINGER_USEC, 100 * 1000,
                                       on_linger, NULL) < 0)
                w.linger = NULL;
}

bool worker_running(void) {
        return w.fd >= 0;
}

int worker_send(struct json_object *msg) {
        int r = worker_ensure();
        if (r >= 0) {
                r = worker_send_fd(w.fd, msg);
                if (r < 0 && r != -E2BIG)
                        worker_died("Cannot talk to the exchange helper (PID %d): %s.", (int) w.pid, strerror(-r));
        }
        json_object_put(msg);
        return r;
}

int worker_call(const char *method, struct json_object *args, struct json_object **ret_reply) {
        uint64_t id = ++w.next_id, deadline;
        int r;

        if (!args)
                return -ENOMEM;
        r = json_add(args, "id", json_object_new_int64((int64_t) id));
        if (r >= 0)
                r = json_add_string(args, "m", method);
        if (r < 0) {
                json_object_put(args);
                return r;
        }
        r = worker_send(args);
        if (r < 0)
                return r;

        deadline = clock_now_usec(CLOCK_MONOTONIC) + (uint64_t) WORKER_CALL_TIMEOUT_MSEC * 1000;
        while (w.fd >= 0) {
                uint64_t now = clock_now_usec(CLOCK_MONOTONIC);
                if (now >= deadline) {
                        worker_died("The exchange helper (PID %d) did not answer '%s' within %d s; stopped it.",
                                    (int) w.pid, method, WORKER_CALL_TIMEOUT_MSEC / 1000);
                        if (w.pid > 0)
                                (void) kill(w.pid, SIGKILL);
                        return -ETIMEDOUT;
                }
                struct pollfd p = { .fd = w.fd, .events = POLLIN };
                r = poll(&p, 1, (int) ((deadline - now + 999) / 1000));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        continue;
                struct json_object *m = NULL;
                r = worker_recv(w.fd, MSG_DONTWAIT, &m);
                if (r == -EAGAIN)
                        continue;
                if (r <= 0) {
                        worker_died(r == 0 ? "The exchange helper (PID %d) exited during '%s'." :
                                             "The exchange helper (PID %d) sent an unreadable reply to '%s'; stopped it.",
                                    (int) w.pid, method);
                        return -ECONNRESET;
                }
                if (json_object_object_get_ex(m, "ev", NULL)) {
                        queue_event(m);
                        continue;
                }
                struct json_object *v;
                if (!json_object_object_get_ex(m, "id", &v) || (uint64_t) json_object_get_int64(v) != id) {
                        json_object_put(m);
                        continue;
                }
                r = json_object_object_get_ex(m, "r", &v) ? json_object_get_int(v) : -EBADMSG;
                *ret_reply = m; /* also with an error: it may describe it */
                return r;
        }
        return -ECONNRESET;
}

void worker_shutdown(void) {
        w.defer = sd_event_source_disable_unref(w.defer);
        while (w.queue_head) {
                QueuedEvent *q = w.queue_head;
                w.queue_head = q->next;
                json_object_put(q->ev);
                free(q);
        }
        w.queue_tail = NULL;
        worker_close();
        reap(true);
        w.event = NULL;
        w.holds = 0;
}
