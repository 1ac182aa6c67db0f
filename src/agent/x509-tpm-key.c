/* SPDX-License-Identifier: MIT */

/* This one file uses OpenSSL's EC_KEY_METHOD, deprecated in 3.0 but still supported throughout
 * 3.x: it is the only way in OpenSSL 3.0 to hand libssl a key of the default provider whose
 * signing is done elsewhere (see x509-tpm-key.h for why the SSL_CTX must not use the tpm2
 * provider itself).  The build otherwise hides the deprecated API. */
#undef OPENSSL_NO_DEPRECATED
#undef OPENSSL_API_COMPAT
#define OPENSSL_API_COMPAT 10101

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/store.h>

#include "agent/x509-tpm-key.h"
#include "edgeprov/macro.h"
#include "edgeprov/x509-util.h"

/* the TPM key's own library context, for the life of the process */
static OSSL_LIB_CTX *tpm_libctx = NULL;
static EC_KEY_METHOD *bridge_method = NULL;
static int bridge_index = -1;


static const char *openssl_error(char *buf, size_t size) {
        unsigned long e = ERR_peek_last_error();
        if (e)
                ERR_error_string_n(e, buf, size);
        else
                snprintf(buf, size, "no details");
        ERR_clear_error();
        return buf;
}

/* ECDSA_sign() of the bridge key: the digest (computed by libssl in the default provider) is
 * signed by the TPM key; DER ECDSA-Sig-Value out, as ECDSA_sign() promises */
static int bridge_sign(int type, const unsigned char *dgst, int dlen, unsigned char *sig, unsigned int *siglen,
                       const BIGNUM *kinv, const BIGNUM *r, EC_KEY *ec) {
        EVP_PKEY *key = EC_KEY_get_ex_data(ec, bridge_index);
        const char *md = dlen == 32 ? "SHA256" : dlen == 48 ? "SHA384" : dlen == 64 ? "SHA512" : NULL;
        EVP_PKEY_CTX *pctx;
        size_t n = (size_t) ECDSA_size(ec);
        int ok;

        if (!key || !md || kinv || r)
                return 0;
        pctx = EVP_PKEY_CTX_new_from_pkey(tpm_libctx, key, "?provider=tpm2");
        ok = pctx && EVP_PKEY_sign_init(pctx) == 1 &&
             EVP_PKEY_CTX_set_params(pctx, (OSSL_PARAM[]) {
                     OSSL_PARAM_utf8_string("digest", (char *) md, 0),
                     OSSL_PARAM_END,
             }) == 1 &&
             EVP_PKEY_sign(pctx, sig, &n, dgst, (size_t) dlen) == 1;
        EVP_PKEY_CTX_free(pctx);
        if (!ok)
                return 0;
        *siglen = (unsigned int) n;
        return 1;
}

static void bridge_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
        EVP_PKEY_free(ptr); /* the provider flushes the TPM object */
}

static int setup(const char *tcti, char **reterr) {
        char e[256];

        if (tpm_libctx)
                return 0;
        if (tcti)
                (void) setenv("TPM2OPENSSL_TCTI", tcti, 0);
        OSSL_LIB_CTX *lc = OSSL_LIB_CTX_new();
        if (!lc)
                return -ENOMEM;
        /* default: the file: store loader and the decoders; tpm2: handle: and the TSS2 keys */
        if (!OSSL_PROVIDER_load(lc, "default") || !OSSL_PROVIDER_load(lc, "tpm2")) {
                OSSL_LIB_CTX_free(lc);
                return x509_fail(reterr, -EINVAL, "cannot load the OpenSSL provider 'tpm2' (Debian package tpm2-openssl): %s",
                            openssl_error(e, sizeof(e)));
        }
        if (!bridge_method) {
                bridge_method = EC_KEY_METHOD_new(EC_KEY_get_default_method());
                bridge_index = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, bridge_free);
                if (!bridge_method || bridge_index < 0) {
                        OSSL_LIB_CTX_free(lc);
                        return -ENOMEM;
                }
                /* only the signature goes to the TPM: no sign_setup, no sign_sig (ECDSA_do_sign) */
                EC_KEY_METHOD_set_sign(bridge_method, bridge_sign, NULL, NULL);
        }
        tpm_libctx = lc;
        return 0;
}

int x509_tpm_key_load(const char *uri, const char *tcti, X509 *leaf, EVP_PKEY **ret, char **reterr) {
        _cleanup_evp_pkey_ EVP_PKEY *key = NULL, *bridge = NULL;
        EC_KEY *ec = NULL;
        char e[256];
        int r;

        r = setup(tcti, reterr);
        if (r < 0)
                return r;
        OSSL_STORE_CTX *st = OSSL_STORE_open_ex(uri, tpm_libctx, "?provider=tpm2", NULL, NULL, NULL, NULL, NULL);
        if (!st)
                return x509_fail(reterr, -EINVAL, "the TPM key '%s' cannot be opened: %s", uri, openssl_error(e, sizeof(e)));
        while (!key && !OSSL_STORE_eof(st)) {
                OSSL_STORE_INFO *info = OSSL_STORE_load(st);
                if (!info)
                        break;
                if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
                        key = OSSL_STORE_INFO_get1_PKEY(info);
                OSSL_STORE_INFO_free(info);
        }
        OSSL_STORE_close(st);
        if (!key)
                return x509_fail(reterr, -EINVAL, "the TPM key '%s' holds no private key: %s", uri, openssl_error(e, sizeof(e)));
        if (!EVP_PKEY_is_a(key, "EC"))
                return x509_fail(reterr, -EINVAL, "the TPM key '%s' is not an EC key: only EC (P-256, P-384) keys in the TPM are "
                            "supported", uri);
        if (EVP_PKEY_eq(X509_get0_pubkey(leaf), key) != 1) {
                ERR_clear_error();
                return x509_fail(reterr, -EINVAL, "the TPM key '%s' does not belong to the device certificate", uri);
        }

        /* the certificate's public key, as a legacy EC_KEY of its own (get1 returns the
         * certificate key's cached copy), signing through bridge_sign() */
        EC_KEY *pub = EVP_PKEY_get1_EC_KEY(X509_get0_pubkey(leaf));
        ec = pub ? EC_KEY_dup(pub) : NULL;
        EC_KEY_free(pub);
        bridge = EVP_PKEY_new();
        if (!ec || !bridge || EC_KEY_set_method(ec, bridge_method) != 1) {
                EC_KEY_free(ec);
                return -ENOMEM;
        }
        if (EVP_PKEY_assign_EC_KEY(bridge, ec) != 1) {
                EC_KEY_free(ec);
                return -ENOMEM;
        }
        if (EC_KEY_set_ex_data(ec, bridge_index, key) != 1)
                return -ENOMEM;
        key = NULL; /* owned by ec now, freed with it (bridge_free) */
        *ret = TAKE_PTR(bridge);
        return 0;
}
