/* SPDX-License-Identifier: MIT */
/* SHA-256 / HMAC-SHA256 (src/lib/sha256.c): the FIPS 180-2 and RFC 4231 vectors, incremental
 * updates at every split, and a differential test against OpenSSL (which only this test
 * links for that purpose). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "edgeprov/codec.h"
#include "edgeprov/macro.h"
#include "edgeprov/sha256.h"

static void assert_hex(const uint8_t *md, size_t len, const char *expected) {
        _cleanup_free_ char *hex = NULL;
        assert_int_equal(hex_encode(md, len, &hex), 0);
        assert_string_equal(hex, expected);
}

static void test_fips_vectors(void **state) {
        uint8_t md[32];

        /* FIPS 180-2 appendix B.1, B.2, B.3 */
        sha256("abc", 3, md);
        assert_hex(md, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

        const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_int_equal(strlen(m448), 56);
        sha256(m448, strlen(m448), md);
        assert_hex(md, 32, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

        Sha256 s;
        sha256_init(&s);
        for (unsigned i = 0; i < 1000000 / 1000; i++) {
                char chunk[1000];
                memset(chunk, 'a', sizeof(chunk));
                sha256_update(&s, chunk, sizeof(chunk));
        }
        sha256_final(&s, md);
        assert_hex(md, 32, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

        /* the same million in chunks that never line up with a block */
        sha256_init(&s);
        for (size_t done = 0, n = 1; done < 1000000; done += n, n = n % 97 + 1) {
                char chunk[97];
                memset(chunk, 'a', sizeof(chunk));
                sha256_update(&s, chunk, MIN(n, 1000000 - done));
        }
        sha256_final(&s, md);
        assert_hex(md, 32, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

        /* empty, with and without a pointer */
        sha256("", 0, md);
        assert_hex(md, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        sha256(NULL, 0, md);
        assert_hex(md, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

        /* FIPS 180-4 examples: the 896-bit message (two blocks after padding at 112 bytes) */
        const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
        sha256(m896, strlen(m896), md);
        assert_hex(md, 32, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_rfc4231(void **state) {
        static const char data7[] =
                "This is a test using a larger than block-size key and a larger than block-size data. The key needs "
                "to be hashed before being used by the HMAC algorithm.";
        uint8_t k0b[20], kaa20[20], k25[25], k0c[20], kaa131[131], ddd[50], dcd[50];

        memset(k0b, 0x0b, sizeof(k0b));
        memset(kaa20, 0xaa, sizeof(kaa20));
        for (unsigned i = 0; i < sizeof(k25); i++)
                k25[i] = (uint8_t) (i + 1);
        memset(k0c, 0x0c, sizeof(k0c));
        memset(kaa131, 0xaa, sizeof(kaa131));
        memset(ddd, 0xdd, sizeof(ddd));
        memset(dcd, 0xcd, sizeof(dcd));

        const struct {
                const void *key;
                size_t key_len;
                const void *data;
                size_t len;
                size_t out_len; /* case 5 is truncated to 128 bits */
                const char *hex;
        } v[] = {
                { k0b, 20, "Hi There", 8, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
                { "Jefe", 4, "what do ya want for nothing?", 28, 32,
                  "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
                { kaa20, 20, ddd, 50, 32, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
                { k25, 25, dcd, 50, 32, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
                { k0c, 20, "Test With Truncation", 20, 16, "a3b6167473100ee06e0c796c2955552b" },
                { kaa131, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54, 32,
                  "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
                { kaa131, 131, data7, sizeof(data7) - 1, 32,
                  "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
        };
        assert_int_equal(sizeof(data7) - 1, 152);

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                uint8_t mac[32], mac2[32];

                print_message("RFC 4231 test case %zu\n", i + 1);
                hmac_sha256_oneshot(v[i].key, v[i].key_len, v[i].data, v[i].len, mac);
                assert_hex(mac, v[i].out_len, v[i].hex);

                /* the codec.h wrapper the rest of the code uses */
                assert_int_equal(hmac_sha256(v[i].key, v[i].key_len, v[i].data, v[i].len, mac2), 0);
                assert_memory_equal(mac, mac2, 32);

                /* the streaming context, one byte at a time */
                HmacSha256 h;
                hmac_sha256_init(&h, v[i].key, v[i].key_len);
                for (size_t j = 0; j < v[i].len; j++)
                        hmac_sha256_update(&h, (const uint8_t *) v[i].data + j, 1);
                hmac_sha256_final(&h, mac2);
                assert_memory_equal(mac, mac2, 32);
        }
}

static bool all_zero(const void *p, size_t len) {
        const uint8_t *b = p;
        for (size_t i = 0; i < len; i++)
                if (b[i])
                        return false;
        return true;
}

static void test_wipe(void **state) {
        uint8_t mac[32];
        HmacSha256 h;

        hmac_sha256_init(&h, "secret", 6);
        hmac_sha256_update(&h, "data", 4);
        assert_false(all_zero(&h, sizeof(h)));
        hmac_sha256_final(&h, mac);
        assert_true(all_zero(&h, sizeof(h)));

        hmac_sha256_init(&h, "secret", 6);
        hmac_sha256_wipe(&h);
        assert_true(all_zero(&h, sizeof(h)));

        Sha256 s;
        sha256_init(&s);
        sha256_update(&s, "abc", 3);
        sha256_final(&s, mac);
        assert_true(all_zero(&s, sizeof(s)));
}

static void test_incremental_splits(void **state) {
        uint8_t msg[200], whole[32], md[32];

        for (unsigned i = 0; i < sizeof(msg); i++)
                msg[i] = (uint8_t) (i * 7 + 3);

        sha256(msg, sizeof(msg), whole);
        for (size_t a = 0; a <= sizeof(msg); a++) {
                Sha256 s;
                sha256_init(&s);
                sha256_update(&s, msg, a);
                sha256_update(&s, msg + a, sizeof(msg) - a);
                sha256_final(&s, md);
                assert_memory_equal(md, whole, 32);

                /* three pieces: a, then up to 64, then the rest */
                size_t b = MIN(sizeof(msg), a + 64);
                sha256_init(&s);
                sha256_update(&s, msg, a);
                sha256_update(&s, msg + a, b - a);
                sha256_update(&s, NULL, 0);
                sha256_update(&s, msg + b, sizeof(msg) - b);
                sha256_final(&s, md);
                assert_memory_equal(md, whole, 32);
        }

        hmac_sha256_oneshot("k", 1, msg, sizeof(msg), whole);
        for (size_t a = 0; a <= sizeof(msg); a++) {
                HmacSha256 h;
                hmac_sha256_init(&h, "k", 1);
                hmac_sha256_update(&h, msg, a);
                hmac_sha256_update(&h, msg + a, sizeof(msg) - a);
                hmac_sha256_final(&h, md);
                assert_memory_equal(md, whole, 32);
        }
}

/* xorshift64*: reproducible from the printed seed */
static uint64_t rng_state;
static uint64_t rng(void) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545F4914F6CDD1DULL;
}

static void openssl_sha256(const void *data, size_t len, uint8_t md[32]) {
        unsigned n = 0;
        assert_int_equal(EVP_Digest(data, len, md, &n, EVP_sha256(), NULL), 1);
        assert_int_equal(n, 32);
}

static void openssl_hmac(const void *key, size_t key_len, const void *data, size_t len, uint8_t md[32]) {
        static const uint8_t empty = 0;
        unsigned n = 0;
        assert_non_null(HMAC(EVP_sha256(), key_len ? key : &empty, (int) key_len, data, len, md, &n));
        assert_int_equal(n, 32);
}

static void test_lengths_vs_openssl(void **state) {
        /* every length around the padding boundaries (55/56, 63/64, 119/120, ...) */
        uint8_t buf[300], a[32], b[32];

        for (unsigned i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t) (0xa5 ^ i);
        for (size_t len = 0; len <= sizeof(buf); len++) {
                sha256(buf, len, a);
                openssl_sha256(buf, len, b);
                assert_memory_equal(a, b, 32);
        }
        /* every key length around the block size (64 → hashed beyond) */
        for (size_t kl = 0; kl <= 200; kl++) {
                hmac_sha256_oneshot(buf, kl, "msg", 3, a);
                openssl_hmac(buf, kl, "msg", 3, b);
                assert_memory_equal(a, b, 32);
        }
}

static void test_random_vs_openssl(void **state) {
        const char *e = getenv("SHA256_TEST_SEED");
        uint64_t seed = e ? strtoull(e, NULL, 0) : ((uint64_t) time(NULL) << 20 ^ (uint64_t) getpid());
        if (seed == 0)
                seed = 1;
        rng_state = seed;
        print_message("SHA256_TEST_SEED=%llu\n", (unsigned long long) seed);

        for (unsigned iter = 0; iter < 2000; iter++) {
                uint8_t key[200], data[300], a[32], b[32], c[32];
                size_t key_len = rng() % (sizeof(key) + 1), len = rng() % (sizeof(data) + 1);

                for (size_t i = 0; i < key_len; i++)
                        key[i] = (uint8_t) rng();
                for (size_t i = 0; i < len; i++)
                        data[i] = (uint8_t) rng();

                sha256(data, len, a);
                openssl_sha256(data, len, b);
                if (memcmp(a, b, 32) != 0)
                        fail_msg("SHA-256 differs from OpenSSL at iteration %u, len %zu", iter, len);

                assert_int_equal(hmac_sha256(key, key_len, data, len, a), 0);
                openssl_hmac(key, key_len, data, len, b);
                if (memcmp(a, b, 32) != 0)
                        fail_msg("HMAC differs from OpenSSL at iteration %u, key %zu, len %zu", iter, key_len,
                                 len);

                /* the streaming context in random pieces */
                HmacSha256 h;
                hmac_sha256_init(&h, key, key_len);
                for (size_t done = 0; done < len;) {
                        size_t n = (size_t) (rng() % 80); /* not inside MIN(): it evaluates twice */
                        n = MIN(n, len - done);
                        hmac_sha256_update(&h, data + done, n);
                        done += n;
                }
                hmac_sha256_final(&h, c);
                if (memcmp(a, c, 32) != 0)
                        fail_msg("streaming HMAC differs at iteration %u", iter);
        }
}

static void test_codec_wrapper_errors(void **state) {
        uint8_t mac[32], ref[32];

        assert_int_equal(hmac_sha256(NULL, 3, "x", 1, mac), -EINVAL);
        assert_int_equal(hmac_sha256("k", 1, NULL, 1, mac), -EINVAL);
        assert_int_equal(hmac_sha256("k", 1, "x", 1, NULL), -EINVAL);
        assert_int_equal(hmac_sha256(NULL, 0, NULL, 0, mac), 0);
        openssl_hmac(NULL, 0, "", 0, ref);
        assert_memory_equal(mac, ref, 32);
        assert_hex(mac, 32, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fips_vectors),       cmocka_unit_test(test_rfc4231),
                cmocka_unit_test(test_wipe),               cmocka_unit_test(test_incremental_splits),
                cmocka_unit_test(test_lengths_vs_openssl), cmocka_unit_test(test_random_vs_openssl),
                cmocka_unit_test(test_codec_wrapper_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
