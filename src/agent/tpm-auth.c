/* SPDX-License-Identifier: MIT */
/* The TPM hierarchy password files: read by the daemon (attest.c, group-key.c) and by
 * edgeprovctl doctor, which both hand them to whoever opens the TPM. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/attest.h"
#include "edgeprov/fileio.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"

#define AUTH_FILE_MAX 256

int tpm_read_auth_file(const Config *c, const char *name, char **ret) {
        _cleanup_free_ char *path = NULL;
        const char *base;

        if (!name) {
                *ret = NULL;
                return 0;
        }
        if (name[0] == '/')
                path = strdup(name);
        else if ((base = secure_getenv("CREDENTIALS_DIRECTORY"))) {
                if (asprintf(&path, "%s/%s", base, name) < 0)
                        path = NULL;
        } else {
                _cleanup_free_ char *dir = strdup(strempty(c->path));
                char *slash = dir ? strrchr(dir, '/') : NULL;
                if (slash)
                        *slash = 0;
                if (dir && asprintf(&path, "%s/%s", slash ? dir : ".", name) < 0)
                        path = NULL;
        }
        if (!path)
                return -ENOMEM;
        int r = read_secret_file(path, AUTH_FILE_MAX, ret);
        if (r < 0)
                return log_error_errno(r, "Cannot read the TPM hierarchy password file '%s': %m", path);
        return 0;
}
