/* SPDX-License-Identifier: MIT */
#pragma once

/* The TSS2 libraries (ESYS, SYS, MU, RC, TCTI loader) for tpm.c, loaded with dlopen() when a TPM
 * is first opened (tpm_open()) rather than linked: an agent with symmetric-key or X.509 (file
 * key) attestation and no group key in the TPM never maps them (≈0.4 MiB, shared by no other
 * process on a gateway).  Headers and configure's version check stay; the symbols are resolved
 * at run time into the function pointers below.  Loaded once, never unloaded. */

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_sys.h>
#include <tss2/tss2_tctildr.h>

#define TSS2_DL_SYMBOLS(X)                              \
        X(TSS2_DL_ESYS, Esys_ActivateCredential)        \
        X(TSS2_DL_ESYS, Esys_Create)                    \
        X(TSS2_DL_ESYS, Esys_CreatePrimary)             \
        X(TSS2_DL_ESYS, Esys_EvictControl)              \
        X(TSS2_DL_ESYS, Esys_Finalize)                  \
        X(TSS2_DL_ESYS, Esys_FlushContext)              \
        X(TSS2_DL_ESYS, Esys_Free)                      \
        X(TSS2_DL_ESYS, Esys_GetCapability)             \
        X(TSS2_DL_ESYS, Esys_GetSysContext)             \
        X(TSS2_DL_ESYS, Esys_HMAC)                      \
        X(TSS2_DL_ESYS, Esys_Import)                    \
        X(TSS2_DL_ESYS, Esys_Initialize)                \
        X(TSS2_DL_ESYS, Esys_Load)                      \
        X(TSS2_DL_ESYS, Esys_NV_Read)                   \
        X(TSS2_DL_ESYS, Esys_NV_ReadPublic)             \
        X(TSS2_DL_ESYS, Esys_PolicySecret)              \
        X(TSS2_DL_ESYS, Esys_ReadPublic)                \
        X(TSS2_DL_ESYS, Esys_StartAuthSession)          \
        X(TSS2_DL_ESYS, Esys_Startup)                   \
        X(TSS2_DL_ESYS, Esys_TR_Close)                  \
        X(TSS2_DL_ESYS, Esys_TR_FromTPMPublic)          \
        X(TSS2_DL_ESYS, Esys_TR_SetAuth)                \
        X(TSS2_DL_ESYS, Esys_TRSess_SetAttributes)      \
        X(TSS2_DL_SYS, Tss2_Sys_FlushContext)           \
        X(TSS2_DL_MU, Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal) \
        X(TSS2_DL_MU, Tss2_MU_TPM2B_ID_OBJECT_Unmarshal) \
        X(TSS2_DL_MU, Tss2_MU_TPM2B_PRIVATE_Marshal)    \
        X(TSS2_DL_MU, Tss2_MU_TPM2B_PRIVATE_Unmarshal)  \
        X(TSS2_DL_MU, Tss2_MU_TPM2B_PUBLIC_Marshal)     \
        X(TSS2_DL_MU, Tss2_MU_TPM2B_PUBLIC_Unmarshal)   \
        X(TSS2_DL_RC, Tss2_RC_Decode)                   \
        X(TSS2_DL_TCTILDR, Tss2_TctiLdr_Finalize)       \
        X(TSS2_DL_TCTILDR, Tss2_TctiLdr_Initialize)

#define TSS2_DL_DECLARE(lib, name) extern __typeof__(name) *sym_##name;
TSS2_DL_SYMBOLS(TSS2_DL_DECLARE)
#undef TSS2_DL_DECLARE

/* Loads the five libraries (once; a failure is retried at the next call) and resolves every
 * symbol above.  Returns 0, or -EOPNOTSUPP with a message naming the library and the Debian
 * package in *reterr_message (the caller frees it). */
int tss2_dl_open(char **reterr_message);
