/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "agent/tls-client.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"

int tls_client_ctx_new(const char *ca_file, const char *endpoint, void **ret) {
        SSL_CTX *ctx = SSL_CTX_new_ex(NULL, NULL, TLS_client_method());
        char e[256] = "";

        if (!ctx)
                return -ENOMEM;
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
        bool ip = endpoint && strspn(endpoint, "0123456789.:abcdefABCDEF") == strlen(endpoint) &&
                  strpbrk(endpoint, ".:") && X509_VERIFY_PARAM_set1_ip_asc(param, endpoint) == 1;
        if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
            /* the system store as a hashed directory: certificates are read when a chain needs
             * them (the whole bundle would be ≈0.9 MiB of heap) */
            SSL_CTX_load_verify_locations(ctx, ca_file, ca_file ? NULL : TLS_CLIENT_SYSTEM_CA_DIR) != 1 ||
            (!ip && X509_VERIFY_PARAM_set1_host(param, strempty(endpoint), 0) != 1)) {
                ERR_error_string_n(ERR_get_error(), e, sizeof(e));
                ERR_clear_error();
                SSL_CTX_free(ctx);
                log_error("Cannot set up TLS for the service (%s): %s", ca_file ?: "system CA store", e);
                return -EINVAL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        *ret = ctx;
        return 0;
}

void *tls_client_ctx_free(void *ctx) {
        SSL_CTX_free(ctx);
        return NULL;
}
