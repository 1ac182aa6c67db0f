/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sys/random.h>

#include "edgeprov/codec.h"
#include "edgeprov/macro.h"
#include "edgeprov/sha256.h"

static const char base64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_encode(const void *data, size_t len, char **ret) {
        const uint8_t *p = data;

        if (!ret || (!data && len > 0))
                return -EINVAL;
        if (len > BASE64_MAX_INPUT)
                return -E2BIG;

        size_t n = (len + 2) / 3 * 4;
        _cleanup_free_ char *s = malloc(n + 1);
        if (!s)
                return -ENOMEM;

        char *o = s;
        size_t i = 0;
        for (; i + 3 <= len; i += 3) {
                uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 | p[i + 2];
                *o++ = base64_alphabet[(v >> 18) & 0x3f];
                *o++ = base64_alphabet[(v >> 12) & 0x3f];
                *o++ = base64_alphabet[(v >> 6) & 0x3f];
                *o++ = base64_alphabet[v & 0x3f];
        }
        if (len - i == 1) {
                uint32_t v = (uint32_t) p[i] << 16;
                *o++ = base64_alphabet[(v >> 18) & 0x3f];
                *o++ = base64_alphabet[(v >> 12) & 0x3f];
                *o++ = '=';
                *o++ = '=';
        } else if (len - i == 2) {
                uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8;
                *o++ = base64_alphabet[(v >> 18) & 0x3f];
                *o++ = base64_alphabet[(v >> 12) & 0x3f];
                *o++ = base64_alphabet[(v >> 6) & 0x3f];
                *o++ = '=';
        }
        *o = 0;

        *ret = TAKE_PTR(s);
        return 0;
}

static int base64_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

int base64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len) {
        if (!ret || (!s && len > 0))
                return -EINVAL;
        if (len > BASE64_MAX_INPUT)
                return -E2BIG;
        if (len % 4 != 0)
                return -EINVAL;

        size_t pad = 0;
        if (len > 0 && s[len - 1] == '=') {
                pad++;
                if (s[len - 2] == '=')
                        pad++;
        }

        /* +1 so that an empty result is still a valid allocation */
        _cleanup_free_ uint8_t *buf = malloc(len / 4 * 3 + 1);
        if (!buf)
                return -ENOMEM;

        size_t n = 0;
        for (size_t i = 0; i < len; i += 4) {
                bool last = i + 4 == len;
                int v[4];

                for (size_t j = 0; j < 4; j++) {
                        if (last && s[i + j] == '=' && j >= 4 - pad) {
                                v[j] = 0;
                                continue;
                        }
                        v[j] = base64_value(s[i + j]);
                        if (v[j] < 0)
                                return -EINVAL;
                }

                uint32_t x = (uint32_t) v[0] << 18 | (uint32_t) v[1] << 12 | (uint32_t) v[2] << 6 | (uint32_t) v[3];
                buf[n++] = (x >> 16) & 0xff;
                if (!last || pad < 2)
                        buf[n++] = (x >> 8) & 0xff;
                if (!last || pad < 1)
                        buf[n++] = x & 0xff;

                /* Strict: the bits dropped by the padding must be zero (canonical encoding). */
                if (last && pad == 2 && (v[1] & 0x0f) != 0)
                        return -EINVAL;
                if (last && pad == 1 && (v[2] & 0x03) != 0)
                        return -EINVAL;
        }

        *ret = TAKE_PTR(buf);
        if (ret_len)
                *ret_len = n;
        return 0;
}

int base32_encode_lower_nopad(const void *data, size_t len, char **ret) {
        static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
        const uint8_t *p = data;

        if (!ret || (!data && len > 0))
                return -EINVAL;
        if (len > BASE64_MAX_INPUT)
                return -E2BIG;

        _cleanup_free_ char *s = malloc((len * 8 + 4) / 5 + 1);
        if (!s)
                return -ENOMEM;

        char *o = s;
        uint32_t acc = 0;
        unsigned bits = 0;
        for (size_t i = 0; i < len; i++) {
                acc = (acc << 8) | p[i];
                bits += 8;
                while (bits >= 5) {
                        *o++ = alphabet[(acc >> (bits - 5)) & 0x1f];
                        bits -= 5;
                }
                acc &= (1u << bits) - 1;
        }
        if (bits > 0)
                *o++ = alphabet[(acc << (5 - bits)) & 0x1f];
        *o = 0;

        *ret = TAKE_PTR(s);
        return 0;
}

static bool char_is_unreserved(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '.' || c == '_' || c == '~';
}

int url_encode(const char *s, bool lower, char **ret) {
        const char *hex = lower ? "0123456789abcdef" : "0123456789ABCDEF";

        if (!s || !ret)
                return -EINVAL;

        size_t l = strlen(s);
        if (l > BASE64_MAX_INPUT)
                return -E2BIG;

        _cleanup_free_ char *buf = malloc(l * 3 + 1);
        if (!buf)
                return -ENOMEM;

        char *o = buf;
        for (const char *i = s; *i; i++) {
                if (char_is_unreserved(*i))
                        *o++ = *i;
                else {
                        uint8_t c = (uint8_t) *i;
                        *o++ = '%';
                        *o++ = hex[c >> 4];
                        *o++ = hex[c & 0xf];
                }
        }
        *o = 0;

        *ret = TAKE_PTR(buf);
        return 0;
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int url_decode(const char *s, size_t len, char **ret) {
        if (!ret || (!s && len > 0))
                return -EINVAL;
        if (len > BASE64_MAX_INPUT)
                return -E2BIG;

        _cleanup_free_ char *buf = malloc(len + 1);
        if (!buf)
                return -ENOMEM;

        char *o = buf;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == 0)
                        return -EINVAL;
                if (s[i] != '%') {
                        *o++ = s[i];
                        continue;
                }
                if (len - i < 3)
                        return -EINVAL;
                int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                if (hi == 0 && lo == 0)
                        return -EINVAL;
                *o++ = (char) (hi << 4 | lo);
                i += 2;
        }
        *o = 0;

        *ret = TAKE_PTR(buf);
        return 0;
}

bool memeq_consttime(const void *a, const void *b, size_t len) {
        /* Every byte is read whatever the differences; volatile keeps the compiler from
         * turning the accumulation into an early exit. */
        const volatile uint8_t *x = a, *y = b;
        uint8_t d = 0;

        for (size_t i = 0; i < len; i++)
                d |= x[i] ^ y[i];
        return d == 0;
}

int hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t ret[32]) {
        if (!ret || (!key && key_len > 0) || (!data && len > 0))
                return -EINVAL;
        if (key_len > INT_MAX)
                return -E2BIG;

        hmac_sha256_oneshot(key, key_len, data, len, ret);
        return 0;
}

int hex_encode(const void *data, size_t len, char **ret) {
        static const char hex[] = "0123456789abcdef";
        const uint8_t *p = data;

        if (!ret || (!data && len > 0))
                return -EINVAL;
        if (len > BASE64_MAX_INPUT)
                return -E2BIG;

        _cleanup_free_ char *s = malloc(len * 2 + 1);
        if (!s)
                return -ENOMEM;

        for (size_t i = 0; i < len; i++) {
                s[i * 2] = hex[p[i] >> 4];
                s[i * 2 + 1] = hex[p[i] & 0xf];
        }
        s[len * 2] = 0;

        *ret = TAKE_PTR(s);
        return 0;
}

int random_bytes(void *buf, size_t len) {
        uint8_t *p = buf;

        if (!buf && len > 0)
                return -EINVAL;

        /* getrandom(2) without flags: the kernel's CSPRNG, blocking only until it is
         * initialised at boot.  It may return fewer bytes than asked (requests over 256 bytes
         * can be interrupted by a signal) or fail with EINTR. */
        while (len > 0) {
                ssize_t n = getrandom(p, len, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

int parse_uint_range(const char *s, unsigned min, unsigned max, unsigned *ret) {
        char *end;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno != 0 || *end || v < min || v > max)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}
