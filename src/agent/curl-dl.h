/* SPDX-License-Identifier: MIT */
#pragma once

/* libcurl for the HTTPS transport (dps-http.c), loaded with dlopen() at the first HTTPS
 * transaction rather than linked: an agent speaking MQTT — the common case — never maps libcurl
 * and what it pulls in (GnuTLS, nettle, p11-kit, Kerberos, LDAP, libssh2, librtmp, …: ≈2.5 MiB of
 * mappings).  The headers and configure's version check stay; only the symbols are resolved at
 * run time, into the function pointers below (as systemd does for its optional libraries).
 * The library stays loaded once it is (never dlclose()d). */

#include <curl/curl.h>

#define CURL_DL_SONAME "libcurl.so.4"

#define CURL_DL_SYMBOLS(X)                      \
        X(curl_global_init)                     \
        X(curl_easy_init)                       \
        X(curl_easy_cleanup)                    \
        X(curl_easy_setopt)                     \
        X(curl_easy_getinfo)                    \
        X(curl_easy_strerror)                   \
        X(curl_multi_init)                      \
        X(curl_multi_cleanup)                   \
        X(curl_multi_setopt)                    \
        X(curl_multi_add_handle)                \
        X(curl_multi_remove_handle)             \
        X(curl_multi_socket_action)             \
        X(curl_multi_info_read)                 \
        X(curl_slist_append)                    \
        X(curl_slist_free_all)

#define CURL_DL_DECLARE(name) extern __typeof__(name) *sym_##name;
CURL_DL_SYMBOLS(CURL_DL_DECLARE)
#undef CURL_DL_DECLARE

/* Loads libcurl (once; a failure is retried at the next call, so installing the package fixes a
 * running agent), resolves every symbol above and runs curl_global_init().  Returns 0, or
 * -EOPNOTSUPP with a message naming the library and the package to install in *reterr_message
 * (the caller frees it). */
int curl_dl_open(char **reterr_message);
