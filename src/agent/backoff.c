/* SPDX-License-Identifier: MIT */
#include "agent/backoff.h"
#include "edgeprov/codec.h"

#define USEC_PER_SEC ((uint64_t) 1000000)

void backoff_init(Backoff *b, uint64_t initial_usec, uint64_t max_usec) {
        b->initial_usec = initial_usec > 0 ? initial_usec : USEC_PER_SEC;
        b->max_usec = max_usec >= b->initial_usec ? max_usec : b->initial_usec;
        b->attempt = 0;
}

void backoff_reset(Backoff *b) {
        b->attempt = 0;
}

uint64_t backoff_ceiling(const Backoff *b) {
        uint64_t c = b->initial_usec;
        for (unsigned i = 0; i < b->attempt && c < b->max_usec; i++)
                c *= 2;
        return c < b->max_usec ? c : b->max_usec;
}

uint64_t backoff_next_with(Backoff *b, uint64_t random_value) {
        uint64_t ceiling = backoff_ceiling(b);
        uint64_t floor = (b->initial_usec < USEC_PER_SEC ? b->initial_usec : USEC_PER_SEC) / 2;

        if (b->attempt < 64)
                b->attempt++;
        if (ceiling <= floor)
                return floor;
        return floor + random_value % (ceiling - floor + 1);
}

uint64_t backoff_next(Backoff *b) {
        uint64_t v = 0;
        if (random_bytes(&v, sizeof(v)) < 0)
                v = (uint64_t) b->attempt * 7919u; /* never fails in practice; stay deterministic */
        return backoff_next_with(b, v);
}
