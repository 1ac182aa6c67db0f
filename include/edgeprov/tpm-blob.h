/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* TPM 2.0 credential blobs in software (dps-protocol.md §6.6–6.8): no TPM, only OpenSSL.
 *
 * The service builds the DPS `authenticationKey` with tpm_blob_make(): an HMAC key object
 * duplicated to the device's SRK (label DUPLICATE, inner AES-128-CFB wrapper) and the inner
 * wrapper key sealed to the device's EK with MakeCredential (label IDENTITY, bound to the
 * SRK's Name).  The agent splits a received blob with tpm_blob_split() before handing the
 * fields to its TPM.
 *
 * Every parser has a size limit and returns -EINVAL (malformed), -E2BIG (over a limit) or
 * -EOPNOTSUPP (well formed, but not a key this code can use); never crashes. */

#define TPM2B_PUBLIC_MAX 1024     /* marshaled TPM2B_PUBLIC (a TPMT_PUBLIC is < 640 bytes) */
#define TPM_RSA_MODULUS_MAX 512   /* RSA-4096 */
#define TPM_HMAC_KEY_MAX 64       /* what TPM2_Import accepts for a SHA-256 keyed hash */
#define TPM_BLOB_MAX 4096         /* a whole authenticationKey, decoded (798 bytes for RSA-2048) */
#define TPM_NAME_SHA256_SIZE 34   /* u16 nameAlg || SHA-256 */
#define TPM_INNER_KEY_SIZE 16     /* AES-128 inner wrapper key = the "credential" */

/* TPM algorithm ids and attribute bits used here (TPM 2.0 Part 2). */
#define TPM_ALG_RSA 0x0001
#define TPM_ALG_KEYEDHASH 0x0008
#define TPM_ALG_SHA256 0x000B
#define TPM_ALG_HMAC 0x0005
#define TPM_ALG_AES 0x0006
#define TPM_ALG_CFB 0x0043
#define TPM_ALG_NULL 0x0010
#define TPM_ATTR_RESTRICTED 0x00010000u
#define TPM_ATTR_DECRYPT 0x00020000u

/* A parsed TPM2B_PUBLIC of an RSA storage key (EK or SRK). */
typedef struct TpmRsaPublic {
        uint16_t name_alg;
        uint32_t attributes;
        uint16_t sym_alg, sym_bits, sym_mode;
        uint16_t key_bits;
        uint32_t exponent;                     /* 0 in the TPM structure is returned as 65537 */
        uint8_t modulus[TPM_RSA_MODULUS_MAX];
        size_t modulus_len;
        uint8_t tpmt[TPM2B_PUBLIC_MAX];        /* the TPMT_PUBLIC bytes (what the Name hashes) */
        size_t tpmt_len;
} TpmRsaPublic;

/* Parses a marshaled TPM2B_PUBLIC (2-byte size + TPMT_PUBLIC, nothing after it).
 * -EOPNOTSUPP unless it is an RSA restricted decryption key with nameAlg SHA-256, symmetric
 * AES-128-CFB and a modulus of keyBits bits (what MakeCredential/Duplicate here support). */
int tpm_rsa_public_parse(const void *buf, size_t len, TpmRsaPublic *ret);

/* The same RSA key (modulus and exponent), ignoring any encoding difference elsewhere. */
bool tpm_rsa_public_same_key(const TpmRsaPublic *a, const TpmRsaPublic *b);

/* Name = u16(nameAlg) || SHA-256(TPMT_PUBLIC). */
int tpm_public_name(const TpmRsaPublic *pub, uint8_t ret[TPM_NAME_SHA256_SIZE]);

/* KDFa with SHA-256 (TPM 2.0 Part 1 §11.4.9.2): label is used with its terminating NUL. */
int tpm_kdfa_sha256(const void *key, size_t key_len, const char *label, const void *context_u, size_t u_len,
                    const void *context_v, size_t v_len, unsigned bits, uint8_t *ret);

/* AES-128-CFB (full-block feedback), IV all zero, as the TPM uses it for wrappers. */
int tpm_aes128_cfb(const uint8_t key[16], bool encrypt, const void *in, size_t len, uint8_t *out);

/* The random values of a blob.  Tests pass fixed ones; NULL means fresh random bytes.
 * (RSA-OAEP adds its own randomness in any case.) */
typedef struct TpmBlobSeeds {
        uint8_t seed_value[32];          /* obfuscation value of the HMAC key's sensitive area */
        uint8_t inner_key[TPM_INNER_KEY_SIZE];
        uint8_t dup_seed[32];
        uint8_t cred_seed[32];
} TpmBlobSeeds;

/* Builds the authenticationKey blob (decoded) for hmac_key (1..TPM_HMAC_KEY_MAX bytes):
 * TPM2B_ID_OBJECT || TPM2B_ENCRYPTED_SECRET || TPM2B_PRIVATE || TPM2B_ENCRYPTED_SECRET ||
 * TPM2B_PUBLIC || TPM2B_DATA (empty). */
int tpm_blob_make(const TpmRsaPublic *ek, const TpmRsaPublic *srk, const void *hmac_key, size_t hmac_key_len,
                  const TpmBlobSeeds *seeds, uint8_t **ret, size_t *ret_len);

/* The marshaled HMAC key TPMT_PUBLIC of step A (keyed hash, sign|userWithAuth|noDA, the
 * PolicyCommandCode(Duplicate) policy, unique = SHA-256(seed_value || key)); *ret_len ≤ 128. */
int tpm_hmac_key_public(const uint8_t seed_value[32], const void *hmac_key, size_t hmac_key_len,
                        uint8_t ret[128], size_t *ret_len);

/* A blob split into its six fields; each slice includes its 2-byte size header and points into
 * the caller's buffer. */
typedef struct TpmBlobSlice {
        const uint8_t *data;
        size_t len;
} TpmBlobSlice;

typedef struct TpmBlobFields {
        TpmBlobSlice credential_blob;   /* TPM2B_ID_OBJECT */
        TpmBlobSlice secret;            /* TPM2B_ENCRYPTED_SECRET, for the EK */
        TpmBlobSlice duplicate;         /* TPM2B_PRIVATE */
        TpmBlobSlice sym_seed;          /* TPM2B_ENCRYPTED_SECRET, for the SRK */
        TpmBlobSlice object_public;     /* TPM2B_PUBLIC */
        TpmBlobSlice uri_data;          /* TPM2B_DATA, may be 2 bytes (empty) */
} TpmBlobFields;

/* -EINVAL when a field is truncated, a size header is 0 where content is required, or bytes
 * follow field 6; -E2BIG over TPM_BLOB_MAX or over a field's TPM limit. */
int tpm_blob_split(const void *blob, size_t len, TpmBlobFields *ret);
