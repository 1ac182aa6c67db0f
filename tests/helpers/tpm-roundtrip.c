/* SPDX-License-Identifier: MIT */
/* Integration helper: the service's software blob against a real TPM (swtpm) through the
 * agent's ESYS code.
 *
 *   tpm-roundtrip TCTI identity            print registration id and base64 EK
 *   tpm-roundtrip TCTI roundtrip N SLOT     N times: make a blob for a fresh key, activate it
 *                                           into SLOT, HMAC inside the TPM == HMAC in software
 *   tpm-roundtrip TCTI tamper SLOT OFF...   tampered fields are refused (-EBADMSG) and leave
 *                                           the key in SLOT working
 *   tpm-roundtrip TCTI ekcert [CAFILE]      EK certificate check
 * Exit 0 on success. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/tpm.h"
#include "edgeprov/codec.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/tpm-blob.h"

static const char *tcti;

static int load_keys(TpmRsaPublic *ek, TpmRsaPublic *srk) {
        _cleanup_(tpm_closep) Tpm *t = NULL;
        _cleanup_free_ uint8_t *e = NULL, *s = NULL;
        size_t el, sl;
        int r = tpm_open(tcti, NULL, NULL, &t);
        if (r < 0)
                return r;
        if ((r = tpm_get_ek(t, &e, &el)) < 0 || (r = tpm_get_srk(t, &s, &sl)) < 0)
                return r;
        if ((r = tpm_rsa_public_parse(e, el, ek)) < 0 || (r = tpm_rsa_public_parse(s, sl, srk)) < 0)
                return r;
        return 0;
}

static int activate_and_check(const TpmRsaPublic *ek, const TpmRsaPublic *srk, uint32_t slot, size_t tamper_at,
                              uint8_t key[32]) {
        _cleanup_(tpm_closep) Tpm *t = NULL;
        _cleanup_free_ uint8_t *blob = NULL;
        static const char msg[] = "0ne0000000%2fregistrations%2fdev1\n1700000000";
        uint8_t a[32], b[32];
        size_t len;
        int r;

        if ((r = random_bytes(key, 32)) < 0 || (r = tpm_blob_make(ek, srk, key, 32, NULL, &blob, &len)) < 0)
                return r;
        if (tamper_at != SIZE_MAX)
                blob[tamper_at % len] ^= 0x01;
        if ((r = tpm_open(tcti, NULL, NULL, &t)) < 0)
                return r;
        if ((r = tpm_activate_blob(t, blob, len, slot)) < 0)
                return r;
        if ((r = tpm_hmac(t, slot, msg, strlen(msg), a)) < 0)
                return r;
        if ((r = hmac_sha256(key, 32, msg, strlen(msg), b)) < 0)
                return r;
        if (memcmp(a, b, 32) != 0) {
                fprintf(stderr, "HMAC in the TPM differs from the software HMAC\n");
                return -EIO;
        }
        return 0;
}

static int check_slot(uint32_t slot, const uint8_t key[32]) {
        _cleanup_(tpm_closep) Tpm *t = NULL;
        uint8_t a[32], b[32];
        int r;
        if ((r = tpm_open(tcti, NULL, NULL, &t)) < 0 || (r = tpm_hmac(t, slot, "x", 1, a)) < 0 ||
            (r = hmac_sha256(key, 32, "x", 1, b)) < 0)
                return r;
        return memcmp(a, b, 32) == 0 ? 0 : -EIO;
}

int main(int argc, char *argv[]) {
        TpmRsaPublic ek, srk;
        uint8_t key[32];
        int r;

        log_set_max_level(LOG_DEBUG);
        if (argc < 3)
                return 2;
        tcti = argv[1];

        if (streq(argv[2], "identity")) {
                _cleanup_(tpm_closep) Tpm *t = NULL;
                _cleanup_free_ uint8_t *e = NULL;
                _cleanup_free_ char *id = NULL, *b64 = NULL;
                size_t el;
                if ((r = tpm_open(tcti, NULL, NULL, &t)) < 0 || (r = tpm_get_ek(t, &e, &el)) < 0 ||
                    (r = tpm_registration_id_from_ek(e, el, &id)) < 0 || (r = base64_encode(e, el, &b64)) < 0)
                        return 1;
                printf("%s %s\n", id, b64);
                return 0;
        }
        if (streq(argv[2], "ekcert")) {
                _cleanup_(tpm_closep) Tpm *t = NULL;
                _cleanup_free_ uint8_t *e = NULL;
                _cleanup_free_ char *m = NULL;
                size_t el;
                if ((r = tpm_open(tcti, NULL, NULL, &t)) < 0 || (r = tpm_get_ek(t, &e, &el)) < 0)
                        return 1;
                r = tpm_check_ek_cert(t, e, el, argc > 3 ? argv[3] : NULL, &m);
                printf("%d %s\n", r, strna(m));
                return r == 1 ? 0 : 1;
        }

        if (load_keys(&ek, &srk) < 0)
                return 1;

        if (streq(argv[2], "roundtrip") && argc == 5) {
                int n = atoi(argv[3]);
                uint32_t slot = strtoul(argv[4], NULL, 0);
                for (int i = 0; i < n; i++) {
                        r = activate_and_check(&ek, &srk, slot, SIZE_MAX, key);
                        if (r < 0) {
                                fprintf(stderr, "round %d failed: %s\n", i, strerror(-r));
                                return 1;
                        }
                }
                printf("%d round trips OK\n", n);
                return 0;
        }
        if (streq(argv[2], "tamper") && argc >= 5) {
                /* tamper TCTI SLOT OFFSET...: byte offsets into the 798-byte blob, fields
                 * 1 (0..53), 2 (54..311), 3 (312..455), 4 (456..713), 5 (714..795) */
                uint32_t slot = strtoul(argv[3], NULL, 0);
                uint8_t good[32], junk[32];
                if (activate_and_check(&ek, &srk, slot, SIZE_MAX, good) < 0)
                        return 1;
                for (int i = 4; i < argc; i++) {
                        size_t at = strtoul(argv[i], NULL, 0);
                        r = activate_and_check(&ek, &srk, slot, at, junk);
                        printf("tamper at %zu: %s\n", at, r < 0 ? strerror(-r) : "ACCEPTED");
                        if (r != -EBADMSG)
                                return 1;
                        if (check_slot(slot, good) < 0) {
                                fprintf(stderr, "previous key in the slot was damaged\n");
                                return 1;
                        }
                }
                return 0;
        }
        return 2;
}
