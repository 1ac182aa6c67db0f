/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dps/latency.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"

typedef enum ProbeState {
        PROBE_UNKNOWN,
        PROBE_REACHABLE,
        PROBE_UNREACHABLE,
} ProbeState;

typedef struct Target {
        char *name;
        char *address;             /* as configured, to notice changes */
        struct sockaddr_storage addr;
        unsigned addr_len;
        int fd;                    /* a connect in progress, or -1 */
        uint64_t started;          /* of the connect in progress */
        uint64_t next_due;
        ProbeState state;
        uint64_t latency_usec;
} Target;

struct DpsLatency {
        Target *targets;
        size_t n_targets;
        uint64_t interval_usec;
        uint64_t timeout_usec;
};

int dps_latency_new(DpsLatency **ret) {
        if (!ret)
                return -EINVAL;
        DpsLatency *l = calloc(1, sizeof(DpsLatency));
        if (!l)
                return -ENOMEM;
        l->interval_usec = DPS_LATENCY_INTERVAL_USEC_DEFAULT;
        l->timeout_usec = DPS_LATENCY_TIMEOUT_USEC_DEFAULT;
        *ret = l;
        return 0;
}

static void target_done(Target *t) {
        if (t->fd >= 0)
                close(t->fd);
        free(t->name);
        free(t->address);
}

DpsLatency *dps_latency_free(DpsLatency *l) {
        if (!l)
                return NULL;
        for (size_t i = 0; i < l->n_targets; i++)
                target_done(l->targets + i);
        free(l->targets);
        free(l);
        return NULL;
}

void dps_latency_set_interval(DpsLatency *l, uint64_t interval_usec, uint64_t timeout_usec) {
        if (!l)
                return;
        if (interval_usec > 0)
                l->interval_usec = interval_usec;
        if (timeout_usec > 0)
                l->timeout_usec = timeout_usec;
}

size_t dps_latency_n_targets(const DpsLatency *l) {
        return l ? l->n_targets : 0;
}

static Target *find_target(const DpsLatency *l, const char *name) {
        for (size_t i = 0; l && i < l->n_targets; i++)
                if (l->targets[i].name && strcaseeq(l->targets[i].name, name)) /* NULL: moved by a sync */
                        return l->targets + i;
        return NULL;
}

int dps_latency_sync(DpsLatency *l, const DpsData *d) {
        Target *n;
        size_t k = 0;

        if (!l || !d)
                return -EINVAL;
        n = calloc(MAX(d->n_hubs, 1u), sizeof(Target));
        if (!n)
                return -ENOMEM;
        for (size_t i = 0; i < d->n_hubs; i++) {
                const DpsLinkedHub *h = d->hubs + i;
                Target *old = find_target(l, h->name);
                if (!h->probe_address)
                        continue;
                if (old && old->address && streq(old->address, h->probe_address)) {
                        n[k++] = *old; /* moved: the old one is cleared below */
                        *old = (Target) { .fd = -1 };
                        continue;
                }
                Target t = { .fd = -1 };
                t.name = strdup(h->name);
                t.address = strdup(h->probe_address);
                if (!t.name || !t.address || dps_probe_address_parse(h->probe_address, &t.addr, &t.addr_len) < 0) {
                        target_done(&t);
                        for (size_t j = 0; j < k; j++)
                                target_done(n + j);
                        free(n);
                        return -ENOMEM; /* the address was validated at load */
                }
                n[k++] = t;
        }
        for (size_t i = 0; i < l->n_targets; i++)
                target_done(l->targets + i);
        free(l->targets);
        l->targets = n;
        l->n_targets = k;
        return 0;
}

static void probe_finish(Target *t, bool ok, uint64_t now, const char *why) {
        uint64_t latency = now >= t->started ? now - t->started : 0;

        if (ok) {
                struct tcp_info ti = {};
                socklen_t len = sizeof(ti);
                /* the kernel's handshake RTT is exact; after a retransmitted SYN it does not
                 * count the lost time, so then the time seen here is the truth */
                if (getsockopt(t->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) >= 0 && ti.tcpi_total_retrans == 0 &&
                    ti.tcpi_rtt > 0)
                        latency = ti.tcpi_rtt;
        }
        if (ok && t->state != PROBE_REACHABLE)
                log_info("Hub '%s' is reachable at %s (TCP connect %llu µs).", t->name, t->address,
                         (unsigned long long) latency);
        else if (!ok && t->state != PROBE_UNREACHABLE)
                log_notice("Hub '%s' is not reachable at %s (%s): not used by the lowest-latency policy.", t->name,
                           t->address, why);
        else
                log_debug("Hub '%s': TCP connect %s %llu µs.", t->name, ok ? "in" : "failed after",
                          (unsigned long long) latency);
        t->state = ok ? PROBE_REACHABLE : PROBE_UNREACHABLE;
        if (ok)
                t->latency_usec = latency;
        close(t->fd);
        t->fd = -1;
}

int dps_latency_process(DpsLatency *l, uint64_t now) {
        struct pollfd pfd[DPS_LINKED_HUBS_MAX];
        Target *pt[DPS_LINKED_HUBS_MAX];
        size_t n = 0;

        if (!l)
                return -EINVAL;

        /* start due probes */
        for (size_t i = 0; i < l->n_targets; i++) {
                Target *t = l->targets + i;
                if (t->fd >= 0 || now < t->next_due)
                        continue;
                t->next_due = now + l->interval_usec;
                t->started = now;
                t->fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (t->fd < 0) {
                        log_warning_errno(errno, "Cannot create a socket to probe hub '%s': %m", t->name);
                        continue;
                }
                if (connect(t->fd, (const struct sockaddr *) &t->addr, t->addr_len) == 0)
                        probe_finish(t, true, now, NULL);
                else if (errno != EINPROGRESS)
                        probe_finish(t, false, now, strerror(errno));
        }

        /* collect finished ones, without waiting */
        for (size_t i = 0; i < l->n_targets && n < ELEMENTSOF(pfd); i++)
                if (l->targets[i].fd >= 0) {
                        pfd[n] = (struct pollfd) { .fd = l->targets[i].fd, .events = POLLOUT };
                        pt[n++] = l->targets + i;
                }
        if (n == 0)
                return 0;
        if (poll(pfd, n, 0) < 0)
                return errno == EINTR ? 0 : -errno;
        for (size_t i = 0; i < n; i++) {
                Target *t = pt[i];
                if (pfd[i].revents & (POLLOUT | POLLERR | POLLHUP)) {
                        int err = 0;
                        socklen_t len = sizeof(err);
                        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                                err = errno;
                        probe_finish(t, err == 0, now, err ? strerror(err) : NULL);
                } else if (now - t->started >= l->timeout_usec)
                        probe_finish(t, false, now, "timed out");
        }
        return 0;
}

int dps_latency_get(const DpsLatency *l, const char *hub, uint64_t *ret_usec) {
        const Target *t = find_target(l, hub);

        if (!t || t->state == PROBE_UNKNOWN)
                return -ENODATA;
        if (t->state == PROBE_UNREACHABLE)
                return -EHOSTUNREACH;
        if (ret_usec)
                *ret_usec = t->latency_usec;
        return 0;
}
