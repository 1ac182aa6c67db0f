/* SPDX-License-Identifier: MIT */
#include "edgeprov/time-util.h"

uint64_t clock_now_usec(clockid_t clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                return 0;
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}
