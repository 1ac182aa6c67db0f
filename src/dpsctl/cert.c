/* SPDX-License-Identifier: MIT */
/* edgeprov-dpsctl cert …, ca …, and X.509 enrollments (issue 6): the certGen.sh replacement,
 * the service's CA certificates through the admin API, and x509 attestation in the data file. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "dps/certgen.h"
#include "dps/datafile.h"
#include "dpsctl/dpsctl.h"
#include "edgeprov/codec.h"
#include "edgeprov/dps.h"
#include "edgeprov/fileio.h"
#include "edgeprov/json-util.h"
#include "edgeprov/macro.h"
#include "edgeprov/x509-util.h"

#define DEFAULT_DAYS_CA 3650
#define DEFAULT_DAYS_LEAF 365
#define DEFAULT_DAYS_VERIFICATION 2

typedef struct Paths {
        char *cert, *key, *chain;
} Paths;

static void paths_done(Paths *p) {
        free(p->cert);
        free(p->key);
        free(p->chain);
}

static int paths_from_prefix(const char *prefix, Paths *ret) {
        Paths p = {};
        if (asprintf(&p.cert, "%s.cert.pem", prefix) < 0 || asprintf(&p.key, "%s.key.pem", prefix) < 0 ||
            asprintf(&p.chain, "%s.chain.pem", prefix) < 0) {
                paths_done(&p);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

static bool file_exists(const char *path) {
        return access(path, F_OK) == 0;
}

/* The issuing CA: certificate, key (must match), and its chain (itself when there is no
 * chain file). */
static int load_ca(const Paths *p, X509 **ret_cert, EVP_PKEY **ret_key, STACK_OF(X509) **ret_chain) {
        _cleanup_x509_stack_ STACK_OF(X509) *certs = NULL, *chain = NULL;
        _cleanup_evp_pkey_ EVP_PKEY *key = NULL;
        int r;

        r = x509_load_certs(p->cert, &certs);
        if (r == -ENOENT)
                return err_msg("CA certificate %s: no such file (create it with 'cert root' or "
                               "'cert intermediate', or pass --ca-cert).", p->cert);
        if (r < 0)
                return err_msg("CA certificate %s: %s", p->cert,
                               r == -EINVAL ? "not a PEM or DER certificate" : strerror(-r));
        X509 *cert = sk_X509_value(certs, 0);
        if (X509_check_ca(cert) < 1)
                return err_msg("%s is not a CA certificate (no basicConstraints CA:TRUE).", p->cert);
        r = x509_load_private_key(p->key, &key);
        if (r == -ENOENT)
                return err_msg("CA key %s: no such file.", p->key);
        if (r < 0)
                return err_msg("CA key %s: %s", p->key,
                               r == -EINVAL ? "not an unencrypted PEM private key" : strerror(-r));
        if (!cert_key_matches(cert, key))
                return err_msg("CA key %s does not belong to the CA certificate %s.", p->key, p->cert);
        if (p->chain && file_exists(p->chain)) {
                r = x509_load_certs(p->chain, &chain);
                if (r < 0)
                        return err_msg("CA chain %s: %s", p->chain,
                                       r == -EINVAL ? "not PEM certificates" : strerror(-r));
                if (X509_cmp(sk_X509_value(chain, 0), cert) != 0)
                        return err_msg("CA chain %s does not start with the CA certificate %s.", p->chain, p->cert);
        } else {
                chain = sk_X509_new_null();
                if (!chain || X509_up_ref(cert) != 1 || !sk_X509_push(chain, cert))
                        return err_msg("Out of memory.");
        }
        X509_up_ref(cert);
        *ret_cert = cert;
        *ret_key = TAKE_PTR(key);
        *ret_chain = TAKE_PTR(chain);
        return 0;
}

static int write_pem_certs(const char *path, X509 *first, STACK_OF(X509) *rest) {
        _cleanup_free_ char *all = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&all, &len);
        if (!f)
                return -ENOMEM;
        bool ok = PEM_write_X509(f, first) == 1;
        for (int i = 0; ok && rest && i < sk_X509_num(rest); i++)
                ok = PEM_write_X509(f, sk_X509_value(rest, i)) == 1;
        if (fclose(f) != 0 || !ok)
                return -EIO;
        return write_file_atomic(path, all, len, 0644);
}

static int verb_cert_usage(void) {
        return err_msg("cert: expected root, intermediate, verification or device (see --help).");
}

int verb_cert(int argc, char *argv[]) {
        enum { ARG_CA = 0x100, ARG_CA_CERT, ARG_CA_KEY, ARG_CA_CHAIN, ARG_VALID_FROM, ARG_FORCE, ARG_ORG, ARG_PUBKEY };
        static const struct option options[] = {
                { "out", required_argument, NULL, 'o' },
                { "cn", required_argument, NULL, 'n' },
                { "org", required_argument, NULL, ARG_ORG },
                { "days", required_argument, NULL, 'd' },
                { "key-type", required_argument, NULL, 'k' },
                { "pathlen", required_argument, NULL, 'p' },
                { "ca", required_argument, NULL, ARG_CA },
                { "ca-cert", required_argument, NULL, ARG_CA_CERT },
                { "ca-key", required_argument, NULL, ARG_CA_KEY },
                { "ca-chain", required_argument, NULL, ARG_CA_CHAIN },
                { "valid-from-offset", required_argument, NULL, ARG_VALID_FROM },
                { "force", no_argument, NULL, ARG_FORCE },
                { "public-key", required_argument, NULL, ARG_PUBKEY },
                {},
        };
        _cleanup_(paths_done) Paths out = {}, ca = {};
        const char *out_prefix = NULL, *cn = NULL, *org = NULL, *ca_prefix = NULL;
        const char *ca_cert = NULL, *ca_key = NULL, *ca_chain = NULL, *pubkey = NULL;
        CertKeyType kt = CERT_KEY_EC_P256;
        long days = -1, pathlen = -2;
        int64_t offset = 0;
        bool force = false;
        int c, r;

        if (argc < 2)
                return verb_cert_usage();
        const char *what = argv[1];
        CertKind kind = streq(what, "root")           ? CERT_ROOT
                        : streq(what, "intermediate") ? CERT_INTERMEDIATE
                        : streq(what, "verification") ? CERT_VERIFICATION
                        : streq(what, "device")       ? CERT_DEVICE
                                                      : _CERT_KIND_MAX;
        if (kind == _CERT_KIND_MAX)
                return verb_cert_usage();
        argc--;
        argv++;

        optind = 0;
        while ((c = getopt_long(argc, argv, "o:n:d:k:p:", options, NULL)) >= 0) {
                char *end = NULL;
                switch (c) {
                case 'o':
                        out_prefix = optarg;
                        break;
                case 'n':
                        cn = optarg;
                        break;
                case ARG_ORG:
                        org = optarg;
                        break;
                case 'd':
                        errno = 0;
                        days = strtol(optarg, &end, 10);
                        if (errno || !end || *end || days < 1 || days > CERT_DAYS_MAX)
                                return err_msg("cert %s: --days must be 1..%d.", what, CERT_DAYS_MAX);
                        break;
                case 'k':
                        kt = cert_key_type_from_string(optarg);
                        if (kt < 0)
                                return err_msg("cert %s: --key-type must be ec (P-256, the default), rsa2048 or "
                                               "rsa3072.", what);
                        break;
                case 'p':
                        errno = 0;
                        pathlen = strtol(optarg, &end, 10);
                        if (errno || !end || *end || pathlen < 0 || pathlen > 16)
                                return err_msg("cert %s: --pathlen must be 0..16.", what);
                        break;
                case ARG_CA:
                        ca_prefix = optarg;
                        break;
                case ARG_CA_CERT:
                        ca_cert = optarg;
                        break;
                case ARG_CA_KEY:
                        ca_key = optarg;
                        break;
                case ARG_CA_CHAIN:
                        ca_chain = optarg;
                        break;
                case ARG_VALID_FROM:
                        errno = 0;
                        offset = strtoll(optarg, &end, 10);
                        if (errno || !end || *end || offset < -3650LL * 86400 || offset > 3650LL * 86400)
                                return err_msg("cert %s: --valid-from-offset must be seconds within ±10 years.",
                                               what);
                        break;
                case ARG_FORCE:
                        force = true;
                        break;
                case ARG_PUBKEY:
                        pubkey = optarg;
                        break;
                default:
                        return EXIT_FAILURE;
                }
        }

        /* the positional argument: the registration id / the verification code */
        const char *pos = optind < argc ? argv[optind] : NULL;
        if (optind + (kind == CERT_DEVICE || kind == CERT_VERIFICATION ? 1 : 0) != argc)
                return err_msg(kind == CERT_DEVICE         ? "cert device: expected exactly one registration id."
                               : kind == CERT_VERIFICATION ? "cert verification: expected exactly one verification "
                                                             "code."
                                                           : "cert %s: unexpected argument '%s'.",
                               what, pos);
        if (kind == CERT_DEVICE || kind == CERT_VERIFICATION) {
                if (cn)
                        return err_msg("cert %s: the CN is the %s; --cn is not allowed.", what,
                                       kind == CERT_DEVICE ? "registration id" : "verification code");
                cn = pos;
        }
        if (kind == CERT_DEVICE) {
                const char *why = NULL;
                if (!x509_cn_is_valid_registration_id(cn, &why))
                        return err_msg("cert device: '%s' cannot be a registration id in a certificate CN: %s.", cn,
                                       why);
        }
        if (!cn)
                cn = kind == CERT_ROOT ? "edgeprov root CA" : "edgeprov intermediate CA";
        if (!out_prefix)
                out_prefix = kind == CERT_DEVICE ? cn : kind == CERT_VERIFICATION ? "verification" : NULL;
        if (!out_prefix)
                return err_msg("cert %s: --out PREFIX is required (writes PREFIX.cert.pem, PREFIX.key.pem, "
                               "PREFIX.chain.pem).", what);
        if (pathlen != -2 && kind != CERT_ROOT && kind != CERT_INTERMEDIATE)
                return err_msg("cert %s: --pathlen is for CA certificates.", what);
        if (days < 0)
                days = kind == CERT_ROOT || kind == CERT_INTERMEDIATE ? DEFAULT_DAYS_CA
                       : kind == CERT_VERIFICATION                  ? DEFAULT_DAYS_VERIFICATION
                                                                     : DEFAULT_DAYS_LEAF;
        if (pathlen == -2)
                pathlen = kind == CERT_ROOT ? -1 : kind == CERT_INTERMEDIATE ? 0 : -1;

        if (paths_from_prefix(out_prefix, &out) < 0)
                return err_msg("Out of memory.");
        if (pubkey && kind == CERT_ROOT)
                return err_msg("cert root: a root CA signs itself; --public-key is not possible.");
        if (!force && !pubkey && file_exists(out.key))
                return err_msg("cert %s: %s exists; refusing to replace a key (use --force).", what, out.key);

        _cleanup_x509_ X509 *issuer = NULL, *x = NULL;
        _cleanup_evp_pkey_ EVP_PKEY *issuer_key = NULL, *key = NULL;
        _cleanup_x509_stack_ STACK_OF(X509) *issuer_chain = NULL;
        if (kind != CERT_ROOT) {
                if (ca_prefix && (ca_cert || ca_key))
                        return err_msg("cert %s: --ca conflicts with --ca-cert/--ca-key.", what);
                if (ca_prefix) {
                        if (paths_from_prefix(ca_prefix, &ca) < 0)
                                return err_msg("Out of memory.");
                } else if (ca_cert && ca_key) {
                        ca.cert = strdup(ca_cert);
                        ca.key = strdup(ca_key);
                        ca.chain = ca_chain ? strdup(ca_chain) : NULL;
                        if (!ca.cert || !ca.key || (ca_chain && !ca.chain))
                                return err_msg("Out of memory.");
                } else
                        return err_msg("cert %s: the issuing CA is needed: --ca PREFIX or --ca-cert FILE "
                                       "--ca-key FILE.", what);
                if (ca_chain && ca_prefix) {
                        free(ca.chain);
                        ca.chain = strdup(ca_chain);
                        if (!ca.chain)
                                return err_msg("Out of memory.");
                }
                r = load_ca(&ca, &issuer, &issuer_key, &issuer_chain);
                if (r != 0)
                        return r;
        } else if (ca_prefix || ca_cert || ca_key)
                return err_msg("cert root: a root CA is self-signed; --ca is not allowed.");

        if (pubkey) {
                /* a key made elsewhere, e.g. in the TPM (openssl genpkey -provider tpm2 …; pkey -pubout) */
                FILE *f = fopen(pubkey, "re");
                if (!f)
                        return err_msg("--public-key %s: %m", pubkey);
                key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
                fclose(f);
                ERR_clear_error();
                if (!key)
                        return err_msg("--public-key %s: not a PEM public key.", pubkey);
        } else {
                r = cert_generate_key(kt, &key);
                if (r < 0)
                        return err_msg("Cannot generate the key: %s", strerror(-r));
        }

        _cleanup_free_ char *why = NULL;
        CertRequest req = {
                .kind = kind,
                .common_name = cn,
                .organization = org,
                .days = (unsigned) days,
                .pathlen = (int) pathlen,
                .not_before_offset_sec = offset,
                .key = key,
                .issuer_cert = issuer,
                .issuer_key = issuer_key,
        };
        r = cert_create(&req, &x, &why);
        if (r < 0)
                return err_msg("cert %s: %s.", what, why ?: strerror(-r));

        _cleanup_erase_ char *key_pem = NULL;
        size_t key_len = 0;
        if (!pubkey) {
                r = cert_key_to_pem(key, &key_pem, &key_len);
                if (r < 0)
                        return err_msg("Cannot encode the key: %s", strerror(-r));
                r = write_file_atomic(out.key, key_pem, key_len, 0600);
                if (r < 0)
                        return err_msg("Cannot write %s: %s", out.key, strerror(-r));
        }
        r = write_pem_certs(out.cert, x, NULL);
        if (r < 0)
                return err_msg("Cannot write %s: %s", out.cert, strerror(-r));
        /* the full chain beside it: this certificate, then the issuer's chain up to the root */
        r = write_pem_certs(out.chain, x, issuer_chain);
        if (r < 0)
                return err_msg("Cannot write %s: %s", out.chain, strerror(-r));

        char tp[65] = "";
        (void) x509_thumbprint_sha1(x, tp);
        printf("%s\n%s%s%s\n", out.cert, pubkey ? "" : out.key, pubkey ? "" : "\n", out.chain);
        fprintf(stderr, "%s certificate CN=%s, thumbprint %s, valid %ld days.\n", what, cn, tp, days);
        return EXIT_SUCCESS;
}

/* ---- ca … through the admin API ----------------------------------------------------------- */

static const char *jstr(struct json_object *o, const char *key) {
        struct json_object *v;
        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static int ca_call(struct json_object *cmd, struct json_object **ret_data) {
        _cleanup_json_ struct json_object *resp = NULL;
        struct json_object *data = NULL;

        if (!cmd)
                return err_msg("Out of memory.");
        int r = admin_command(cmd, &resp);
        if (r != 0)
                return r;
        const char *error = jstr(resp, "error");
        if (error) {
                err_msg("%s", error);
                return streq(error, "Not found") ? EXIT_NOT_FOUND_DPSCTL : EXIT_FAILURE;
        }
        if (!json_object_object_get_ex(resp, "data", &data))
                return err_msg("Malformed answer from the admin API."), EXIT_ADMIN_API;
        *ret_data = json_object_get(data);
        return 0;
}

static void print_info(struct json_object *i) {
        printf("Name:        %s\n", strna(jstr(i, "name")));
        printf("Status:      %s\n", strna(jstr(i, "status")));
        printf("Subject:     %s\n", strna(jstr(i, "subject")));
        printf("Thumbprint:  %s\n", strna(jstr(i, "thumbprint")));
        printf("SHA-256:     %s\n", strna(jstr(i, "sha256Thumbprint")));
        printf("Valid:       %s .. %s\n", strna(jstr(i, "notBefore")), strna(jstr(i, "expiry")));
        printf("Updated:     %s\n", strna(jstr(i, "updated")));
}

static void print_json_obj(struct json_object *o) {
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE));
}

static struct json_object *new_cmd(const char *command, const char *name) {
        struct json_object *o = json_object_new_object();
        if (!o || json_add_string(o, "command", command) < 0 || (name && json_add_string(o, "name", name) < 0)) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static int add_cert_file(struct json_object *cmd, const char *path) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r = read_file_full(path, X509_INPUT_MAX, &buf, &len);
        if (r < 0)
                return err_msg("%s: %s", path, r == -EFBIG ? "too large for a certificate" : strerror(-r));
        if (!memmem(buf, len, "-----BEGIN", 10)) {
                /* DER (.cer): base64 */
                _cleanup_free_ char *b64 = NULL;
                if (base64_encode(buf, len, &b64) < 0 || json_add_string(cmd, "certificate", b64) < 0)
                        return err_msg("Out of memory.");
                return 0;
        }
        if (json_add_string(cmd, "certificate", buf) < 0)
                return err_msg("Out of memory.");
        return 0;
}

int verb_ca(int argc, char *argv[], bool json) {
        _cleanup_json_ struct json_object *data = NULL;
        struct json_object *cmd = NULL, *v = NULL;
        int r;

        if (argc < 2)
                return err_msg("ca: expected add, list, show, verification-code, verify or delete.");
        const char *action = argv[1];

        if (streq(action, "list")) {
                if (argc != 2)
                        return err_msg("ca list: unexpected argument '%s'.", argv[2]);
                r = ca_call(new_cmd("listCaCertificates", NULL), &data);
                if (r != 0)
                        return r;
                if (!json_object_object_get_ex(data, "certificates", &v) || !json_object_is_type(v, json_type_array))
                        return err_msg("Malformed answer from the admin API."), EXIT_ADMIN_API;
                if (json) {
                        print_json_obj(v);
                        return EXIT_SUCCESS;
                }
                printf("%-24s %-10s %-40s %-20s %s\n", "NAME", "STATUS", "THUMBPRINT", "EXPIRY", "SUBJECT");
                for (size_t i = 0; i < json_object_array_length(v); i++) {
                        struct json_object *x = json_object_array_get_idx(v, i);
                        printf("%-24s %-10s %-40s %-20s %s\n", strna(jstr(x, "name")), strna(jstr(x, "status")),
                               strna(jstr(x, "thumbprint")), strna(jstr(x, "expiry")), strna(jstr(x, "subject")));
                }
                return EXIT_SUCCESS;
        }

        bool verified = false;
        if (streq(action, "add") && argc == 5 && streq(argv[4], "--verified")) {
                verified = true;
                argc--;
        }
        size_t want = streq(action, "add") || streq(action, "verify") ? 4
                      : streq(action, "show") || streq(action, "delete") || streq(action, "verification-code")
                              ? 3
                              : 0;
        if (want == 0)
                return err_msg("ca: unknown action '%s' (add, list, show, verification-code, verify, delete).",
                               action);
        if ((size_t) argc != want)
                return err_msg(want == 4 ? "ca %s: expected NAME FILE." : "ca %s: expected exactly one NAME.",
                               action);
        const char *name = argv[2];

        if (streq(action, "add") || streq(action, "verify")) {
                cmd = new_cmd(streq(action, "add") ? "addCaCertificate" : "verifyCaCertificate", name);
                if (!cmd)
                        return err_msg("Out of memory.");
                r = add_cert_file(cmd, argv[3]);
                if (r == 0 && verified && json_add(cmd, "verified", json_object_new_boolean(true)) < 0)
                        r = err_msg("Out of memory.");
                if (r != 0) {
                        json_object_put(cmd);
                        return r;
                }
        } else
                cmd = new_cmd(streq(action, "show")     ? "getCaCertificate"
                              : streq(action, "delete") ? "deleteCaCertificate"
                                                        : "generateVerificationCode",
                              name);
        r = ca_call(cmd, &data);
        if (r != 0)
                return r;
        if (streq(action, "delete"))
                return EXIT_SUCCESS;
        if (streq(action, "verification-code")) {
                if (json)
                        print_json_obj(data);
                else
                        printf("%s\n", strna(jstr(data, "verificationCode")));
                return EXIT_SUCCESS;
        }
        if (!json_object_object_get_ex(data, "certificate", &v))
                return err_msg("Malformed answer from the admin API."), EXIT_ADMIN_API;
        if (json)
                print_json_obj(v);
        else
                print_info(v);
        return EXIT_SUCCESS;
}

/* ---- X.509 enrollments in the data file ------------------------------------------------------ */

static const char *const x509_options[] = { "--ca", "--signing-cert", "--x509-cert", "--x509-thumbprint", NULL };

bool x509_enrollment_wanted(int argc, char *argv[]) {
        if (argc < 2 || !streq(argv[1], "add"))
                return false;
        for (int i = 2; i < argc; i++)
                for (size_t j = 0; x509_options[j]; j++)
                        if (streq(argv[i], x509_options[j]) ||
                            (startswith(argv[i], x509_options[j]) && argv[i][strlen(x509_options[j])] == '='))
                                return true;
        return false;
}

static struct json_object *cert_entry_from_file(const char *path, char **reterr) {
        _cleanup_x509_stack_ STACK_OF(X509) *sk = NULL;
        _cleanup_free_ char *pem = NULL;
        int r = x509_load_certs(path, &sk);
        if (r < 0) {
                (void) asprintf(reterr, "%s: %s", path,
                                r == -ENOENT   ? "no such file"
                                : r == -EINVAL ? "not a PEM or DER certificate"
                                               : strerror(-r));
                return NULL;
        }
        if (x509_to_pem(sk_X509_value(sk, 0), &pem) < 0)
                return NULL;
        struct json_object *e = json_object_new_object();
        if (!e || json_add_string(e, "certificate", pem) < 0) {
                json_object_put(e);
                return NULL;
        }
        return e;
}

int verb_x509_enrollment(int argc, char *argv[], bool group) {
        enum { ARG_CA = 0x100, ARG_SIGNING, ARG_CERT, ARG_THUMB, ARG_DEVICE_ID, ARG_HUB, ARG_DISABLED, ARG_EDGE };
        static const struct option options[] = {
                { "ca", required_argument, NULL, ARG_CA },
                { "signing-cert", required_argument, NULL, ARG_SIGNING },
                { "x509-cert", required_argument, NULL, ARG_CERT },
                { "x509-thumbprint", required_argument, NULL, ARG_THUMB },
                { "device-id", required_argument, NULL, ARG_DEVICE_ID },
                { "hub", required_argument, NULL, ARG_HUB },
                { "disabled", no_argument, NULL, ARG_DISABLED },
                { "iot-edge", no_argument, NULL, ARG_EDGE },
                {},
        };
        const char *what = group ? "group" : "enrollment";
        const char *ca = NULL, *signing = NULL, *cert = NULL, *thumb = NULL, *device_id = NULL, *hubs[50];
        _cleanup_(dps_data_freep) DpsData *d = NULL;
        _cleanup_free_ char *msg = NULL;
        size_t n_hubs = 0;
        bool disabled = false, edge = false;
        int c, r;

        argc--;
        argv++; /* "add" becomes argv[0] */
        optind = 0;
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case ARG_CA:
                        ca = optarg;
                        break;
                case ARG_SIGNING:
                        signing = optarg;
                        break;
                case ARG_CERT:
                        cert = optarg;
                        break;
                case ARG_THUMB:
                        thumb = optarg;
                        break;
                case ARG_DEVICE_ID:
                        device_id = optarg;
                        break;
                case ARG_HUB:
                        if (n_hubs >= ELEMENTSOF(hubs))
                                return err_msg("%s add: too many --hub options.", what);
                        hubs[n_hubs++] = optarg;
                        break;
                case ARG_DISABLED:
                        disabled = true;
                        break;
                case ARG_EDGE:
                        edge = true;
                        break;
                default:
                        return err_msg("%s add: with X.509 attestation only --ca/--signing-cert (groups), "
                                       "--x509-cert/--x509-thumbprint (enrollments), --device-id, --hub, "
                                       "--disabled and --iot-edge are allowed.",
                                       what);
                }
        if (optind + 1 != argc)
                return err_msg("%s add: expected exactly one %s.", what,
                               group ? "enrollment group id" : "registration id");
        const char *id = argv[optind];
        if (!dps_registration_id_is_valid(id))
                return err_msg("%s add: '%s' is not a valid id.", what, id);
        if (group && (cert || thumb || device_id))
                return err_msg("group add: --x509-cert, --x509-thumbprint and --device-id are for individual "
                               "enrollments.");
        if (!group && (ca || signing))
                return err_msg("enrollment add: --ca and --signing-cert are for enrollment groups.");
        if ((ca && signing) || (cert && thumb))
                return err_msg("%s add: give one of %s.", what,
                               group ? "--ca or --signing-cert" : "--x509-cert or --x509-thumbprint");
        if (thumb) {
                size_t l = strlen(thumb);
                if ((l != 40 && l != 64) || strspn(thumb, "0123456789abcdefABCDEF") != l)
                        return err_msg("enrollment add: --x509-thumbprint must be a SHA-1 (40) or SHA-256 (64) hex "
                                       "thumbprint.");
        }
        if (device_id && !dps_device_id_is_valid(device_id))
                return err_msg("enrollment add: --device-id: '%s' is not a valid device id.", device_id);

        _cleanup_json_ struct json_object *e = json_object_new_object();
        struct json_object *att = json_object_new_object(), *x = json_object_new_object(),
                           *pair = json_object_new_object(), *entry = NULL;
        if (!e || json_add(e, "attestation", att) < 0 || json_add_string(att, "type", "x509") < 0 ||
            json_add(att, "x509", x) < 0) {
                json_object_put(pair);
                return err_msg("Out of memory.");
        }
        if (ca) {
                if (json_add(x, "caReferences", pair) < 0 || json_add_string(pair, "primary", ca) < 0)
                        return err_msg("Out of memory.");
        } else {
                const char *key = signing ? "signingCertificates" : "clientCertificates";
                if (json_add(x, key, pair) < 0)
                        return err_msg("Out of memory.");
                if (signing || cert) {
                        entry = cert_entry_from_file(signing ?: cert, &msg);
                        if (!entry)
                                return err_msg("%s add: %s", what, msg ?: "out of memory");
                } else {
                        entry = json_object_new_object();
                        struct json_object *info = json_object_new_object();
                        if (!entry || json_add(entry, "info", info) < 0 ||
                            json_add_string(info, strlen(thumb) == 40 ? "sha1Thumbprint" : "sha256Thumbprint", thumb) <
                                    0) {
                                json_object_put(entry);
                                return err_msg("Out of memory.");
                        }
                }
                if (json_add(pair, "primary", entry) < 0)
                        return err_msg("Out of memory.");
        }
        if (!ca && !signing && !cert && !thumb)
                return err_msg("%s add: X.509 needs %s.", what,
                               group ? "--ca NAME or --signing-cert FILE" : "--x509-cert FILE or --x509-thumbprint");

        char now[32];
        time_t t = time(NULL);
        struct tm tm;
        strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        struct json_object *caps = json_object_new_object();
        if (json_add_string(e, group ? "enrollmentGroupId" : "registrationId", id) < 0 ||
            (device_id && json_add_string(e, "deviceId", device_id) < 0) ||
            json_add_string(e, "provisioningStatus", disabled ? "disabled" : "enabled") < 0 ||
            json_add(e, "capabilities", caps) < 0 || json_add(caps, "iotEdge", json_object_new_boolean(edge)) < 0 ||
            json_add_string(e, "createdDateTimeUtc", now) < 0 || json_add_string(e, "lastUpdatedDateTimeUtc", now) < 0)
                return err_msg("Out of memory.");
        if (n_hubs > 0) {
                struct json_object *a = json_object_new_array();
                if (json_add(e, "iotHubs", a) < 0)
                        return err_msg("Out of memory.");
                for (size_t i = 0; i < n_hubs; i++)
                        if (json_object_array_add(a, json_object_new_string(hubs[i])) < 0)
                                return err_msg("Out of memory.");
        }

        if (load(&d) != 0)
                return EXIT_FAILURE;
        r = group ? dps_data_add_group(d, TAKE_PTR(e), &msg) : dps_data_add_individual(d, TAKE_PTR(e), &msg);
        if (r == -EEXIST)
                return err_msg("%s %s: '%s' already exists.", what, "add", id);
        if (r < 0)
                return err_msg("%s add: %s", what, msg ?: strerror(-r));
        return save(d) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
