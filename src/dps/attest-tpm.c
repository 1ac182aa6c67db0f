/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include <json-c/json.h>

#include "dps/attest-tpm.h"
#include "edgeprov/codec.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/sas.h"
#include "edgeprov/tpm-blob.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define HMAC_KEY_SIZE 32

typedef struct IssuedKey {
        char *registration_id;
        uint8_t key[HMAC_KEY_SIZE];
        uint64_t issued_usec;
} IssuedKey;

struct DpsTpmKeys {
        IssuedKey *keys;
        size_t n, allocated;
};

static void issued_key_wipe(IssuedKey *i) {
        explicit_bzero(i->key, sizeof(i->key));
        free(i->registration_id);
        *i = (IssuedKey) {};
}

static void remove_at(DpsTpmKeys *k, size_t idx) {
        issued_key_wipe(k->keys + idx);
        memmove(k->keys + idx, k->keys + idx + 1, (k->n - idx - 1) * sizeof(IssuedKey));
        k->n--;
        explicit_bzero(k->keys + k->n, sizeof(IssuedKey));
}

int dps_tpm_keys_new(DpsTpmKeys **ret) {
        DpsTpmKeys *k = calloc(1, sizeof(DpsTpmKeys));
        if (!k)
                return -ENOMEM;
        *ret = k;
        return 0;
}

DpsTpmKeys *dps_tpm_keys_free(DpsTpmKeys *k) {
        if (!k)
                return NULL;
        for (size_t i = 0; i < k->n; i++)
                issued_key_wipe(k->keys + i);
        free(k->keys);
        free(k);
        return NULL;
}

size_t dps_tpm_keys_count(const DpsTpmKeys *k) {
        return k ? k->n : 0;
}

static void purge_expired(DpsTpmKeys *k, uint64_t now) {
        for (size_t i = k->n; i > 0; i--)
                if (now >= k->keys[i - 1].issued_usec + DPS_TPM_KEY_LIFETIME_USEC ||
                    now < k->keys[i - 1].issued_usec)
                        remove_at(k, i - 1);
}

static IssuedKey *find(DpsTpmKeys *k, const char *registration_id, size_t *ret_idx) {
        for (size_t i = 0; i < k->n; i++)
                if (strcaseeq(k->keys[i].registration_id, registration_id)) {
                        if (ret_idx)
                                *ret_idx = i;
                        return k->keys + i;
                }
        return NULL;
}

void dps_tpm_forget(DpsTpmKeys *k, const char *registration_id) {
        size_t idx;
        if (k && registration_id && find(k, registration_id, &idx))
                remove_at(k, idx);
}

/* base64 of a TPM2B_PUBLIC (or of a bare TPMT_PUBLIC, which some tools print) */
static int parse_public_b64(const char *b64, TpmRsaPublic *ret) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r;

        if (strlen(b64) > 4 * TPM2B_PUBLIC_MAX / 3 + 4)
                return -EBADMSG;
        r = base64_decode(b64, strlen(b64), &buf, &len);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || len < 2)
                return -EBADMSG;
        r = tpm_rsa_public_parse(buf, len, ret);
        if (r == -EINVAL && len + 2 <= TPM2B_PUBLIC_MAX) {
                uint8_t with_size[TPM2B_PUBLIC_MAX];
                with_size[0] = (uint8_t) (len >> 8);
                with_size[1] = (uint8_t) len;
                memcpy(with_size + 2, buf, len);
                r = tpm_rsa_public_parse(with_size, len + 2, ret);
        }
        if (r == -EINVAL || r == -E2BIG)
                return -EBADMSG;
        return r;
}

static const char *enrolled_ek_b64(const DpsEnrollment *e) {
        struct json_object *att, *tpm, *ek;

        if (!e->json || !json_object_object_get_ex(e->json, "attestation", &att) ||
            !json_object_object_get_ex(att, "tpm", &tpm) || !json_object_object_get_ex(tpm, "endorsementKey", &ek) ||
            !json_object_is_type(ek, json_type_string))
                return NULL;
        return json_object_get_string(ek);
}

int dps_tpm_challenge(DpsTpmKeys *k, const DpsEnrollment *e, const char *registration_id,
                      const char *endorsement_key_b64, const char *storage_root_key_b64, uint64_t now_usec,
                      char **ret_body, const char **ret_message) {
        TpmRsaPublic enrolled, ek, srk;
        uint8_t key[HMAC_KEY_SIZE];
        _cleanup_free_ uint8_t *blob = NULL;
        _cleanup_free_ char *blob_b64 = NULL;
        const char *enrolled_b64;
        size_t blob_len;
        int r;

        if (!k || !e || !registration_id || !ret_body || !ret_message)
                return -EINVAL;

        if (!endorsement_key_b64 || !storage_root_key_b64) {
                *ret_message = "Unauthorized: TPM attestation needs tpm.endorsementKey and tpm.storageRootKey in the "
                               "register request (connect without a password to get the challenge)";
                return -ENOKEY;
        }
        enrolled_b64 = enrolled_ek_b64(e);
        r = enrolled_b64 ? parse_public_b64(enrolled_b64, &enrolled) : -EBADMSG;
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                *ret_message = "The TPM enrollment has no usable attestation.tpm.endorsementKey";
                return -ENOTRECOVERABLE;
        }
        r = parse_public_b64(endorsement_key_b64, &ek);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                *ret_message = r == -EOPNOTSUPP
                        ? "Unauthorized: the endorsement key is not an RSA restricted decryption key with SHA-256 "
                          "and AES-128-CFB"
                        : "Unauthorized: tpm.endorsementKey is not base64 of a TPM2B_PUBLIC";
                return r;
        }
        if (!tpm_rsa_public_same_key(&ek, &enrolled)) {
                *ret_message = "Unauthorized: the endorsement key is not the enrolled one";
                return -EKEYREJECTED;
        }
        r = parse_public_b64(storage_root_key_b64, &srk);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                *ret_message = r == -EOPNOTSUPP
                        ? "Unauthorized: the storage root key is not an RSA restricted decryption key with SHA-256 "
                          "and AES-128-CFB"
                        : "Unauthorized: tpm.storageRootKey is not base64 of a TPM2B_PUBLIC";
                return r;
        }

        r = random_bytes(key, sizeof(key));
        if (r >= 0)
                r = tpm_blob_make(&ek, &srk, key, sizeof(key), NULL, &blob, &blob_len);
        if (r >= 0)
                r = base64_encode(blob, blob_len, &blob_b64);
        if (r < 0) {
                explicit_bzero(key, sizeof(key));
                *ret_message = "Internal error";
                return r == -ENOMEM ? r : -EIO;
        }

        struct json_object *o = json_object_new_object();
        if (!o || json_object_object_add(o, "authenticationKey", json_object_new_string(blob_b64)) < 0 ||
            json_object_object_add(o, "keyName", json_object_new_string(DPS_TPM_KEY_NAME)) < 0 ||
            json_object_object_add(o, "message",
                                   json_object_new_string("Activate the authenticationKey in the TPM and register "
                                                          "again with a SAS token signed by it")) < 0) {
                json_object_put(o);
                explicit_bzero(key, sizeof(key));
                return -ENOMEM;
        }
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        char *body = s ? strdup(s) : NULL;
        json_object_put(o);
        if (!body) {
                explicit_bzero(key, sizeof(key));
                return -ENOMEM;
        }

        /* remember the key: replaces an older challenge for the same registration */
        purge_expired(k, now_usec);
        size_t idx;
        IssuedKey *i = find(k, registration_id, &idx);
        if (!i) {
                if (k->n >= DPS_TPM_KEYS_MAX)
                        remove_at(k, 0); /* the oldest */
                if (k->n >= k->allocated) {
                        size_t na = MAX(k->allocated * 2, (size_t) 16);
                        IssuedKey *nk = realloc(k->keys, na * sizeof(IssuedKey));
                        if (!nk) {
                                explicit_bzero(key, sizeof(key));
                                free(body);
                                return -ENOMEM;
                        }
                        k->keys = nk;
                        k->allocated = na;
                }
                i = k->keys + k->n;
                *i = (IssuedKey) { .registration_id = strdup(registration_id) };
                if (!i->registration_id) {
                        explicit_bzero(key, sizeof(key));
                        free(body);
                        return -ENOMEM;
                }
                k->n++;
        }
        memcpy(i->key, key, sizeof(key));
        i->issued_usec = now_usec;
        explicit_bzero(key, sizeof(key));

        *ret_body = body;
        return 0;
}

int dps_tpm_verify(DpsTpmKeys *k, const char *registration_id, const char *password, size_t password_len,
                   const char *resource, uint64_t now_usec, uint64_t *ret_expiry) {
        _cleanup_(sas_token_done) SasToken t = {};
        int r;

        if (!k || !registration_id || !resource)
                return -EINVAL;
        purge_expired(k, now_usec);
        IssuedKey *i = find(k, registration_id, NULL);
        if (!i)
                return -ENOKEY;
        if (!password || password_len == 0)
                return -EBADMSG;
        r = sas_token_parse(password, password_len, &t);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return -EBADMSG;
        r = sas_token_verify(&t, i->key, sizeof(i->key), resource, now_usec / USEC_PER_SEC);
        if (r < 0)
                return r;
        if (ret_expiry)
                *ret_expiry = t.expiry;
        return 0;
}
