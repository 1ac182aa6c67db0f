/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "dps/attest-x509.h"
#include "dps/datafile.h"
#include "edgeprov/macro.h"
#include "edgeprov/x509-util.h"
#include "fuzz.h"

/* The X.509 parsers (issue 6): PEM/DER certificate input as the admin API and the tools get it,
 * a chain of DER blobs as a TLS front end hands it over (split at 0x00 0xff), and the
 * authentication of a parsed chain against a CA store holding the input's own certificates. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_x509_stack_ STACK_OF(X509) *sk = NULL;
        const uint8_t *der[X509_CHAIN_MAX];
        size_t len[X509_CHAIN_MAX], n = 0, start = 0;

        if (x509_parse_certs(data, size, &sk) == 0) {
                if (sk_X509_num(sk) < 1 || sk_X509_num(sk) > X509_CHAIN_MAX)
                        abort();
                for (int i = 0; i < sk_X509_num(sk); i++) {
                        char *cn = NULL, tp[65];
                        X509 *x = sk_X509_value(sk, i);
                        if (x509_get_subject_cn(x, &cn) == 0) {
                                if (strlen(cn) > X509_CN_REGISTRATION_ID_MAX * 4)
                                        abort();
                                (void) x509_cn_is_valid_registration_id(cn, NULL);
                                free(cn);
                        }
                        if (x509_thumbprint_sha1(x, tp) < 0 || strlen(tp) != 40)
                                abort();
                        (void) x509_check_validity(x, 0);
                }
        }

        for (size_t i = 0; i + 1 < size && n < X509_CHAIN_MAX; i++)
                if (data[i] == 0x00 && data[i + 1] == 0xff) {
                        der[n] = data + start;
                        len[n++] = i - start;
                        start = i + 2;
                        i++;
                }
        if (n < X509_CHAIN_MAX && start < size) {
                der[n] = data + start;
                len[n++] = size - start;
        }
        if (n > 0) {
                DpsCaStore *cas = NULL;
                const DpsEnrollment *e = NULL;
                char *msg = NULL;
                if (dps_ca_store_new(&cas) < 0)
                        abort();
                for (size_t i = 0; i < n; i++)
                        (void) dps_ca_add(cas, i % 2 ? "b" : "a", der[i], len[i], i % 2, &msg), free(msg),
                                msg = NULL;
                int r = dps_x509_authenticate_der(cas, NULL, "dev-1", der, len, n, 1700000000ULL * 1000000U, &e,
                                                  NULL, &msg);
                if (r == 0)
                        abort(); /* no data: no enrollment can match */
                free(msg);
                dps_ca_store_free(cas);
        }
        return 0;
}
