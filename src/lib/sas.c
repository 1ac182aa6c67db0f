/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeprov/codec.h"
#include "edgeprov/macro.h"
#include "edgeprov/sas.h"

#define SAS_PREFIX "SharedAccessSignature "

int sas_string_to_sign(const char *resource, uint64_t expiry, char **ret_sr, char **ret_string_to_sign) {
        _cleanup_free_ char *sr = NULL, *sts = NULL;
        int r;

        if (isempty(resource))
                return -EINVAL;

        r = url_encode(resource, /* lower= */ true, &sr);
        if (r < 0)
                return r;

        if (asprintf(&sts, "%s\n%" PRIu64, sr, expiry) < 0) {
                sts = NULL;
                return -ENOMEM;
        }

        if (ret_sr)
                *ret_sr = TAKE_PTR(sr);
        if (ret_string_to_sign)
                *ret_string_to_sign = TAKE_PTR(sts);
        return 0;
}

int sas_token_format(const char *sr, const uint8_t sig[32], uint64_t expiry, const char *key_name, char **ret) {
        _cleanup_free_ char *b64 = NULL, *sig_enc = NULL, *skn_enc = NULL, *s = NULL;
        int r;

        if (isempty(sr) || !sig || !ret)
                return -EINVAL;

        r = base64_encode(sig, 32, &b64);
        if (r < 0)
                return r;
        /* The signature's escapes are uppercase (%2B, %3D) in every client. */
        r = url_encode(b64, /* lower= */ false, &sig_enc);
        if (r < 0)
                return r;
        if (key_name) {
                r = url_encode(key_name, /* lower= */ false, &skn_enc);
                if (r < 0)
                        return r;
        }

        if (asprintf(&s, SAS_PREFIX "sr=%s&sig=%s&se=%" PRIu64 "%s%s", sr, sig_enc, expiry, skn_enc ? "&skn=" : "",
                     strempty(skn_enc)) < 0) {
                s = NULL;
                return -ENOMEM;
        }
        if (strlen(s) > SAS_TOKEN_MAX)
                return -E2BIG;

        *ret = TAKE_PTR(s);
        return 0;
}

int sas_token_build(const void *key, size_t key_len, const char *resource, uint64_t expiry,
                    const char *key_name, char **ret) {
        _cleanup_free_ char *sr = NULL, *sts = NULL;
        uint8_t sig[32];
        int r;

        if (!key || key_len == 0 || !ret)
                return -EINVAL;

        r = sas_string_to_sign(resource, expiry, &sr, &sts);
        if (r < 0)
                return r;

        r = hmac_sha256(key, key_len, sts, strlen(sts), sig);
        if (r < 0)
                return r;

        return sas_token_format(sr, sig, expiry, key_name, ret);
}

int sas_token_build_b64(const char *key_b64, const char *resource, uint64_t expiry, const char *key_name,
                        char **ret) {
        _cleanup_free_ uint8_t *key = NULL;
        size_t key_len = 0;
        int r;

        if (!key_b64)
                return -EINVAL;

        r = base64_decode(key_b64, strlen(key_b64), &key, &key_len);
        if (r < 0)
                return r;

        r = sas_token_build(key, key_len, resource, expiry, key_name, ret);
        explicit_bzero(key, key_len);
        return r;
}

int sas_derive_device_key(const char *group_key_b64, const char *registration_id, char **ret_key_b64) {
        _cleanup_free_ uint8_t *key = NULL;
        size_t key_len = 0;
        uint8_t mac[32];
        int r;

        if (!group_key_b64 || isempty(registration_id) || !ret_key_b64)
                return -EINVAL;

        r = base64_decode(group_key_b64, strlen(group_key_b64), &key, &key_len);
        if (r < 0)
                return r;
        if (key_len == 0)
                return -EINVAL;

        r = hmac_sha256(key, key_len, registration_id, strlen(registration_id), mac);
        explicit_bzero(key, key_len);
        if (r < 0)
                return r;

        r = base64_encode(mac, sizeof(mac), ret_key_b64);
        explicit_bzero(mac, sizeof(mac));
        return r;
}

/* Decimal seconds, digits only, no sign, fits in uint64_t. */
static int parse_expiry(const char *s, size_t len, uint64_t *ret) {
        uint64_t v = 0;

        if (len == 0 || len > 20)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                unsigned d = s[i] - '0';
                if (v > (UINT64_MAX - d) / 10)
                        return -EINVAL;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

static int strndup_checked(const char *s, size_t len, char **ret) {
        char *d = strndup(s, len);
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

int sas_token_parse(const char *token, size_t len, SasToken *ret) {
        _cleanup_(sas_token_done) SasToken t = {};
        _cleanup_free_ char *sig_dec = NULL;
        _cleanup_free_ uint8_t *sig = NULL;
        bool have_sig = false, have_se = false;
        size_t sig_len = 0;
        int r;

        if (!ret || !token)
                return -EINVAL;
        if (len > SAS_TOKEN_MAX)
                return -E2BIG;
        if (memchr(token, 0, len))
                return -EINVAL;

        const size_t pl = strlen(SAS_PREFIX);
        if (len < pl || memcmp(token, SAS_PREFIX, pl) != 0)
                return -EINVAL;

        const char *p = token + pl, *end = token + len;
        if (p == end)
                return -EINVAL;

        for (;;) {
                const char *amp = memchr(p, '&', end - p);
                const char *fend = amp ?: end;
                const char *eq = memchr(p, '=', fend - p);

                if (!eq || eq == p)
                        return -EINVAL;

                size_t kl = eq - p;
                const char *v = eq + 1;
                size_t vl = fend - v;

                if (kl == 2 && memcmp(p, "sr", 2) == 0) {
                        if (t.sr_raw || vl == 0)
                                return -EINVAL;
                        r = strndup_checked(v, vl, &t.sr_raw);
                        if (r < 0)
                                return r;
                        r = url_decode(v, vl, &t.resource);
                        if (r < 0)
                                return r;
                        if (isempty(t.resource))
                                return -EINVAL;
                } else if (kl == 3 && memcmp(p, "sig", 3) == 0) {
                        if (have_sig || vl == 0)
                                return -EINVAL;
                        have_sig = true;
                        r = url_decode(v, vl, &sig_dec);
                        if (r < 0)
                                return r;
                        r = base64_decode(sig_dec, strlen(sig_dec), &sig, &sig_len);
                        if (r < 0)
                                return r;
                        if (sig_len != sizeof(t.sig))
                                return -EINVAL;
                        memcpy(t.sig, sig, sizeof(t.sig));
                } else if (kl == 2 && memcmp(p, "se", 2) == 0) {
                        if (have_se)
                                return -EINVAL;
                        have_se = true;
                        r = parse_expiry(v, vl, &t.expiry);
                        if (r < 0)
                                return r;
                        r = strndup_checked(v, vl, &t.se_raw);
                        if (r < 0)
                                return r;
                } else if (kl == 3 && memcmp(p, "skn", 3) == 0) {
                        if (t.skn)
                                return -EINVAL;
                        r = url_decode(v, vl, &t.skn);
                        if (r < 0)
                                return r;
                }
                /* other fields are not signed and carry nothing we use: ignored */

                if (!amp)
                        break;
                p = amp + 1;
                if (p == end) /* trailing '&' */
                        return -EINVAL;
        }

        if (!t.sr_raw || !have_sig || !have_se)
                return -EINVAL;

        *ret = t;
        t = (SasToken) {};
        return 0;
}

void sas_token_done(SasToken *t) {
        if (!t)
                return;
        free(t->sr_raw);
        free(t->resource);
        free(t->se_raw);
        free(t->skn);
        *t = (SasToken) {};
}

int sas_token_verify(const SasToken *t, const void *key, size_t key_len, const char *expected_resource,
                     uint64_t now) {
        _cleanup_free_ char *sts = NULL;
        uint8_t mac[32];
        int r;

        if (!t || !t->sr_raw || !t->resource || !t->se_raw || !key || key_len == 0 || !expected_resource)
                return -EINVAL;

        if (!strcaseeq(t->resource, expected_resource))
                return -EBADR;

        /* Sign over sr and se exactly as they were sent. */
        if (asprintf(&sts, "%s\n%s", t->sr_raw, t->se_raw) < 0) {
                sts = NULL;
                return -ENOMEM;
        }

        r = hmac_sha256(key, key_len, sts, strlen(sts), mac);
        if (r < 0)
                return r;

        bool good = memeq_consttime(mac, t->sig, sizeof(mac));
        explicit_bzero(mac, sizeof(mac));
        if (!good)
                return -EKEYREJECTED;

        if (t->expiry <= now)
                return -EKEYEXPIRED;

        return 0;
}
