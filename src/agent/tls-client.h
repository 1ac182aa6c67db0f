/* SPDX-License-Identifier: MIT */
#pragma once

/* One TLS client context shared by many connections to the provisioning service (the
 * downstream sensors): built once instead of once per connection (libmosquitto's
 * mosquitto_tls_set() creates an SSL_CTX and loads the CA file for every client, ≈1 ms of CPU
 * each with OpenSSL 3).  It verifies the service as dps-client.c's default does: TLS ≥ 1.2,
 * the chain against ca_file (NULL: the system store, /etc/ssl/certs looked up by hash), the endpoint's name or IP address.
 * Handed to dps-client.c as DpsClientParams.ssl_ctx. */
#define TLS_CLIENT_SYSTEM_CA_DIR "/etc/ssl/certs"

int tls_client_ctx_new(const char *ca_file, const char *endpoint, void **ret);
void *tls_client_ctx_free(void *ctx);
