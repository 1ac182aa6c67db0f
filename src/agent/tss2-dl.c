/* SPDX-License-Identifier: MIT */
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent/tss2-dl.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"

enum {
        TSS2_DL_ESYS,
        TSS2_DL_SYS,
        TSS2_DL_MU,
        TSS2_DL_RC,
        TSS2_DL_TCTILDR,
        _TSS2_DL_MAX,
};

static const struct {
        const char *soname, *package;
} tss2_dl_libs[_TSS2_DL_MAX] = {
        [TSS2_DL_ESYS] = { "libtss2-esys.so.0", "libtss2-esys-3.0.2-0" },
        [TSS2_DL_SYS] = { "libtss2-sys.so.1", "libtss2-sys1" },
        [TSS2_DL_MU] = { "libtss2-mu.so.0", "libtss2-mu0" },
        [TSS2_DL_RC] = { "libtss2-rc.so.0", "libtss2-rc0" },
        [TSS2_DL_TCTILDR] = { "libtss2-tctildr.so.0", "libtss2-tctildr0" },
};

#define TSS2_DL_DEFINE(lib, name) __typeof__(name) *sym_##name = NULL;
TSS2_DL_SYMBOLS(TSS2_DL_DEFINE)
#undef TSS2_DL_DEFINE

static bool tss2_dl_loaded = false;

static int tss2_dl_fail(char **reterr_message, unsigned lib, const char *what) {
        char *m = NULL;

        if (asprintf(&m, "TPM support needs %s: %s; install the %s package", tss2_dl_libs[lib].soname, what,
                     tss2_dl_libs[lib].package) < 0)
                m = NULL;
        if (reterr_message)
                *reterr_message = m;
        else
                free(m);
        return -EOPNOTSUPP;
}

int tss2_dl_open(char **reterr_message) {
        void *dl[_TSS2_DL_MAX] = {};
        int r = 0;

        if (tss2_dl_loaded)
                return 0;

        /* not RTLD_NODELETE: what is loaded is unloaded again on failure, so that the next attempt
         * looks for the libraries afresh */
        for (unsigned i = 0; i < _TSS2_DL_MAX; i++) {
                dl[i] = dlopen(tss2_dl_libs[i].soname, RTLD_NOW | RTLD_LOCAL);
                if (!dl[i]) {
                        r = tss2_dl_fail(reterr_message, i, dlerror());
                        goto fail;
                }
        }
#define TSS2_DL_RESOLVE(lib, name)                                                      \
        do {                                                                            \
                void *p = dlsym(dl[lib], #name);                                        \
                if (!p) {                                                               \
                        r = tss2_dl_fail(reterr_message, lib, "symbol " #name " missing"); \
                        goto fail;                                                      \
                }                                                                       \
                sym_##name = (__typeof__(sym_##name)) p;                                \
        } while (0);
        TSS2_DL_SYMBOLS(TSS2_DL_RESOLVE)
#undef TSS2_DL_RESOLVE

        tss2_dl_loaded = true;
        log_debug("Loaded the TSS2 libraries.");
        return 0;
fail:
        for (unsigned i = 0; i < _TSS2_DL_MAX; i++)
                if (dl[i])
                        (void) dlclose(dl[i]);
        return r;
}
