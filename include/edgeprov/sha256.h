/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) without OpenSSL, so that a process that
 * only signs SAS tokens and hashes fingerprints does not have to map libcrypto.
 *
 * Portable C without CPU extensions: the inputs are a few hundred bytes
 * (SAS strings, registration ids, fingerprints), where correctness and a small footprint
 * matter more than speed.  Not constant-time with respect to message *length*; constant-time
 * with respect to content (no data-dependent branches or table lookups).
 *
 * None of these can fail.  A NULL data pointer is accepted when its length is 0. */

#define SHA256_DIGEST_SIZE 32
#define SHA256_BLOCK_SIZE 64

typedef struct Sha256 {
        uint32_t h[8];
        uint64_t total;                   /* bytes hashed so far */
        uint8_t buf[SHA256_BLOCK_SIZE];   /* partial block */
        size_t buf_len;
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t len);
/* Writes the digest and wipes the context (it must be re-initialised before reuse). */
void sha256_final(Sha256 *s, uint8_t out[static SHA256_DIGEST_SIZE]);
void sha256(const void *data, size_t len, uint8_t out[static SHA256_DIGEST_SIZE]);

/* HMAC-SHA256.  The context holds key-derived state; hmac_sha256_final() wipes it
 * (explicit_bzero), and a context abandoned before final must be wiped with
 * hmac_sha256_wipe(). */
typedef struct HmacSha256 {
        Sha256 inner;
        Sha256 outer;
} HmacSha256;

void hmac_sha256_init(HmacSha256 *h, const void *key, size_t key_len);
void hmac_sha256_update(HmacSha256 *h, const void *data, size_t len);
void hmac_sha256_final(HmacSha256 *h, uint8_t out[static SHA256_DIGEST_SIZE]);
void hmac_sha256_wipe(HmacSha256 *h);

/* One shot; the public wrapper with argument checks is hmac_sha256() in codec.h. */
void hmac_sha256_oneshot(const void *key, size_t key_len, const void *data, size_t len,
                         uint8_t out[static SHA256_DIGEST_SIZE]);
