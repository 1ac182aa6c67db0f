/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "agent/x509-identity.h"
#include "agent/x509-tpm-key.h"
#include "edgeprov/fileio.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/x509-util.h"

struct X509Identity {
        SSL_CTX *ctx;
        char *registration_id;
        char thumbprint[65];
        char not_after[32];
};


static void openssl_errors(char *buf, size_t size) {
        unsigned long e = ERR_get_error();
        if (e)
                ERR_error_string_n(e, buf, size);
        else
                snprintf(buf, size, "no details");
        ERR_clear_error();
}

/* Absolute as is; relative to $CREDENTIALS_DIRECTORY when set, else beside the configuration. */
static int resolve(const Config *c, const char *name, char **ret) {
        const char *base = name[0] == '/' ? NULL : secure_getenv("CREDENTIALS_DIRECTORY");
        _cleanup_free_ char *dir = NULL;

        if (name[0] == '/')
                return (*ret = strdup(name)) ? 0 : -ENOMEM;
        if (!base) {
                dir = strdup(c->path ?: "./x");
                if (!dir)
                        return -ENOMEM;
                char *slash = strrchr(dir, '/');
                if (slash)
                        *slash = 0;
                base = slash ? dir : ".";
        }
        return asprintf(ret, "%s/%s", base, name) < 0 ? -ENOMEM : 0;
}

static bool is_tpm_key(const char *spec, const char *pem) {
        return startswith(spec, "handle:") || (pem && strstr(pem, "-----BEGIN TSS2 PRIVATE KEY-----"));
}

int x509_identity_load(const Config *c, X509Identity **ret, char **reterr) {
        _cleanup_free_ char *cert_path = NULL, *key_path = NULL, *key_pem = NULL;
        _cleanup_x509_stack_ STACK_OF(X509) *chain = NULL;
        _cleanup_evp_pkey_ EVP_PKEY *key = NULL;
        const char *why = NULL;
        bool in_tpm = false;
        char e[256];
        int r;

        if (!c->certificate_file || !c->key_file)
                return x509_fail(reterr, -EINVAL, "x509 attestation needs provisioning.attestation.certificate_file= and key_file=");
        if (resolve(c, c->certificate_file, &cert_path) < 0)
                return -ENOMEM;
        r = x509_load_certs(cert_path, &chain);
        if (r < 0)
                return x509_fail(reterr, -EINVAL, "%s: %s", cert_path,
                            r == -ENOENT   ? "no such file"
                            : r == -EINVAL ? "no PEM or DER certificate in it"
                            : r == -E2BIG  ? "too large or too many certificates"
                                           : strerror(-r));
        X509 *leaf = sk_X509_value(chain, 0);

        if (startswith(c->key_file, "handle:")) {
                r = x509_tpm_key_load(c->key_file, c->tpm_tcti, leaf, &key, reterr);
                if (r < 0)
                        return r;
                in_tpm = true;
        } else {
                if (resolve(c, c->key_file, &key_path) < 0)
                        return -ENOMEM;
                r = read_secret_file(key_path, X509_INPUT_MAX, &key_pem);
                if (r == -EPERM)
                        return x509_fail(reterr, -EINVAL, "%s: refusing to use the key file: it is accessible to other users "
                                    "(chmod 0600, or pass it with LoadCredential=)", key_path);
                if (r < 0)
                        return x509_fail(reterr, -EINVAL, "%s: cannot read the key file: %s", key_path, strerror(-r));
                if (is_tpm_key(c->key_file, key_pem)) {
                        /* a plain path: OSSL_STORE's file loader, the tpm2 provider decodes it */
                        r = x509_tpm_key_load(key_path, c->tpm_tcti, leaf, &key, reterr);
                        in_tpm = r >= 0;
                } else {
                        BIO *bio = BIO_new_mem_buf(key_pem, (int) strlen(key_pem));
                        key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *) "") : NULL;
                        BIO_free(bio);
                        ERR_clear_error();
                        r = key ? 0 : x509_fail(reterr, -EINVAL, "%s: not an unencrypted PEM private key", key_path);
                }
                explicit_bzero(key_pem, strlen(key_pem));
                if (r < 0)
                        return r;
        }

        if (EVP_PKEY_eq(X509_get0_pubkey(leaf), key) != 1) {
                ERR_clear_error();
                return x509_fail(reterr, -EINVAL, "the private key does not belong to the certificate %s (the first certificate "
                            "of the file must be the device certificate)", cert_path);
        }

        X509Identity *x = calloc(1, sizeof(X509Identity));
        if (!x)
                return -ENOMEM;
        r = x509_get_subject_cn(leaf, &x->registration_id);
        if (r < 0) {
                x509_identity_free(x);
                return r == -ENOMEM ? r : x509_fail(reterr, -EINVAL, "%s: the certificate has no usable subject CN", cert_path);
        }
        if (!x509_cn_is_valid_registration_id(x->registration_id, &why)) {
                r = x509_fail(reterr, -EINVAL, "%s: the certificate's CN '%s' is not a valid registration id: %s", cert_path,
                         x->registration_id, why);
                x509_identity_free(x);
                return r;
        }
        if (c->registration_id && !strcaseeq(c->registration_id, x->registration_id)) {
                r = x509_fail(reterr, -EINVAL, "provisioning.registration_id='%s' differs from the certificate's CN '%s'",
                         c->registration_id, x->registration_id);
                x509_identity_free(x);
                return r;
        }
        (void) x509_thumbprint_sha256(leaf, x->thumbprint);
        (void) x509_format_time(X509_get0_notAfter(leaf), x->not_after);
        if (x509_check_validity(leaf, (uint64_t) time(NULL) * 1000000U) != 0)
                log_warning("The device certificate %s is not valid now (notAfter %s); the service will refuse it.",
                            cert_path, x->not_after);

        /* a TPM key too is a key of the default provider here (x509-tpm-key.h): the handshake,
         * its hashes and the verification of the service's certificates stay out of the TPM */
        x->ctx = SSL_CTX_new_ex(NULL, NULL, TLS_client_method());
        if (!x->ctx || SSL_CTX_set_min_proto_version(x->ctx, TLS1_2_VERSION) != 1 ||
            SSL_CTX_use_certificate(x->ctx, leaf) != 1) {
                openssl_errors(e, sizeof(e));
                x509_identity_free(x);
                return x509_fail(reterr, -EINVAL, "cannot set up TLS with the certificate: %s", e);
        }
        /* the intermediates (and the root, if given) follow the leaf in the handshake */
        for (int i = 1; i < sk_X509_num(chain); i++) {
                X509 *ca = sk_X509_value(chain, i);
                if (X509_up_ref(ca) != 1 || SSL_CTX_add_extra_chain_cert(x->ctx, ca) != 1) {
                        X509_free(ca);
                        x509_identity_free(x);
                        return -ENOMEM;
                }
        }
        if (SSL_CTX_use_PrivateKey(x->ctx, key) != 1 || SSL_CTX_check_private_key(x->ctx) != 1) {
                openssl_errors(e, sizeof(e));
                x509_identity_free(x);
                return x509_fail(reterr, -EINVAL, "cannot use the private key for TLS: %s", e);
        }
        /* the service's certificate: verified against ca_file (else the system store), and its
         * name (or IP address) must be the endpoint */
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(x->ctx);
        bool ip = c->endpoint && strspn(c->endpoint, "0123456789.:abcdefABCDEF") == strlen(c->endpoint) &&
                  strpbrk(c->endpoint, ".:") && X509_VERIFY_PARAM_set1_ip_asc(param, c->endpoint) == 1;
        if ((c->ca_file ? SSL_CTX_load_verify_locations(x->ctx, c->ca_file, NULL)
                        : SSL_CTX_set_default_verify_paths(x->ctx)) != 1 ||
            (!ip && X509_VERIFY_PARAM_set1_host(param, strempty(c->endpoint), 0) != 1)) {
                openssl_errors(e, sizeof(e));
                x509_identity_free(x);
                return x509_fail(reterr, -EINVAL, "cannot set up the verification of the service's certificate (%s): %s",
                            c->ca_file ?: "system CA store", e);
        }
        ERR_clear_error();
        SSL_CTX_set_verify(x->ctx, SSL_VERIFY_PEER, NULL);
        log_info("X.509 identity: registration id '%s' from %s (%d certificate%s, valid until %s), key %s.",
                 x->registration_id, cert_path, sk_X509_num(chain), sk_X509_num(chain) == 1 ? "" : "s",
                 x->not_after, in_tpm ? "in the TPM (tpm2 provider)" : "from a file");
        *ret = x;
        return 0;
}

X509Identity *x509_identity_free(X509Identity *x) {
        if (!x)
                return NULL;
        SSL_CTX_free(x->ctx);
        free(x->registration_id);
        free(x);
        return NULL;
}

const char *x509_identity_registration_id(const X509Identity *x) {
        return x ? x->registration_id : NULL;
}

const char *x509_identity_thumbprint(const X509Identity *x) {
        return x ? x->thumbprint : NULL;
}

void *x509_identity_ssl_ctx(const X509Identity *x) {
        return x ? x->ctx : NULL;
}

const char *x509_identity_not_after(const X509Identity *x) {
        return x ? x->not_after : NULL;
}
