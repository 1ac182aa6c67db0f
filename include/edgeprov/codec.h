/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Base64 (RFC 4648 standard alphabet, with padding).
 * base64_decode is strict: it rejects characters outside the alphabet, bad padding and
 * embedded whitespace.  Both return 0 or -errno (-EINVAL on bad input, -E2BIG over
 * BASE64_MAX_INPUT, -ENOMEM). */
#define BASE64_MAX_INPUT (1024 * 1024)
int base64_encode(const void *data, size_t len, char **ret);
int base64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len);

/* Lowercase RFC 4648 base32 without padding (the alphabet used for TPM registration ids). */
int base32_encode_lower_nopad(const void *data, size_t len, char **ret);

/* Percent-encoding.  Everything except the RFC 3986 unreserved set [A-Za-z0-9-._~] is
 * encoded; hex digits are lowercase when lower is true (as the Azure C SDK does),
 * uppercase otherwise.  url_decode rejects malformed escapes and %00, and decodes '+'
 * as a literal '+'. */
int url_encode(const char *s, bool lower, char **ret);
int url_decode(const char *s, size_t len, char **ret);

/* Constant-time comparison of two buffers of the same length. */
bool memeq_consttime(const void *a, const void *b, size_t len);

/* HMAC-SHA256. */
int hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t ret[32]);

/* Hex, for fingerprints and ids (lowercase). */
int hex_encode(const void *data, size_t len, char **ret);

/* A decimal number in [min, max]: digits only (no sign, space or suffix), -EINVAL otherwise. */
int parse_uint_range(const char *s, unsigned min, unsigned max, unsigned *ret);

/* Cryptographically random bytes. */
int random_bytes(void *buf, size_t len);
