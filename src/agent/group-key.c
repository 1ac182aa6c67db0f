/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/attest.h"
#include "agent/group-key.h"
#include "agent/tpm.h"
#include "edgeprov/codec.h"
#include "edgeprov/fileio.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/sas.h"
#include "edgeprov/time-util.h"

struct GroupKey {
        char *key_b64;                  /* file: the secret */
        uint8_t *blob;                  /* TPM: the object, encrypted by the SRK */
        size_t blob_len;
        char *tcti, *endorsement_auth, *owner_auth;
};

static uint8_t *mfree_u8(uint8_t *p) {
        free(p);
        return NULL;
}


int group_key_blob_path(const Config *c, char **ret) {
        return asprintf(ret, "%s/%s", c->state_directory ?: EDGEPROV_DEFAULT_STATE_DIR, GROUP_KEY_BLOB_FILE) < 0 ?
                -ENOMEM : 0;
}

static void group_key_done(GroupKey *g) {
        g->key_b64 = erase_and_free(g->key_b64);
        g->blob = mfree_u8(g->blob);
        free(g->tcti);
        g->tcti = NULL;
        g->endorsement_auth = erase_and_free(g->endorsement_auth);
        g->owner_auth = erase_and_free(g->owner_auth);
}

GroupKey *group_key_free(GroupKey *g) {
        if (!g)
                return NULL;
        group_key_done(g);
        free(g);
        return NULL;
}

bool group_key_in_tpm(const GroupKey *g) {
        return g && g->blob;
}

static int read_auths(const Config *c, GroupKey *g) {
        int r = tpm_read_auth_file(c, c->tpm_endorsement_auth_file, &g->endorsement_auth);
        if (r >= 0)
                r = tpm_read_auth_file(c, c->tpm_owner_auth_file, &g->owner_auth);
        if (r >= 0 && !(g->tcti = strdup(c->tpm_tcti ?: TPM_TCTI_DEFAULT)))
                r = -ENOMEM;
        return r;
}

int group_key_open(const Config *c, GroupKey **ret) {
        GroupKey *g;
        int r;

        if (!c->downstream_group_key_file && !c->downstream_group_key_in_tpm) {
                *ret = NULL;
                return 0;
        }
        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        if (c->downstream_group_key_file) {
                Config k = *c;  /* shallow: conf_read_key only reads */
                _cleanup_free_ char *error = NULL;
                k.key_file = k.downstream_group_key_file;
                r = conf_read_key(&k, &g->key_b64, &error);
                if (r < 0) {
                        log_error_errno(r, "downstream.group_key_file: %s", strna(error));
                        goto fail;
                }
        } else {
                _cleanup_free_ char *path = NULL, *text = NULL;
                size_t len = 0;

                r = group_key_blob_path(c, &path);
                if (r < 0)
                        goto fail;
                r = read_file_full(path, GROUP_KEY_BLOB_MAX, &text, &len);
                if (r < 0) {
                        log_error_errno(r, "downstream.group_key_in_tpm: cannot read '%s' (%m); import the key "
                                        "first with: edgeprovd --import-group-key FILE", path);
                        goto fail;
                }
                g->blob = (uint8_t *) TAKE_PTR(text);
                g->blob_len = len;
                r = read_auths(c, g);
                if (r < 0)
                        goto fail;
        }
        *ret = g;
        return 0;
fail:
        group_key_free(g);
        return r;
}

int group_key_derive(GroupKey *g, const char *const *ids, size_t n, char **ret_keys, uint64_t *ret_usec) {
        uint64_t start = clock_now_usec(CLOCK_MONOTONIC);
        int r = 0;

        if (n == 0)
                return 0;
        if (!g->blob) {
                for (size_t i = 0; i < n; i++) {
                        r = sas_derive_device_key(g->key_b64, ids[i], &ret_keys[i]);
                        if (r < 0) {
                                for (size_t j = 0; j < i; j++)
                                        ret_keys[j] = erase_and_free(ret_keys[j]);
                                return r;
                        }
                }
        } else {
                _cleanup_(tpm_closep) Tpm *t = NULL;
                uint8_t (*macs)[32] = calloc(n, 32);

                if (!macs)
                        return -ENOMEM;
                r = tpm_open(g->tcti, g->endorsement_auth, g->owner_auth, &t);
                if (r >= 0)
                        r = tpm_hmac_with_blob(t, g->blob, g->blob_len, ids, n, macs);
                t = tpm_close(t);
                for (size_t i = 0; r >= 0 && i < n; i++) {
                        r = base64_encode(macs[i], 32, &ret_keys[i]);
                        if (r < 0)
                                for (size_t j = 0; j < i; j++)
                                        ret_keys[j] = erase_and_free(ret_keys[j]);
                }
                explicit_bzero(macs, n * 32);
                free(macs);
        }
        if (ret_usec)
                *ret_usec = clock_now_usec(CLOCK_MONOTONIC) - start;
        return r;
}

int group_key_import(const Config *c, const char *key_path) {
        _cleanup_(erase_and_freep) char *key_b64 = NULL, *sw = NULL, *tpm_key = NULL;
        _cleanup_free_ char *error = NULL, *path = NULL, *abs = NULL;
        _cleanup_free_ uint8_t *srk = NULL;
        _cleanup_(group_key_done) GroupKey g = {};
        uint8_t *key = NULL;
        size_t key_len = 0, srk_len = 0;
        int r;

        /* a relative name is relative to the working directory here, not to the credentials */
        if (key_path[0] != '/' && !(abs = realpath(key_path, NULL)))
                return log_error_errno(errno, "Cannot resolve '%s': %m", key_path);
        Config k = *c;
        k.key_file = (char *) (abs ?: key_path);
        r = conf_read_key(&k, &key_b64, &error);
        if (r < 0)
                return log_error_errno(r, "%s", strna(error));
        r = base64_decode(key_b64, strlen(key_b64), &key, &key_len);
        if (r < 0)
                return log_error_errno(r, "The group key is not base64: %m");

        r = read_auths(c, &g);
        if (r >= 0) {
                _cleanup_(tpm_closep) Tpm *t = NULL;
                r = tpm_open(g.tcti, g.endorsement_auth, g.owner_auth, &t);
                if (r >= 0)
                        r = tpm_get_srk(t, &srk, &srk_len);     /* created and persisted when absent */
                if (r >= 0)
                        r = tpm_seal_hmac_key(t, key, key_len, &g.blob, &g.blob_len);
        }
        explicit_bzero(key, key_len);
        free(key);
        if (r < 0)
                return log_error_errno(r, "Cannot import the group key into the TPM: %m");

        /* the TPM must derive exactly what the key derives in software */
        const char *probe = "edgeprov-import-check";
        r = sas_derive_device_key(key_b64, probe, &sw);
        if (r >= 0)
                r = group_key_derive(&g, &probe, 1, &tpm_key, NULL);
        if (r >= 0 && !streq(sw, tpm_key))
                r = -EBADMSG;
        if (r < 0)
                return log_error_errno(r, "The TPM does not derive what the key derives: %m");

        r = mkdir_p(c->state_directory ?: EDGEPROV_DEFAULT_STATE_DIR, 0700);
        if (r >= 0)
                r = group_key_blob_path(c, &path);
        if (r >= 0)
                r = write_file_atomic(path, g.blob, g.blob_len, 0600);
        if (r < 0)
                return log_error_errno(r, "Cannot write the group key blob: %m");
        log_info("Group key imported into the TPM (an HMAC-SHA256 object under the SRK 0x%08x), blob in %s. "
                 "Set downstream.group_key_in_tpm = true; the key file is no longer needed.",
                 TPM_SRK_HANDLE, path);
        return 0;
}
