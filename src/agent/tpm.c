/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "agent/tpm.h"
#include "agent/tss2-dl.h"
#include "edgeprov/codec.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/messages.h"
#include "edgeprov/tpm-blob.h"

struct Tpm {
        TSS2_TCTI_CONTEXT *tcti;
        ESYS_CONTEXT *esys;
};

/* TCG EK Credential Profile template L-1 policy: PolicySecret(TPM_RH_ENDORSEMENT) */
static const uint8_t ek_policy[32] = {
        0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
        0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
};

static bool rc_is_tcti_io(TSS2_RC rc) {
        return (rc & TSS2_RC_LAYER_MASK) == TSS2_TCTI_RC_LAYER || (rc & 0xffff) == TSS2_BASE_RC_IO_ERROR ||
                (rc & 0xffff) == TSS2_BASE_RC_TRY_AGAIN || (rc & 0xffff) == TSS2_BASE_RC_NO_CONNECTION;
}

static bool rc_is_handle_missing(TSS2_RC rc) {
        /* TPM_RC_HANDLE (format 1, any handle number), from the TPM or ESYS' TR_FromTPMPublic */
        TSS2_RC base = rc & ~TSS2_RC_LAYER_MASK;
        return (base & TPM2_RC_FMT1) && (base & 0x3f) == (TPM2_RC_HANDLE & 0x3f);
}

static int rc_to_errno(TSS2_RC rc) {
        TSS2_RC base = rc & ~TSS2_RC_LAYER_MASK;
        if (rc_is_tcti_io(rc))
                return -ECONNREFUSED;
        if ((base & TPM2_RC_FMT1) && (base & TPM2_RC_P))
                return -EBADMSG; /* a parameter (blob field) the TPM refused */
        if (base & TPM2_RC_FMT1) {
                switch (base & 0x3f) {
                case TPM2_RC_INTEGRITY & 0x3f:
                case TPM2_RC_BINDING & 0x3f:
                case TPM2_RC_SIZE & 0x3f:
                case TPM2_RC_VALUE & 0x3f:
                case TPM2_RC_KEY & 0x3f:
                case TPM2_RC_SYMMETRIC & 0x3f:
                case TPM2_RC_SCHEME & 0x3f:
                case TPM2_RC_ATTRIBUTES & 0x3f:
                case TPM2_RC_TYPE & 0x3f:
                        return -EBADMSG;
                }
        }
        return -EIO;
}

#define log_tpm_error(rc, what)                                                                            \
        ({                                                                                                 \
                char _f_rc[32];                                                                            \
                snprintf(_f_rc, sizeof(_f_rc), "TPM_RC=0x%x", (unsigned) (rc));                            \
                log_struct_errno(LOG_ERR, -rc_to_errno(rc), STRV(EDGEPROV_MESSAGE_ID(TPM_ERROR), _f_rc),   \
                                 "TPM: %s failed: %s (0x%x)", (what), sym_Tss2_RC_Decode(rc), (unsigned) (rc)); \
        })

static int tpm_fail(TSS2_RC rc, const char *what) {
        log_tpm_error(rc, what);
        return rc_to_errno(rc);
}

/* Flushes every loaded transient object and session, by raw handle (they were left by a
 * crashed run, so ESYS has no ESYS_TR for them). */
static int flush_leftovers(Tpm *t) {
        static const TPM2_HANDLE firsts[] = { TPM2_TRANSIENT_FIRST, TPM2_LOADED_SESSION_FIRST };
        TSS2_SYS_CONTEXT *sys = NULL;
        TSS2_RC rc;

        rc = sym_Esys_GetSysContext(t->esys, &sys);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(rc, "GetSysContext");

        for (size_t i = 0; i < ELEMENTSOF(firsts); i++) {
                TPMS_CAPABILITY_DATA *cap = NULL;
                TPMI_YES_NO more = 0;

                rc = sym_Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, firsts[i],
                                        TPM2_MAX_CAP_HANDLES, &more, &cap);
                if (rc != TSS2_RC_SUCCESS)
                        return tpm_fail(rc, "GetCapability(handles)");
                for (size_t j = 0; j < cap->data.handles.count; j++) {
                        TPM2_HANDLE h = cap->data.handles.handle[j];
                        if ((h >> 24) != (firsts[i] >> 24))
                                continue;
                        rc = sym_Tss2_Sys_FlushContext(sys, h);
                        if (rc != TSS2_RC_SUCCESS)
                                log_warning("TPM: could not flush leftover handle 0x%08x: %s", h, sym_Tss2_RC_Decode(rc));
                        else
                                log_notice("TPM: flushed leftover handle 0x%08x from an earlier run", h);
                }
                sym_Esys_Free(cap);
        }
        return 0;
}

static int set_auth(Tpm *t, ESYS_TR h, const char *pw) {
        TPM2B_AUTH a = {};
        size_t l = pw ? strlen(pw) : 0;
        TSS2_RC rc;

        if (l > sizeof(a.buffer))
                return log_error_errno(EINVAL, "TPM: hierarchy password longer than %zu bytes", sizeof(a.buffer));
        a.size = (UINT16) l;
        if (l > 0)
                memcpy(a.buffer, pw, l);
        rc = sym_Esys_TR_SetAuth(t->esys, h, &a);
        explicit_bzero(&a, sizeof(a));
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(rc, "TR_SetAuth");
        return 0;
}

int tpm_open(const char *tcti, const char *endorsement_auth, const char *owner_auth, Tpm **ret) {
        _cleanup_free_ char *dl_error = NULL;
        Tpm *t;
        TSS2_RC rc;
        int r;

        /* the TSS2 libraries are loaded at the first use of a TPM (tss2-dl.h) */
        r = tss2_dl_open(&dl_error);
        if (r < 0) {
                log_error("%s", dl_error ?: "TPM support needs the TSS2 libraries, which cannot be loaded.");
                return r;
        }

        /* ESYS prints its own ERROR lines for expected conditions (an absent persistent
         * handle); everything that matters is logged here, decoded.  TSS2_LOG overrides. */
        (void) setenv("TSS2_LOG", "all+none", 0);

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;

        rc = sym_Tss2_TctiLdr_Initialize(tcti ?: TPM_TCTI_DEFAULT, &t->tcti);
        if (rc != TSS2_RC_SUCCESS) {
                log_error("TPM: cannot open TCTI \"%s\": %s (0x%x)", tcti ?: TPM_TCTI_DEFAULT, sym_Tss2_RC_Decode(rc),
                          (unsigned) rc);
                free(t);
                return -ECONNREFUSED;
        }
        rc = sym_Esys_Initialize(&t->esys, t->tcti, NULL);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(rc, "Esys_Initialize");
                goto fail;
        }
        /* ESYS swallows TPM_RC_INITIALIZE (already started) */
        rc = sym_Esys_Startup(t->esys, TPM2_SU_CLEAR);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(rc, "Startup");
                goto fail;
        }
        r = flush_leftovers(t);
        if (r < 0)
                goto fail;
        r = set_auth(t, ESYS_TR_RH_ENDORSEMENT, endorsement_auth);
        if (r < 0)
                goto fail;
        r = set_auth(t, ESYS_TR_RH_OWNER, owner_auth);
        if (r < 0)
                goto fail;

        *ret = t;
        return 0;
fail:
        tpm_close(t);
        return r;
}

Tpm *tpm_close(Tpm *t) {
        if (!t)
                return NULL;
        if (t->esys)
                sym_Esys_Finalize(&t->esys);
        if (t->tcti)
                sym_Tss2_TctiLdr_Finalize(&t->tcti);
        free(t);
        return NULL;
}

/* An ESYS_TR for a persistent handle; -ENOENT when absent. The caller sym_Esys_TR_Close()s it. */
static int persistent_tr(Tpm *t, uint32_t handle, ESYS_TR *ret) {
        TSS2_RC rc;

        rc = sym_Esys_TR_FromTPMPublic(t->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ret);
        if (rc == TSS2_RC_SUCCESS)
                return 0;
        if (rc_is_handle_missing(rc))
                return -ENOENT;
        log_error("TPM: cannot look up handle 0x%08x: %s (0x%x)", handle, sym_Tss2_RC_Decode(rc), (unsigned) rc);
        return rc_to_errno(rc);
}

static void tr_close(Tpm *t, ESYS_TR *tr) {
        if (*tr != ESYS_TR_NONE)
                (void) sym_Esys_TR_Close(t->esys, tr);
        *tr = ESYS_TR_NONE;
}

static void tr_flush(Tpm *t, ESYS_TR *tr) {
        if (*tr != ESYS_TR_NONE) {
                TSS2_RC rc = sym_Esys_FlushContext(t->esys, *tr);
                if (rc != TSS2_RC_SUCCESS)
                        log_warning("TPM: FlushContext failed: %s", sym_Tss2_RC_Decode(rc));
        }
        *tr = ESYS_TR_NONE;
}

int tpm_handle_exists(Tpm *t, uint32_t handle) {
        ESYS_TR tr = ESYS_TR_NONE;
        int r = persistent_tr(t, handle, &tr);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        tr_close(t, &tr);
        return 1;
}

static int marshal_public(const TPM2B_PUBLIC *pub, uint8_t **ret, size_t *ret_len) {
        uint8_t *buf;
        size_t off = 0;
        TSS2_RC rc;

        buf = malloc(sizeof(TPM2B_PUBLIC));
        if (!buf)
                return -ENOMEM;
        rc = sym_Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof(TPM2B_PUBLIC), &off);
        if (rc != TSS2_RC_SUCCESS) {
                free(buf);
                return tpm_fail(rc, "marshal TPM2B_PUBLIC");
        }
        *ret = buf;
        *ret_len = off;
        return 0;
}

static void rsa_storage_template(TPM2B_PUBLIC *p, TPMA_OBJECT attrs, const uint8_t *policy, size_t policy_len,
                                 bool unique_zero) {
        *p = (TPM2B_PUBLIC) {
                .publicArea = {
                        .type = TPM2_ALG_RSA,
                        .nameAlg = TPM2_ALG_SHA256,
                        .objectAttributes = attrs,
                        .parameters.rsaDetail = {
                                .symmetric = { .algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB },
                                .scheme = { .scheme = TPM2_ALG_NULL },
                                .keyBits = 2048,
                                .exponent = 0,
                        },
                },
        };
        p->publicArea.authPolicy.size = (UINT16) policy_len;
        if (policy_len > 0)
                memcpy(p->publicArea.authPolicy.buffer, policy, policy_len);
        p->publicArea.unique.rsa.size = unique_zero ? 256 : 0;
}

/* The public area of the object tr, marshalled; closes tr. */
static int read_public_close(Tpm *t, ESYS_TR *tr, uint8_t **ret_pub, size_t *ret_len) {
        TPM2B_PUBLIC *pub = NULL;
        TSS2_RC rc;
        int r;

        rc = sym_Esys_ReadPublic(t->esys, *tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL, NULL);
        tr_close(t, tr);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(rc, "ReadPublic");
        r = marshal_public(pub, ret_pub, ret_len);
        sym_Esys_Free(pub);
        return r;
}

/* read the key at handle, or create it under hierarchy from the template and persist it */
static int get_or_create(Tpm *t, uint32_t handle, ESYS_TR hierarchy, const TPM2B_PUBLIC *template,
                         const char *what, uint8_t **ret_pub, size_t *ret_len) {
        ESYS_TR tr = ESYS_TR_NONE, transient = ESYS_TR_NONE, persisted = ESYS_TR_NONE;
        TSS2_RC rc;
        int r;

        r = persistent_tr(t, handle, &tr);
        if (r == -ENOENT) {
                TPM2B_SENSITIVE_CREATE sens = {};
                TPM2B_DATA outside = {};
                TPML_PCR_SELECTION pcrs = {};

                log_notice("TPM: no %s at 0x%08x, creating it from the TCG template", what, handle);
                rc = sym_Esys_CreatePrimary(t->esys, hierarchy, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sens,
                                        template, &outside, &pcrs, &transient, NULL, NULL, NULL, NULL);
                if (rc != TSS2_RC_SUCCESS)
                        return tpm_fail(rc, "CreatePrimary");
                rc = sym_Esys_EvictControl(t->esys, ESYS_TR_RH_OWNER, transient, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                       ESYS_TR_NONE, handle, &persisted);
                tr_flush(t, &transient);
                if (rc != TSS2_RC_SUCCESS)
                        return tpm_fail(rc, "EvictControl(persist primary)");
                tr = persisted;
        } else if (r < 0)
                return r;

        return read_public_close(t, &tr, ret_pub, ret_len);
}

int tpm_get_ek(Tpm *t, uint8_t **ret_pub, size_t *ret_len) {
        TPM2B_PUBLIC tmpl;
        rsa_storage_template(&tmpl,
                             TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                     TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT,
                             ek_policy, sizeof(ek_policy), true);
        return get_or_create(t, TPM_EK_HANDLE, ESYS_TR_RH_ENDORSEMENT, &tmpl, "EK", ret_pub, ret_len);
}

int tpm_get_srk(Tpm *t, uint8_t **ret_pub, size_t *ret_len) {
        TPM2B_PUBLIC tmpl;
        rsa_storage_template(&tmpl,
                             TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                     TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED |
                                     TPMA_OBJECT_DECRYPT,
                             NULL, 0, false);
        return get_or_create(t, TPM_SRK_HANDLE, ESYS_TR_RH_OWNER, &tmpl, "SRK", ret_pub, ret_len);
}

int tpm_registration_id_from_ek(const uint8_t *ek_pub, size_t len, char **ret) {
        uint8_t d[32];
        if (!EVP_Digest(ek_pub, len, d, NULL, EVP_sha256(), NULL))
                return -EIO;
        return base32_encode_lower_nopad(d, sizeof(d), ret);
}

#define EK_CERT_MAX 4096

/* Reads all of the NV index nv, at most max bytes, in chunks; what follows the command in TPM
 * errors ("" or "(EK certificate)").  -EFBIG for an empty or larger index, -EBADMSG for a short
 * read (both not logged). */
static int nv_read(Tpm *t, ESYS_TR nv, const char *what, size_t max, uint8_t **ret, size_t *ret_len) {
        TPM2B_NV_PUBLIC *nvpub = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        char label[64];
        size_t size;
        TSS2_RC rc;

        rc = sym_Esys_NV_ReadPublic(t->esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nvpub, NULL);
        if (rc != TSS2_RC_SUCCESS) {
                snprintf(label, sizeof label, "NV_ReadPublic%s", what);
                return tpm_fail(rc, label);
        }
        size = nvpub->nvPublic.dataSize;
        sym_Esys_Free(nvpub);
        if (size == 0 || size > max)
                return -EFBIG;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        for (size_t off = 0; off < size;) {
                TPM2B_MAX_NV_BUFFER *chunk = NULL;
                UINT16 n_ = (UINT16) MIN(size - off, (size_t) 512);
                rc = sym_Esys_NV_Read(t->esys, nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, n_, (UINT16) off, &chunk);
                if (rc != TSS2_RC_SUCCESS) {
                        snprintf(label, sizeof label, "NV_Read%s", what);
                        return tpm_fail(rc, label);
                }
                bool short_read = chunk->size != n_;
                if (!short_read)
                        memcpy(buf + off, chunk->buffer, n_);
                sym_Esys_Free(chunk);
                if (short_read)
                        return -EBADMSG;
                off += n_;
        }
        *ret = TAKE_PTR(buf);
        *ret_len = size;
        return 0;
}

int tpm_check_ek_cert(Tpm *t, const uint8_t *ek_pub, size_t ek_len, const char *ca_file, char **ret_message) {
        ESYS_TR nv = ESYS_TR_NONE;
        _cleanup_free_ uint8_t *der = NULL;
        _cleanup_free_ char *msg = NULL;
        X509 *cert = NULL;
        EVP_PKEY *key = NULL;
        BIGNUM *n = NULL;
        TpmRsaPublic ek;
        size_t size;
        int r;

        r = tpm_rsa_public_parse(ek_pub, ek_len, &ek);
        if (r < 0)
                return log_error_errno(-r, "TPM: the EK is not an RSA storage key this code can use");

        r = persistent_tr(t, TPM_EK_CERT_NV_INDEX, &nv);
        if (r == -ENOENT) {
                if (ret_message)
                        *ret_message = strdup("no EK certificate in NV 0x01c00002");
                return 0;
        }
        if (r < 0)
                return r;

        r = nv_read(t, nv, "(EK certificate)", EK_CERT_MAX, &der, &size);
        if (r == -EFBIG)
                r = log_error_errno(EBADMSG, "TPM: EK certificate NV index has an unusable size");
        else if (r == -EBADMSG)
                r = log_error_errno(EBADMSG, "TPM: short NV read of the EK certificate");
        if (r < 0)
                goto finish;

        const unsigned char *p = der;
        cert = d2i_X509(NULL, &p, (long) size);
        /* NV areas may be padded after the DER */
        if (!cert || !(key = X509_get_pubkey(cert)) || EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) != 1) {
                r = -EKEYREJECTED;
                msg = strdup("EK certificate in NV does not parse as an X.509 certificate with an RSA key");
                goto finish;
        }
        uint8_t mod[TPM_RSA_MODULUS_MAX];
        if ((size_t) BN_num_bytes(n) != ek.modulus_len || BN_bn2binpad(n, mod, (int) ek.modulus_len) < 0 ||
            memcmp(mod, ek.modulus, ek.modulus_len) != 0) {
                r = -EKEYREJECTED;
                msg = strdup("EK certificate does NOT match the EK's public key");
                goto finish;
        }
        if (ca_file) {
                X509_STORE *store = X509_STORE_new();
                X509_STORE_CTX *ctx = X509_STORE_CTX_new();
                int ok = store && ctx && X509_STORE_load_file(store, ca_file) == 1 &&
                        X509_STORE_CTX_init(ctx, store, cert, NULL) == 1;
                if (ok) {
                        /* EK certificates carry TPM-specific critical extensions (SAN dirName) */
                        X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN);
                        ok = X509_verify_cert(ctx) == 1;
                        if (!ok && asprintf(&msg, "EK certificate matches the EK but does not verify against %s: %s",
                                            ca_file, X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx))) < 0)
                                msg = NULL;
                } else if (asprintf(&msg, "cannot load the EK CA bundle %s", ca_file) < 0)
                        msg = NULL;
                X509_STORE_CTX_free(ctx);
                X509_STORE_free(store);
                if (!ok) {
                        r = -EKEYREJECTED;
                        goto finish;
                }
                msg = strdup("EK certificate matches the EK and verifies against the manufacturer CA");
        } else
                msg = strdup("EK certificate matches the EK (no manufacturer CA configured)");
        r = 1;
finish:
        BN_free(n);
        EVP_PKEY_free(key);
        X509_free(cert);
        tr_close(t, &nv);
        if (ret_message && msg)
                *ret_message = TAKE_PTR(msg);
        return r;
}

int tpm_evict(Tpm *t, uint32_t slot) {
        ESYS_TR tr = ESYS_TR_NONE, out = ESYS_TR_NONE;
        TSS2_RC rc;
        int r;

        if (slot == TPM_EK_HANDLE || slot == TPM_SRK_HANDLE)
                return -EPERM;
        r = persistent_tr(t, slot, &tr);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        rc = sym_Esys_EvictControl(t->esys, ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, slot, &out);
        /* ESYS keeps the stale ESYS_TR (with the old Name) cached: drop it, or the next
         * TR_FromTPMPublic of this handle fails with a name mismatch */
        tr_close(t, &tr);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(rc, "EvictControl(remove)");
        return 0;
}

int tpm_activate_blob(Tpm *t, const void *blob, size_t len, uint32_t slot) {
        ESYS_TR ek = ESYS_TR_NONE, srk = ESYS_TR_NONE, session = ESYS_TR_NONE, obj = ESYS_TR_NONE,
                persisted = ESYS_TR_NONE;
        TPM2B_ID_OBJECT cred = {};
        TPM2B_ENCRYPTED_SECRET secret = {}, sym_seed = {};
        TPM2B_PRIVATE dup = {};
        TPM2B_PUBLIC pub = {};
        TPM2B_DIGEST *cert_info = NULL;
        TPM2B_PRIVATE *priv = NULL;
        TpmBlobFields f;
        TSS2_RC rc;
        int r;

        if (slot == TPM_EK_HANDLE || slot == TPM_SRK_HANDLE || (slot >> 24) != 0x81)
                return -EINVAL;

        r = tpm_blob_split(blob, len, &f);
        if (r < 0)
                return log_error_errno(-r, "authenticationKey blob is malformed (%s)",
                                       r == -E2BIG ? "a field is too large" : "truncated or trailing bytes");
        size_t o;
        if (sym_Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(f.credential_blob.data, f.credential_blob.len, (o = 0, &o), &cred) ||
            sym_Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(f.secret.data, f.secret.len, (o = 0, &o), &secret) ||
            sym_Tss2_MU_TPM2B_PRIVATE_Unmarshal(f.duplicate.data, f.duplicate.len, (o = 0, &o), &dup) ||
            sym_Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(f.sym_seed.data, f.sym_seed.len, (o = 0, &o), &sym_seed) ||
            sym_Tss2_MU_TPM2B_PUBLIC_Unmarshal(f.object_public.data, f.object_public.len, (o = 0, &o), &pub) ||
            o != f.object_public.len)
                return log_error_errno(EBADMSG, "authenticationKey blob fields do not unmarshal as TPM structures");

        r = persistent_tr(t, TPM_EK_HANDLE, &ek);
        if (r < 0)
                goto finish;
        r = persistent_tr(t, TPM_SRK_HANDLE, &srk);
        if (r < 0)
                goto finish;

        /* the EK's policy: PolicySecret(TPM_RH_ENDORSEMENT) */
        TPMT_SYM_DEF sym_null = { .algorithm = TPM2_ALG_NULL };
        rc = sym_Esys_StartAuthSession(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   NULL, TPM2_SE_POLICY, &sym_null, TPM2_ALG_SHA256, &session);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(rc, "StartAuthSession(policy)");
                goto finish;
        }
        /* keep it alive after use so that it is flushed here on every path */
        (void) sym_Esys_TRSess_SetAttributes(t->esys, session, TPMA_SESSION_CONTINUESESSION, 0xff);
        rc = sym_Esys_PolicySecret(t->esys, ESYS_TR_RH_ENDORSEMENT, session, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                               NULL, NULL, NULL, 0, NULL, NULL);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(rc, "PolicySecret(endorsement)");
                goto finish;
        }
        rc = sym_Esys_ActivateCredential(t->esys, srk, ek, ESYS_TR_PASSWORD, session, ESYS_TR_NONE, &cred, &secret,
                                     &cert_info);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(rc, "ActivateCredential");
                goto finish;
        }
        tr_flush(t, &session);
        if (cert_info->size != TPM_INNER_KEY_SIZE) {
                r = log_error_errno(EBADMSG, "TPM: activated credential has %u bytes, expected %u",
                                    cert_info->size, TPM_INNER_KEY_SIZE);
                goto finish;
        }

        TPM2B_DATA inner = { .size = cert_info->size };
        memcpy(inner.buffer, cert_info->buffer, cert_info->size);
        TPMT_SYM_DEF_OBJECT sym = { .algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB };
        rc = sym_Esys_Import(t->esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &inner, &pub, &dup, &sym_seed, &sym,
                         &priv);
        explicit_bzero(&inner, sizeof(inner));
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(rc, "Import");
                goto finish;
        }
        rc = sym_Esys_Load(t->esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, priv, &pub, &obj);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(rc, "Load");
                goto finish;
        }
        r = tpm_evict(t, slot);
        if (r < 0)
                goto finish;
        rc = sym_Esys_EvictControl(t->esys, ESYS_TR_RH_OWNER, obj, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, slot,
                               &persisted);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(rc, "EvictControl(persist key)");
                goto finish;
        }
        r = 0;
finish:
        tr_flush(t, &session);
        tr_flush(t, &obj);
        tr_close(t, &persisted);
        tr_close(t, &ek);
        tr_close(t, &srk);
        if (cert_info) {
                explicit_bzero(cert_info, sizeof(*cert_info));
                sym_Esys_Free(cert_info);
        }
        sym_Esys_Free(priv);
        return r;
}

int tpm_hmac(Tpm *t, uint32_t slot, const void *data, size_t len, uint8_t ret[32]) {
        ESYS_TR key = ESYS_TR_NONE;
        TPM2B_MAX_BUFFER buf = {};
        TPM2B_DIGEST *out = NULL;
        TSS2_RC rc;
        int r;

        if (len > sizeof(buf.buffer))
                return -E2BIG;
        r = persistent_tr(t, slot, &key);
        if (r == -ENOENT)
                return log_error_errno(ENOENT, "TPM: no key at 0x%08x", slot);
        if (r < 0)
                return r;
        buf.size = (UINT16) len;
        memcpy(buf.buffer, data, len);
        rc = sym_Esys_HMAC(t->esys, key, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &buf, TPM2_ALG_SHA256, &out);
        tr_close(t, &key);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(rc, "HMAC");
        if (out->size != 32) {
                sym_Esys_Free(out);
                return -EIO;
        }
        memcpy(ret, out->buffer, 32);
        explicit_bzero(out, sizeof(*out));
        sym_Esys_Free(out);
        return 0;
}

/* ---- the downstream group key inside the TPM -------------------------------------------- */

int tpm_seal_hmac_key(Tpm *t, const void *key, size_t len, uint8_t **ret_blob, size_t *ret_len) {
        ESYS_TR srk = ESYS_TR_NONE, session = ESYS_TR_NONE;
        TPM2B_PUBLIC *out_pub = NULL;
        TPM2B_PRIVATE *out_priv = NULL;
        TPM2B_SENSITIVE_CREATE sens = {};
        TPM2B_DATA outside = {};
        TPML_PCR_SELECTION pcrs = {};
        uint8_t *blob = NULL;
        size_t off = 0;
        TSS2_RC rc;
        int r;

        if (!key || len == 0 || len > sizeof(sens.sensitive.data.buffer))
                return -EINVAL;
        TPM2B_PUBLIC tmpl = {
                .publicArea = {
                        .type = TPM2_ALG_KEYEDHASH,
                        .nameAlg = TPM2_ALG_SHA256,
                        /* no SENSITIVEDATAORIGIN: we supply the key; FIXEDTPM|FIXEDPARENT: never duplicable */
                        .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_USERWITHAUTH |
                                            TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_NODA,
                        .parameters.keyedHashDetail.scheme = {
                                .scheme = TPM2_ALG_HMAC,
                                .details.hmac.hashAlg = TPM2_ALG_SHA256,
                        },
                },
        };
        sens.sensitive.data.size = (UINT16) len;
        memcpy(sens.sensitive.data.buffer, key, len);

        r = persistent_tr(t, TPM_SRK_HANDLE, &srk);
        if (r == -ENOENT)
                r = log_error_errno(ENOENT, "TPM: no SRK at 0x%08x", TPM_SRK_HANDLE);
        if (r < 0)
                goto finish;
        /* The key travels to the TPM encrypted: an HMAC session salted with the SRK, used for
         * parameter encryption (AES-128-CFB) of the first command parameter, inSensitive. */
        TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB };
        rc = sym_Esys_StartAuthSession(t->esys, srk, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL,
                                   TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256, &session);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(rc, "StartAuthSession(salted)");
                goto finish;
        }
        (void) sym_Esys_TRSess_SetAttributes(t->esys, session, TPMA_SESSION_DECRYPT | TPMA_SESSION_CONTINUESESSION, 0xff);
        rc = sym_Esys_Create(t->esys, srk, ESYS_TR_PASSWORD, session, ESYS_TR_NONE, &sens, &tmpl, &outside, &pcrs,
                         &out_priv, &out_pub, NULL, NULL, NULL);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(rc, "Create(HMAC key)");
                goto finish;
        }
        blob = malloc(sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE));
        if (!blob) {
                r = -ENOMEM;
                goto finish;
        }
        rc = sym_Tss2_MU_TPM2B_PUBLIC_Marshal(out_pub, blob, sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE), &off);
        if (rc == TSS2_RC_SUCCESS)
                rc = sym_Tss2_MU_TPM2B_PRIVATE_Marshal(out_priv, blob, sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE), &off);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(rc, "marshal the key blob");
                goto finish;
        }
        *ret_blob = TAKE_PTR(blob);
        *ret_len = off;
        r = 0;
finish:
        explicit_bzero(&sens, sizeof(sens));
        tr_flush(t, &session);
        tr_close(t, &srk);
        sym_Esys_Free(out_pub);
        sym_Esys_Free(out_priv);
        free(blob);
        return r;
}

int tpm_hmac_with_blob(Tpm *t, const void *blob, size_t blob_len, const char *const *data, size_t n,
                       uint8_t (*ret)[32]) {
        ESYS_TR srk = ESYS_TR_NONE, obj = ESYS_TR_NONE;
        TPM2B_PUBLIC pub = {};
        TPM2B_PRIVATE priv = {};
        size_t off = 0;
        TSS2_RC rc;
        int r;

        if (sym_Tss2_MU_TPM2B_PUBLIC_Unmarshal(blob, blob_len, &off, &pub) != TSS2_RC_SUCCESS ||
            sym_Tss2_MU_TPM2B_PRIVATE_Unmarshal(blob, blob_len, &off, &priv) != TSS2_RC_SUCCESS || off != blob_len)
                return log_error_errno(EBADMSG, "TPM: the group key blob does not unmarshal");
        if (pub.publicArea.type != TPM2_ALG_KEYEDHASH ||
            pub.publicArea.parameters.keyedHashDetail.scheme.scheme != TPM2_ALG_HMAC ||
            pub.publicArea.parameters.keyedHashDetail.scheme.details.hmac.hashAlg != TPM2_ALG_SHA256)
                return log_error_errno(EBADMSG, "TPM: the group key blob is not an HMAC-SHA256 key");
        for (size_t i = 0; i < n; i++)
                if (strlen(data[i]) > sizeof(((TPM2B_MAX_BUFFER *) NULL)->buffer))
                        return -E2BIG;

        r = persistent_tr(t, TPM_SRK_HANDLE, &srk);
        if (r == -ENOENT)
                r = log_error_errno(ENOENT, "TPM: no SRK at 0x%08x", TPM_SRK_HANDLE);
        if (r < 0)
                return r;
        rc = sym_Esys_Load(t->esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub, &obj);
        if (rc != TSS2_RC_SUCCESS) {
                r = tpm_fail(rc, "Load(group key)");
                goto finish;
        }
        for (size_t i = 0; i < n; i++) {
                TPM2B_MAX_BUFFER buf = { .size = (UINT16) strlen(data[i]) };
                TPM2B_DIGEST *out = NULL;

                memcpy(buf.buffer, data[i], buf.size);
                rc = sym_Esys_HMAC(t->esys, obj, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &buf, TPM2_ALG_SHA256, &out);
                if (rc != TSS2_RC_SUCCESS) {
                        r = tpm_fail(rc, "HMAC(group key)");
                        goto finish;
                }
                if (out->size != 32) {
                        sym_Esys_Free(out);
                        r = -EIO;
                        goto finish;
                }
                memcpy(ret[i], out->buffer, 32);
                explicit_bzero(out, sizeof(*out));
                sym_Esys_Free(out);
        }
        r = 0;
finish:
        tr_flush(t, &obj);
        tr_close(t, &srk);
        return r;
}

/* ---- read-only helpers (edgeprovctl doctor) ---------------------------------------------- */

int tpm_read_public(Tpm *t, uint32_t handle, uint8_t **ret_pub, size_t *ret_len) {
        ESYS_TR tr = ESYS_TR_NONE;
        int r;

        r = persistent_tr(t, handle, &tr);
        if (r < 0)
                return r;
        return read_public_close(t, &tr, ret_pub, ret_len);
}

int tpm_nv_read_all(Tpm *t, uint32_t index, size_t max, uint8_t **ret, size_t *ret_len) {
        ESYS_TR nv = ESYS_TR_NONE;
        int r;

        r = persistent_tr(t, index, &nv);
        if (r < 0)
                return r;
        r = nv_read(t, nv, "", max, ret, ret_len);
        tr_close(t, &nv);
        return r;
}
