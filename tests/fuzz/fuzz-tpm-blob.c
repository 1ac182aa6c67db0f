/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "edgeprov/tpm-blob.h"
#include "fuzz.h"

/* The TPM parsers: a TPM2B_PUBLIC as the service receives it in a register request, and an
 * authenticationKey blob as the agent receives it. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        TpmRsaPublic p;
        TpmBlobFields f;
        uint8_t name[TPM_NAME_SHA256_SIZE];

        if (tpm_rsa_public_parse(data, size, &p) == 0) {
                if (p.modulus_len != p.key_bits / 8u || p.tpmt_len + 2 != size)
                        abort();
                if (tpm_public_name(&p, name) < 0 || !tpm_rsa_public_same_key(&p, &p))
                        abort();
        }

        if (tpm_blob_split(data, size, &f) == 0) {
                const TpmBlobSlice *s[] = { &f.credential_blob, &f.secret, &f.duplicate,
                                            &f.sym_seed, &f.object_public, &f.uri_data };
                size_t total = 0;
                for (size_t i = 0; i < 6; i++) {
                        if (s[i]->len < 2 || s[i]->data != data + total)
                                abort();
                        total += s[i]->len;
                }
                if (total != size)
                        abort();
        }
        return 0;
}
