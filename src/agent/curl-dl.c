/* SPDX-License-Identifier: MIT */
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent/curl-dl.h"
#include "edgeprov/log.h"

#define CURL_DL_DEFINE(name) __typeof__(name) *sym_##name = NULL;
CURL_DL_SYMBOLS(CURL_DL_DEFINE)
#undef CURL_DL_DEFINE

static void *curl_dl_handle = NULL;
static bool curl_dl_initialized = false;

static int curl_dl_fail(char **reterr_message, const char *what) {
        char *m = NULL;

        if (asprintf(&m, "The HTTPS transport needs libcurl (%s): %s; install the libcurl4 package",
                     CURL_DL_SONAME, what) < 0)
                m = NULL;
        if (reterr_message)
                *reterr_message = m;
        else
                free(m);
        return -EOPNOTSUPP;
}

int curl_dl_open(char **reterr_message) {
        if (curl_dl_initialized)
                return 0;

        if (!curl_dl_handle) {
                /* not RTLD_NODELETE: a library that lacks a symbol is unloaded again, so that the
                 * next attempt looks for libcurl.so.4 afresh instead of finding it loaded */
                void *dl = dlopen(CURL_DL_SONAME, RTLD_NOW | RTLD_LOCAL);
                if (!dl)
                        return curl_dl_fail(reterr_message, dlerror());

#define CURL_DL_RESOLVE(name)                                                           \
                do {                                                                    \
                        void *p = dlsym(dl, #name);                                     \
                        if (!p) {                                                       \
                                int r = curl_dl_fail(reterr_message, "symbol " #name " missing"); \
                                (void) dlclose(dl);                                     \
                                return r;                                               \
                        }                                                               \
                        sym_##name = (__typeof__(sym_##name)) p;                        \
                } while (0);
                CURL_DL_SYMBOLS(CURL_DL_RESOLVE)
#undef CURL_DL_RESOLVE
                curl_dl_handle = dl;
        }

        /* after a failed curl_global_init() the library stays loaded (it may have done part of
         * its set-up); the next call retries only the initialisation */
        if (sym_curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return curl_dl_fail(reterr_message, "curl_global_init() failed");
        curl_dl_initialized = true;
        log_debug("Loaded %s.", CURL_DL_SONAME);
        return 0;
}
