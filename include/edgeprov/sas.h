/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* DPS / IoT Hub shared access signatures.
 *
 *   SharedAccessSignature sr={enc(resource)}&sig={enc(b64(hmac))}&se={expiry}[&skn={name}]
 *   signed string = {sr as sent} "\n" {se as sent}
 */

#define SAS_TOKEN_MAX 2048
#define SAS_DEFAULT_KEY_NAME "registration"

/* Computes the encoded resource ("sr", lowercase %2f as the C SDK does) and the string to
 * sign for resource (unencoded, e.g. "0ne00000A0A/registrations/dev1") and expiry. */
int sas_string_to_sign(const char *resource, uint64_t expiry, char **ret_sr, char **ret_string_to_sign);

/* Assembles a token from an encoded sr, a raw 32-byte signature and the expiry.
 * key_name may be NULL (no skn field). */
int sas_token_format(const char *sr, const uint8_t sig[32], uint64_t expiry, const char *key_name, char **ret);

/* sas_string_to_sign + HMAC with the (already base64-decoded) key + sas_token_format. */
int sas_token_build(const void *key, size_t key_len, const char *resource, uint64_t expiry,
                    const char *key_name, char **ret);

/* Same, with a base64 key as DPS shows it. */
int sas_token_build_b64(const char *key_b64, const char *resource, uint64_t expiry, const char *key_name,
                        char **ret);

/* Enrollment-group key derivation: base64(HMAC-SHA256(base64decode(group_key), registration_id)). */
int sas_derive_device_key(const char *group_key_b64, const char *registration_id, char **ret_key_b64);

typedef struct SasToken {
        char *sr_raw;      /* sr exactly as received (still encoded) */
        char *resource;    /* url-decoded sr */
        char *se_raw;      /* se exactly as received */
        char *skn;         /* decoded, NULL when absent */
        uint64_t expiry;
        uint8_t sig[32];
} SasToken;

/* Parses "SharedAccessSignature k=v&k=v..." (fields in any order, each at most once).
 * -EINVAL for anything malformed, -E2BIG over SAS_TOKEN_MAX. */
int sas_token_parse(const char *token, size_t len, SasToken *ret);
void sas_token_done(SasToken *t);

/* Verifies t against key for expected_resource (compared case-insensitively with the
 * decoded sr) at time now (seconds since the epoch).  Returns
 *   0             signature good
 *   -EBADR        sr names another resource
 *   -EKEYEXPIRED  se <= now
 *   -EKEYREJECTED signature does not match
 * The comparison of signatures runs in constant time. */
int sas_token_verify(const SasToken *t, const void *key, size_t key_len, const char *expected_resource,
                     uint64_t now);
