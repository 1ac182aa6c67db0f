/* SPDX-License-Identifier: MIT */
/* X.509 attestation (issue 6): the certificate generator (src/dps/certgen.c), the CA store with
 * proof of possession and the chain authentication (src/dps/attest-x509.c), the admin commands
 * (admin-ca.c) and the service hook (401 / 401002 with the reason). */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/x509v3.h>

#include "dps/admin.h"
#include "dps/attest-x509.h"
#include "dps/certgen.h"
#include "dps/datafile.h"
#include "dps/service.h"
#include "edgeprov/dps.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"
#include "edgeprov/x509-util.h"

#define SCOPE "0ne00000A0A"

typedef struct Pki {
        EVP_PKEY *root_key, *inter_key, *other_key;
        X509 *root, *inter, *other_root;
} Pki;

static Pki pki;

static char *mfree_str(char *s) {
        free(s);
        return NULL;
}

static uint64_t real_now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

static X509 *make(CertKind kind, const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, int64_t offset,
                  unsigned days) {
        _cleanup_free_ char *err = NULL;
        X509 *x = NULL;
        CertRequest req = {
                .kind = kind,
                .common_name = cn,
                .days = days,
                .pathlen = kind == CERT_ROOT ? -1 : kind == CERT_INTERMEDIATE ? 0 : -1,
                .not_before_offset_sec = offset,
                .key = key,
                .issuer_cert = issuer,
                .issuer_key = issuer_key,
        };
        int r = cert_create(&req, &x, &err);
        if (r < 0)
                fail_msg("cert_create(%s): %s", cn, strna(err));
        return x;
}

static int pki_setup(void **state) {
        if (pki.root)
                return 0;
        assert_int_equal(cert_generate_key(CERT_KEY_EC_P256, &pki.root_key), 0);
        assert_int_equal(cert_generate_key(CERT_KEY_EC_P256, &pki.inter_key), 0);
        assert_int_equal(cert_generate_key(CERT_KEY_EC_P256, &pki.other_key), 0);
        pki.root = make(CERT_ROOT, "test root", pki.root_key, NULL, NULL, 0, 30);
        pki.inter = make(CERT_INTERMEDIATE, "test intermediate", pki.inter_key, pki.root, pki.root_key, 0, 30);
        pki.other_root = make(CERT_ROOT, "other root", pki.other_key, NULL, NULL, 0, 30);
        return 0;
}

static X509 *device(const char *regid, X509 *issuer, EVP_PKEY *issuer_key, int64_t offset, unsigned days) {
        _cleanup_evp_pkey_ EVP_PKEY *k = NULL;
        assert_int_equal(cert_generate_key(CERT_KEY_EC_P256, &k), 0);
        return make(CERT_DEVICE, regid, k, issuer, issuer_key, offset, days);
}

static char *pem(X509 *x) {
        char *p = NULL;
        assert_int_equal(x509_to_pem(x, &p), 0);
        return p;
}

/* ---- certgen ---------------------------------------------------------------------------------- */

static void test_certgen(void **state) {
        _cleanup_free_ char *err = NULL, *cn = NULL;
        _cleanup_x509_ X509 *leaf = NULL, *bad = NULL;
        _cleanup_evp_pkey_ EVP_PKEY *rsa = NULL, *k = NULL;

        /* the CA: critical basicConstraints CA:TRUE, keyCertSign, SKI; intermediate pathlen 0 + AKI */
        assert_true(X509_check_ca(pki.root) >= 1);
        int crit = -1;
        BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(pki.root, NID_basic_constraints, &crit, NULL);
        assert_non_null(bc);
        assert_true(bc->ca);
        assert_int_equal(crit, 1);
        BASIC_CONSTRAINTS_free(bc);
        assert_true(X509_get_key_usage(pki.root) & KU_KEY_CERT_SIGN);
        assert_non_null(X509_get0_subject_key_id(pki.root));
        assert_int_equal(X509_get_pathlen(pki.inter), 0);
        assert_non_null(X509_get0_authority_key_id(pki.inter));
        assert_int_equal(X509_verify(pki.inter, X509_get0_pubkey(pki.root)), 1);

        /* the leaf: CA:FALSE, digitalSignature, EKU clientAuth only, CN = registration id */
        leaf = device("dev-1", pki.inter, pki.inter_key, 0, 10);
        assert_int_equal(X509_check_ca(leaf), 0);
        assert_true(X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE);
        assert_true(X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT);
        assert_false(X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER);
        assert_int_equal(x509_get_subject_cn(leaf, &cn), 0);
        assert_string_equal(cn, "dev-1");
        assert_int_equal(X509_verify(leaf, X509_get0_pubkey(pki.inter)), 1);

        /* the serial: 159 bits, positive */
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
        assert_non_null(bn);
        assert_int_equal(BN_num_bits(bn), 159);
        assert_false(BN_is_negative(bn));
        BN_free(bn);

        /* RSA on request */
        assert_int_equal(cert_generate_key(CERT_KEY_RSA_2048, &rsa), 0);
        assert_int_equal(EVP_PKEY_get_bits(rsa), 2048);
        assert_int_equal(cert_key_type_from_string("rsa3072"), CERT_KEY_RSA_3072);
        assert_true(cert_key_type_from_string("dsa") < 0);

        /* bad inputs */
        assert_int_equal(cert_generate_key(CERT_KEY_EC_P256, &k), 0);
        CertRequest req = { .kind = CERT_DEVICE, .common_name = "bad id1", .days = 1, .key = k,
                            .issuer_cert = pki.root, .issuer_key = pki.root_key };
        assert_int_equal(cert_create(&req, &bad, &err), -EINVAL);
        assert_non_null(strstr(err, "only letters"));
        err = mfree_str(err);
        req.common_name = "a1234567890123456789012345678901234567890123456789012345678901234"; /* 65 */
        assert_int_equal(cert_create(&req, &bad, &err), -EINVAL);
        err = mfree_str(err);
        req.common_name = "ends-with.";
        assert_int_equal(cert_create(&req, &bad, &err), -EINVAL);
        assert_non_null(strstr(err, "must end"));
        err = mfree_str(err);
        req.common_name = "dev-2";
        req.issuer_key = pki.other_key; /* not the CA's key */
        assert_int_equal(cert_create(&req, &bad, &err), -EINVAL);
        assert_non_null(strstr(err, "does not belong"));
        err = mfree_str(err);
        req.issuer_key = pki.root_key;
        req.issuer_cert = leaf; /* not a CA */
        req.issuer_key = k;
        assert_int_equal(cert_create(&req, &bad, &err), -EINVAL);
        assert_non_null(strstr(err, "not a CA"));
        err = mfree_str(err);
        req.issuer_cert = pki.root;
        req.issuer_key = pki.root_key;
        req.days = 0;
        assert_int_equal(cert_create(&req, &bad, &err), -EINVAL);
        assert_null(bad);

        assert_true(x509_cn_is_valid_registration_id("gw:1.a_b-", NULL));
        assert_false(x509_cn_is_valid_registration_id("-gw", NULL));
        assert_false(x509_cn_is_valid_registration_id("", NULL));
}

/* ---- parsers ------------------------------------------------------------------------------------ */

static void test_parse_limits(void **state) {
        _cleanup_x509_stack_ STACK_OF(X509) *sk = NULL;
        _cleanup_free_ char *p = pem(pki.root);
        _cleanup_free_ uint8_t *der = NULL;
        size_t der_len = 0;

        assert_int_equal(x509_parse_certs(p, strlen(p), &sk), 0);
        assert_int_equal(sk_X509_num(sk), 1);
        assert_int_equal(x509_to_der(pki.root, &der, &der_len), 0);
        X509 *x = NULL;
        assert_int_equal(x509_from_der(der, der_len, &x), 0);
        X509_free(x);
        assert_int_equal(x509_from_der(der, der_len - 1, &x), -EINVAL);
        _cleanup_x509_stack_ STACK_OF(X509) *sk3 = NULL;
        assert_int_equal(x509_parse_certs("garbage", 7, &sk3), -EINVAL);
        /* 11 certificates: too many */
        _cleanup_free_ char *many = NULL;
        size_t l = strlen(p);
        many = malloc(l * 11 + 1);
        for (int i = 0; i < 11; i++)
                memcpy(many + l * i, p, l);
        many[l * 11] = 0;
        _cleanup_x509_stack_ STACK_OF(X509) *sk2 = NULL;
        assert_int_equal(x509_parse_certs(many, l * 11, &sk2), -E2BIG);
        assert_int_equal(x509_parse_certs(many, X509_INPUT_MAX + 1, &sk2), -E2BIG);
}

/* ---- CA store: proof of possession -------------------------------------------------------------------- */

static uint64_t ca_clock_usec;
static uint64_t ca_clock(void *u) {
        return ca_clock_usec;
}

static void test_ca_store(void **state) {
        _cleanup_free_ char *root_pem = pem(pki.root), *err = NULL, *dir = strdup("/tmp/test-x509-XXXXXX"), *db = NULL;
        DpsCaStore *cas = NULL;
        char code[2 * DPS_CA_CODE_BYTES + 1], code2[sizeof(code)];
        DpsCaInfo info;

        assert_non_null(mkdtemp(dir));
        assert_true(asprintf(&db, "%s/registrations.db", dir) > 0);
        assert_int_equal(dps_ca_store_new(&cas), 0);
        assert_int_equal(dps_ca_store_open_db(cas, db, &err), 0);
        ca_clock_usec = real_now_usec();
        dps_ca_store_set_clock(cas, ca_clock, NULL);

        assert_int_equal(dps_ca_add(cas, "root", root_pem, strlen(root_pem), false, &err), 0);
        assert_int_equal(dps_ca_add(cas, "root", root_pem, strlen(root_pem), false, &err), -EEXIST);
        err = mfree_str(err);
        assert_int_equal(dps_ca_add(cas, "again", root_pem, strlen(root_pem), false, &err), -EEXIST);
        assert_non_null(strstr(err, "registered already as 'root'"));
        err = mfree_str(err);
        assert_int_equal(dps_ca_add(cas, "bad name!", root_pem, strlen(root_pem), false, &err), -EINVAL);
        err = mfree_str(err);
        {
                _cleanup_x509_ X509 *leaf = device("dev-ca", pki.root, pki.root_key, 0, 1);
                _cleanup_free_ char *lp = pem(leaf);
                assert_int_equal(dps_ca_add(cas, "leaf", lp, strlen(lp), false, &err), -EINVAL);
                assert_non_null(strstr(err, "not a CA"));
                err = mfree_str(err);
        }
        assert_int_equal(dps_ca_find(cas, "ROOT", &info), 0);
        assert_false(info.verified);

        /* no code yet */
        assert_int_equal(dps_ca_verify(cas, "root", root_pem, strlen(root_pem), &err), -ENOKEY);
        err = mfree_str(err);

        /* a verification certificate with the wrong CN */
        assert_int_equal(dps_ca_generate_code(cas, "root", code, NULL), 0);
        assert_int_equal(strlen(code), 48);
        {
                _cleanup_evp_pkey_ EVP_PKEY *k = NULL;
                assert_int_equal(cert_generate_key(CERT_KEY_EC_P256, &k), 0);
                _cleanup_x509_ X509 *v = make(CERT_VERIFICATION, "0000", k, pki.root, pki.root_key, 0, 1);
                _cleanup_free_ char *vp = pem(v);
                assert_int_equal(dps_ca_verify(cas, "root", vp, strlen(vp), &err), -EACCES);
                assert_non_null(strstr(err, "is not the verification code"));
                err = mfree_str(err);
        }
        /* single use: the code is gone */
        assert_int_equal(dps_ca_find(cas, "root", &info), 0);
        assert_false(info.code_pending);

        /* signed by another key (not the CA's) */
        assert_int_equal(dps_ca_generate_code(cas, "root", code, NULL), 0);
        {
                _cleanup_evp_pkey_ EVP_PKEY *k = NULL;
                assert_int_equal(cert_generate_key(CERT_KEY_EC_P256, &k), 0);
                _cleanup_x509_ X509 *v = make(CERT_VERIFICATION, code, k, pki.other_root, pki.other_key, 0, 1);
                _cleanup_free_ char *vp = pem(v);
                assert_int_equal(dps_ca_verify(cas, "root", vp, strlen(vp), &err), -EACCES);
                assert_non_null(strstr(err, "not signed by the key"));
                err = mfree_str(err);
        }
        /* expired code */
        assert_int_equal(dps_ca_generate_code(cas, "root", code, NULL), 0);
        ca_clock_usec += DPS_CA_CODE_LIFETIME_USEC + 1;
        {
                _cleanup_evp_pkey_ EVP_PKEY *k = NULL;
                assert_int_equal(cert_generate_key(CERT_KEY_EC_P256, &k), 0);
                _cleanup_x509_ X509 *v = make(CERT_VERIFICATION, code, k, pki.root, pki.root_key, 0, 1);
                _cleanup_free_ char *vp = pem(v);
                assert_int_equal(dps_ca_verify(cas, "root", vp, strlen(vp), &err), -EKEYEXPIRED);
                err = mfree_str(err);
        }
        ca_clock_usec = real_now_usec();
        /* a replaced code: only the newest one counts */
        assert_int_equal(dps_ca_generate_code(cas, "root", code, NULL), 0);
        assert_int_equal(dps_ca_generate_code(cas, "root", code2, NULL), 0);
        assert_string_not_equal(code, code2);
        {
                _cleanup_evp_pkey_ EVP_PKEY *k = NULL;
                assert_int_equal(cert_generate_key(CERT_KEY_EC_P256, &k), 0);
                _cleanup_x509_ X509 *v = make(CERT_VERIFICATION, code2, k, pki.root, pki.root_key, 0, 1);
                _cleanup_free_ char *vp = pem(v);
                assert_int_equal(dps_ca_verify(cas, "root", vp, strlen(vp), &err), 0);
                /* used up */
                assert_int_equal(dps_ca_verify(cas, "root", vp, strlen(vp), &err), -ENOKEY);
                err = mfree_str(err);
        }
        assert_int_equal(dps_ca_find(cas, "root", &info), 0);
        assert_true(info.verified);

        /* persisted: a second store on the same database sees it; deletion is seen, too */
        DpsCaStore *cas2 = NULL;
        assert_int_equal(dps_ca_store_new(&cas2), 0);
        assert_int_equal(dps_ca_store_open_db(cas2, db, &err), 0);
        assert_int_equal(dps_ca_count(cas2), 1);
        assert_int_equal(dps_ca_find(cas2, "root", &info), 0);
        assert_true(info.verified);
        assert_int_equal(dps_ca_delete(cas2, "root"), 0);
        assert_int_equal(dps_ca_delete(cas2, "root"), -ENOENT);
        assert_int_equal(dps_ca_count(cas), 0); /* picked up through data_version */
        dps_ca_store_free(cas2);

        /* the limit */
        for (int i = 0; i < DPS_CA_MAX + 1; i++) {
                _cleanup_evp_pkey_ EVP_PKEY *k = NULL;
                char name[32];
                snprintf(name, sizeof(name), "ca%d", i);
                assert_int_equal(cert_generate_key(CERT_KEY_EC_P256, &k), 0);
                _cleanup_x509_ X509 *c = make(CERT_ROOT, name, k, NULL, NULL, 0, 1);
                _cleanup_free_ char *cp = pem(c);
                assert_int_equal(dps_ca_add(cas, name, cp, strlen(cp), true, &err), i < DPS_CA_MAX ? 0 : -E2BIG);
                err = mfree_str(err);
        }
        dps_ca_store_free(cas);
        const char *files[] = { "registrations.db", "registrations.db-wal", "registrations.db-shm" };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *f = NULL;
                assert_true(asprintf(&f, "%s/%s", dir, files[i]) > 0);
                (void) unlink(f);
        }
        assert_int_equal(rmdir(dir), 0);
}

/* ---- authentication ------------------------------------------------------------------------------------ */

static DpsData *data_with(const char *groups, const char *individual) {
        _cleanup_free_ char *json = NULL, *msg = NULL;
        DpsData *d = NULL;
        assert_true(asprintf(&json,
                             "{\"idScope\":\"" SCOPE "\",\"linkedHubs\":[{\"name\":\"hub1.example.net\"}],"
                             "\"enrollmentGroups\":[%s],\"individualEnrollments\":[%s]}",
                             groups, individual) > 0);
        if (dps_data_parse(json, strlen(json), &d, &msg) < 0)
                fail_msg("%s", strna(msg));
        return d;
}

static char *json_str(const char *s) {
        struct json_object *o = json_object_new_string(s);
        char *r = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return r;
}

static DpsCaStore *store_with(bool root_verified, bool inter_registered) {
        _cleanup_free_ char *rp = pem(pki.root), *ip = pem(pki.inter), *err = NULL;
        DpsCaStore *cas = NULL;
        assert_int_equal(dps_ca_store_new(&cas), 0);
        assert_int_equal(dps_ca_add(cas, "root", rp, strlen(rp), root_verified, &err), 0);
        if (inter_registered)
                assert_int_equal(dps_ca_add(cas, "inter", ip, strlen(ip), false, &err), 0);
        return cas;
}

static int auth(DpsCaStore *cas, const DpsData *d, const char *regid, X509 *leaf, X509 *extra,
                const DpsEnrollment **e, char **msg) {
        _cleanup_x509_stack_ STACK_OF(X509) *chain = sk_X509_new_null();
        X509_up_ref(leaf);
        sk_X509_push(chain, leaf);
        if (extra) {
                X509_up_ref(extra);
                sk_X509_push(chain, extra);
        }
        free(*msg);
        *msg = NULL;
        uint64_t na = 0;
        return dps_x509_authenticate(cas, d, regid, chain, real_now_usec(), e, &na, msg);
}

static void test_authenticate(void **state) {
        _cleanup_free_ char *msg = NULL, *ip = pem(pki.inter), *ipj = json_str(ip);
        _cleanup_x509_ X509 *leaf_root = device("dev-r", pki.root, pki.root_key, 0, 10),
                             *leaf_inter = device("dev-i", pki.inter, pki.inter_key, 0, 10),
                             *expired = device("dev-old", pki.root, pki.root_key, -3 * 86400, 1),
                             *future = device("dev-new", pki.root, pki.root_key, 2 * 86400, 10),
                             *foreign = device("dev-f", pki.other_root, pki.other_key, 0, 10);
        const DpsEnrollment *e = NULL;
        _cleanup_free_ char *groups = NULL;

        assert_true(asprintf(&groups,
                             "{\"enrollmentGroupId\":\"by-inter\",\"attestation\":{\"type\":\"x509\",\"x509\":"
                             "{\"signingCertificates\":{\"primary\":{\"certificate\":%s}}}}},"
                             "{\"enrollmentGroupId\":\"by-root\",\"attestation\":{\"type\":\"x509\",\"x509\":"
                             "{\"caReferences\":{\"primary\":\"root\"}}}}",
                             ipj) > 0);
        _cleanup_(dps_data_freep) DpsData *d = data_with(groups, "");

        /* verified root: root-signed leaf → by-root; intermediate-signed leaf → by-inter (most specific) */
        DpsCaStore *cas = store_with(true, false);
        assert_int_equal(auth(cas, d, "dev-r", leaf_root, NULL, &e, &msg), 0);
        assert_string_equal(e->enrollment_group_id, "by-root");
        assert_int_equal(auth(cas, d, "DEV-R", leaf_root, NULL, &e, &msg), 0); /* case-insensitive ids */
        assert_int_equal(auth(cas, d, "dev-i", leaf_inter, pki.inter, &e, &msg), 0);
        assert_string_equal(e->enrollment_group_id, "by-inter");
        /* the intermediate not presented: found among the groups' signing certificates */
        assert_int_equal(auth(cas, d, "dev-i", leaf_inter, NULL, &e, &msg), 0);

        /* CN mismatch */
        assert_int_equal(auth(cas, d, "dev-x", leaf_root, NULL, &e, &msg), -EACCES);
        assert_non_null(strstr(msg, "does not match the registration id"));
        /* expired / not yet valid */
        assert_int_equal(auth(cas, d, "dev-old", expired, NULL, &e, &msg), -EACCES);
        assert_non_null(strstr(msg, "expired at"));
        assert_int_equal(auth(cas, d, "dev-new", future, NULL, &e, &msg), -EACCES);
        assert_non_null(strstr(msg, "is not valid before"));
        /* a chain to a CA the service does not know */
        assert_int_equal(auth(cas, d, "dev-f", foreign, pki.other_root, &e, &msg), -EACCES);
        assert_non_null(strstr(msg, "does not lead to a verified CA"));
        /* a CA certificate as the leaf */
        assert_int_equal(auth(cas, d, "test intermediate", pki.inter, NULL, &e, &msg), -EACCES);
        dps_ca_store_free(cas);

        /* unverified root */
        cas = store_with(false, false);
        assert_int_equal(auth(cas, d, "dev-r", leaf_root, NULL, &e, &msg), -EACCES);
        assert_non_null(strstr(msg, "'root'"));
        assert_non_null(strstr(msg, "not verified"));
        dps_ca_store_free(cas);

        /* no CA at all */
        assert_int_equal(auth(NULL, d, "dev-r", leaf_root, NULL, &e, &msg), -EACCES);

        /* disabled group */
        _cleanup_(dps_data_freep) DpsData *d2 = data_with(
                "{\"enrollmentGroupId\":\"off\",\"provisioningStatus\":\"disabled\",\"attestation\":{\"type\":\"x509\","
                "\"x509\":{\"caReferences\":{\"primary\":\"root\"}}}}",
                "");
        cas = store_with(true, false);
        assert_int_equal(auth(cas, d2, "dev-r", leaf_root, NULL, &e, &msg), -EACCES);
        assert_non_null(strstr(msg, "enrollment group 'off' is disabled"));

        /* no group names a certificate of the chain */
        _cleanup_(dps_data_freep) DpsData *d3 = data_with(
                "{\"enrollmentGroupId\":\"elsewhere\",\"attestation\":{\"type\":\"x509\","
                "\"x509\":{\"caReferences\":{\"primary\":\"nope\"}}}}",
                "");
        assert_int_equal(auth(cas, d3, "dev-r", leaf_root, NULL, &e, &msg), -EACCES);
        assert_non_null(strstr(msg, "no enrollment group"));

        /* individual enrollments: by certificate and by thumbprint; a different certificate */
        _cleanup_free_ char *lp = pem(leaf_root), *lpj = json_str(lp), *ind = NULL;
        char tp[65];
        assert_int_equal(x509_thumbprint_sha1(leaf_inter, tp), 0);
        assert_true(asprintf(&ind,
                             "{\"registrationId\":\"dev-r\",\"deviceId\":\"devr\",\"attestation\":{\"type\":\"x509\","
                             "\"x509\":{\"clientCertificates\":{\"primary\":{\"certificate\":%s}}}}},"
                             "{\"registrationId\":\"dev-i\",\"attestation\":{\"type\":\"x509\",\"x509\":"
                             "{\"clientCertificates\":{\"primary\":{\"info\":{\"sha1Thumbprint\":\"%s\"}}}}}}",
                             lpj, tp) > 0);
        _cleanup_(dps_data_freep) DpsData *d4 = data_with("", ind);
        assert_int_equal(auth(NULL, d4, "dev-r", leaf_root, NULL, &e, &msg), 0);
        assert_string_equal(e->registration_id, "dev-r");
        assert_int_equal(auth(NULL, d4, "dev-i", leaf_inter, NULL, &e, &msg), 0);
        _cleanup_x509_ X509 *other = device("dev-r", pki.root, pki.root_key, 0, 10);
        assert_int_equal(auth(NULL, d4, "dev-r", other, NULL, &e, &msg), -EACCES);
        assert_non_null(strstr(msg, "not the one of the individual enrollment"));
        dps_ca_store_free(cas);
}

/* ---- through the service and the admin API -------------------------------------------------------------- */

static int conn_id[8];

static void request(DpsService *s, unsigned conn, X509 *leaf, const char *regid, unsigned want_status,
                    int64_t want_code, const char *want_text) {
        _cleanup_free_ char *username = NULL;
        _cleanup_free_ uint8_t *der = NULL;
        size_t der_len = 0;
        DpsClient *c = NULL;
        DpsReply r = {};

        assert_int_equal(x509_to_der(leaf, &der, &der_len), 0);
        const uint8_t *ders[] = { der };
        size_t lens[] = { der_len };
        assert_true(asprintf(&username, SCOPE "/registrations/%s/api-version=2019-03-31", regid) > 0);
        assert_int_equal(dps_service_connect_x509_der(s, conn_id + conn, regid, username, ders, lens, 1, &c),
                         DPS_CONNECT_ACCEPTED);
        const char *body = "{\"registrationId\":\"x\"}";
        _cleanup_free_ char *b = NULL;
        assert_true(asprintf(&b, "{\"registrationId\":\"%s\"}", regid) > 0);
        body = b;
        assert_int_equal(dps_client_handle_request(c, DPS_REGISTER_TOPIC_PREFIX "$rid=1", body, strlen(body), &r), 0);
        assert_int_equal(r.status, want_status);
        if (want_code) {
                char code[32];
                snprintf(code, sizeof(code), "\"errorCode\":%" PRIi64, want_code);
                if (!strstr(r.body, code))
                        fail_msg("%s", r.body);
        }
        if (want_text && !strstr(r.body, want_text))
                fail_msg("expected '%s' in %s", want_text, r.body);
        dps_reply_done(&r);
        dps_service_disconnect(s, conn_id + conn);
}

static char *admin(DpsService *s, const char *req) {
        char *out = NULL;
        size_t len = 0;
        assert_int_equal(dps_admin_handle(s, req, strlen(req), &out, &len), 0);
        return out;
}

static void test_service(void **state) {
        _cleanup_(dps_service_freep) DpsService *s = NULL;
        _cleanup_x509_ X509 *leaf = device("dev-s", pki.root, pki.root_key, 0, 10),
                             *expired = device("dev-old", pki.root, pki.root_key, -3 * 86400, 1);
        _cleanup_free_ char *rp = pem(pki.root), *rpj = json_str(rp), *req = NULL;
        char *out = NULL;

        assert_int_equal(dps_service_new(&s), 0);
        dps_service_set_data(s, data_with("{\"enrollmentGroupId\":\"fleet\",\"attestation\":{\"type\":\"x509\","
                                          "\"x509\":{\"caReferences\":{\"primary\":\"root\"}}}}",
                                          ""));

        /* not added yet */
        request(s, 0, leaf, "dev-s", 401, 401002, "does not lead to a verified CA");

        assert_true(asprintf(&req, "{\"commands\":[{\"command\":\"addCaCertificate\",\"name\":\"root\",\"certificate\":%s}]}",
                             rpj) > 0);
        out = admin(s, req);
        if (!strstr(out, "\"status\":\"Unverified\""))
                fail_msg("%s", out);
        free(out);
        request(s, 1, leaf, "dev-s", 401, 401002, "not verified");
        request(s, 1, leaf, "dev-other", 401, 401002, "does not match the registration id");
        request(s, 1, expired, "dev-old", 401, 401002, "expired at");

        out = admin(s, "{\"commands\":[{\"command\":\"generateVerificationCode\",\"name\":\"root\"}]}");
        struct json_object *o = NULL, *v = NULL;
        assert_int_equal(json_parse_limited(out, strlen(out), 1 << 20, 32, &o), 0);
        free(out);
        v = json_object_array_get_idx(json_object_object_get(o, "responses"), 0);
        v = json_object_object_get(json_object_object_get(v, "data"), "verificationCode");
        assert_non_null(v);
        _cleanup_evp_pkey_ EVP_PKEY *k = NULL;
        assert_int_equal(cert_generate_key(CERT_KEY_EC_P256, &k), 0);
        _cleanup_x509_ X509 *ver = make(CERT_VERIFICATION, json_object_get_string(v), k, pki.root, pki.root_key, 0, 1);
        json_object_put(o);
        _cleanup_free_ char *vp = pem(ver), *vpj = json_str(vp), *req2 = NULL;
        assert_true(asprintf(&req2,
                             "{\"commands\":[{\"command\":\"verifyCaCertificate\",\"name\":\"root\",\"certificate\":%s}]}",
                             vpj) > 0);
        out = admin(s, req2);
        assert_non_null(strstr(out, "\"status\":\"Verified\""));
        free(out);
        /* a second verify: the code was single use */
        out = admin(s, req2);
        assert_non_null(strstr(out, "no verification code is outstanding"));
        free(out);

        request(s, 2, leaf, "dev-s", 202, 0, "\"status\":\"assigning\"");

        out = admin(s, "{\"commands\":[{\"command\":\"listCaCertificates\"}]}");
        assert_non_null(strstr(out, "\"name\":\"root\""));
        free(out);
        out = admin(s, "{\"commands\":[{\"command\":\"deleteCaCertificate\",\"name\":\"root\"}]}");
        assert_null(strstr(out, "error"));
        free(out);
        out = admin(s, "{\"commands\":[{\"command\":\"deleteCaCertificate\",\"name\":\"root\"}]}");
        assert_non_null(strstr(out, "Not found"));
        free(out);
        request(s, 3, leaf, "dev-s", 401, 401002, NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_certgen, pki_setup),
                cmocka_unit_test_setup(test_parse_limits, pki_setup),
                cmocka_unit_test_setup(test_ca_store, pki_setup),
                cmocka_unit_test_setup(test_authenticate, pki_setup),
                cmocka_unit_test_setup(test_service, pki_setup),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
