/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sqlite3.h>

#include "dps/attest-x509.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/x509-util.h"

typedef struct DpsCa {
        char *name;
        X509 *cert;
        bool verified;
        char *subject;
        char thumbprint[65], sha256[65];
        char not_before[32], not_after[32];
        char code[2 * DPS_CA_CODE_BYTES + 1]; /* empty: none outstanding */
        uint64_t code_expiry_usec;
        uint64_t created_usec, updated_usec;
} DpsCa;

struct DpsCaStore {
        DpsCa cas[DPS_CA_MAX];
        size_t n;
        sqlite3 *db;
        int64_t data_version;
        uint64_t (*clock)(void *);
        void *clock_userdata;
};

static uint64_t now_usec(const DpsCaStore *cas) {
        if (cas->clock)
                return cas->clock(cas->clock_userdata);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}


static void ca_done(DpsCa *c) {
        free(c->name);
        free(c->subject);
        X509_free(c->cert);
        OPENSSL_cleanse(c->code, sizeof(c->code));
        *c = (DpsCa) {};
}

int dps_ca_store_new(DpsCaStore **ret) {
        DpsCaStore *cas = calloc(1, sizeof(DpsCaStore));
        if (!cas)
                return -ENOMEM;
        cas->data_version = -1;
        *ret = cas;
        return 0;
}

DpsCaStore *dps_ca_store_free(DpsCaStore *cas) {
        if (!cas)
                return NULL;
        for (size_t i = 0; i < cas->n; i++)
                ca_done(cas->cas + i);
        sqlite3_close_v2(cas->db);
        free(cas);
        return NULL;
}

void dps_ca_store_set_clock(DpsCaStore *cas, uint64_t (*clock)(void *), void *userdata) {
        cas->clock = clock;
        cas->clock_userdata = userdata;
}

static bool ca_name_is_valid(const char *name) {
        size_t n = name ? strlen(name) : 0;
        if (n == 0 || n > DPS_CA_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
                      (name[i] >= '0' && name[i] <= '9') || strchr("._-", name[i])))
                        return false;
        return true;
}

static int ca_fill(DpsCa *c, X509 *x) {
        char *s = X509_NAME_oneline(X509_get_subject_name(x), NULL, 0);
        if (!s)
                return -ENOMEM;
        c->subject = strdup(s);
        OPENSSL_free(s);
        if (!c->subject)
                return -ENOMEM;
        if (x509_thumbprint_sha1(x, c->thumbprint) < 0 || x509_thumbprint_sha256(x, c->sha256) < 0 ||
            x509_format_time(X509_get0_notBefore(x), c->not_before) < 0 ||
            x509_format_time(X509_get0_notAfter(x), c->not_after) < 0)
                return -EINVAL;
        c->cert = x;
        return 0;
}

static DpsCa *ca_find(DpsCaStore *cas, const char *name) {
        for (size_t i = 0; name && i < cas->n; i++)
                if (strcaseeq(cas->cas[i].name, name))
                        return cas->cas + i;
        return NULL;
}

/* ---- persistence -------------------------------------------------------------------------- */

static int db_exec(DpsCaStore *cas, const char *sql) {
        char *err = NULL;
        int rc = sqlite3_exec(cas->db, sql, NULL, NULL, &err);
        if (rc != SQLITE_OK) {
                log_error("CA certificate table: %s", strna(err));
                sqlite3_free(err);
                return rc == SQLITE_BUSY ? -EBUSY : -EIO;
        }
        return 0;
}

static int db_save(DpsCaStore *cas, const DpsCa *c) {
        _cleanup_free_ uint8_t *der = NULL;
        size_t der_len = 0;
        sqlite3_stmt *st = NULL;
        int r;

        if (!cas->db)
                return 0;
        r = x509_to_der(c->cert, &der, &der_len);
        if (r < 0)
                return r;
        if (sqlite3_prepare_v2(cas->db,
                               "INSERT OR REPLACE INTO ca_certificates (name, der, verified, code, code_expiry_usec, "
                               "created_usec, updated_usec) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_text(st, 1, c->name, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, der, (int) der_len, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, c->verified);
        sqlite3_bind_text(st, 4, c->code, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, (sqlite3_int64) c->code_expiry_usec);
        sqlite3_bind_int64(st, 6, (sqlite3_int64) c->created_usec);
        sqlite3_bind_int64(st, 7, (sqlite3_int64) c->updated_usec);
        int rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) {
                log_error("Failed to store CA certificate '%s': %s", c->name, sqlite3_errmsg(cas->db));
                return rc == SQLITE_BUSY ? -EBUSY : -EIO;
        }
        return 0;
}

static int db_delete(DpsCaStore *cas, const char *name) {
        sqlite3_stmt *st = NULL;

        if (!cas->db)
                return 0;
        if (sqlite3_prepare_v2(cas->db, "DELETE FROM ca_certificates WHERE name = ?", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? 0 : -EIO;
}

static int64_t db_data_version(DpsCaStore *cas) {
        sqlite3_stmt *st = NULL;
        int64_t v = -1;
        if (sqlite3_prepare_v2(cas->db, "PRAGMA data_version", -1, &st, NULL) != SQLITE_OK)
                return -1;
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
}

static int db_load(DpsCaStore *cas) {
        sqlite3_stmt *st = NULL;
        DpsCa loaded[DPS_CA_MAX] = {};
        size_t n = 0;
        int rc, r = 0;

        if (sqlite3_prepare_v2(cas->db,
                               "SELECT name, der, verified, code, code_expiry_usec, created_usec, updated_usec "
                               "FROM ca_certificates ORDER BY created_usec, name",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < DPS_CA_MAX) {
                DpsCa *c = loaded + n;
                const char *name = (const char *) sqlite3_column_text(st, 0);
                const uint8_t *der = sqlite3_column_blob(st, 1);
                int der_len = sqlite3_column_bytes(st, 1);
                const char *code = (const char *) sqlite3_column_text(st, 3);
                X509 *x = NULL;
                if (!name || !der || der_len <= 0 || x509_from_der(der, (size_t) der_len, &x) < 0) {
                        log_warning("Ignoring unreadable CA certificate row '%s'.", strna(name));
                        continue;
                }
                c->name = strdup(name);
                if (!c->name || ca_fill(c, x) < 0) {
                        if (!c->cert)
                                X509_free(x);
                        ca_done(c);
                        r = -ENOMEM;
                        break;
                }
                c->verified = sqlite3_column_int(st, 2) != 0;
                if (code && strlen(code) < sizeof(c->code))
                        strcpy(c->code, code);
                c->code_expiry_usec = (uint64_t) sqlite3_column_int64(st, 4);
                c->created_usec = (uint64_t) sqlite3_column_int64(st, 5);
                c->updated_usec = (uint64_t) sqlite3_column_int64(st, 6);
                n++;
        }
        sqlite3_finalize(st);
        if (r < 0 || (rc != SQLITE_DONE && rc != SQLITE_ROW)) {
                for (size_t i = 0; i < n; i++)
                        ca_done(loaded + i);
                return r < 0 ? r : -EIO;
        }
        for (size_t i = 0; i < cas->n; i++)
                ca_done(cas->cas + i);
        memcpy(cas->cas, loaded, sizeof(loaded));
        cas->n = n;
        cas->data_version = db_data_version(cas);
        return 0;
}

/* Another process (edgeprov-dpsctl, the HTTPS front) may have changed the table. */
static void db_refresh(DpsCaStore *cas) {
        if (!cas->db)
                return;
        int64_t v = db_data_version(cas);
        if (v >= 0 && v != cas->data_version) {
                int r = db_load(cas);
                if (r < 0)
                        log_error_errno(r, "Failed to reload the CA certificates, keeping the previous ones: %m");
        }
}

int dps_ca_store_open_db(DpsCaStore *cas, const char *path, char **reterr) {
        int rc;

        if (!cas || !path)
                return -EINVAL;
        sqlite3_close_v2(cas->db);
        cas->db = NULL;
        rc = sqlite3_open_v2(path, &cas->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK)
                return x509_fail(reterr, -EIO, "%s: %s", path, cas->db ? sqlite3_errmsg(cas->db) : sqlite3_errstr(rc));
        sqlite3_busy_timeout(cas->db, 250);
        if (db_exec(cas, "PRAGMA journal_mode=WAL;"
                         "PRAGMA synchronous=NORMAL;"
                         "CREATE TABLE IF NOT EXISTS ca_certificates ("
                         " name TEXT NOT NULL PRIMARY KEY COLLATE NOCASE, der BLOB NOT NULL,"
                         " verified INTEGER NOT NULL DEFAULT 0, code TEXT, code_expiry_usec INTEGER NOT NULL DEFAULT 0,"
                         " created_usec INTEGER NOT NULL, updated_usec INTEGER NOT NULL) WITHOUT ROWID;") < 0)
                return x509_fail(reterr, -EIO, "%s: cannot create the table ca_certificates: %s", path,
                            sqlite3_errmsg(cas->db));
        int r = db_load(cas);
        if (r < 0)
                return x509_fail(reterr, r, "%s: cannot read the CA certificates", path);
        return 0;
}

/* ---- the CA store --------------------------------------------------------------------------- */

size_t dps_ca_count(DpsCaStore *cas) {
        if (!cas)
                return 0;
        db_refresh(cas);
        return cas->n;
}

static void ca_info(const DpsCa *c, DpsCaInfo *ret) {
        *ret = (DpsCaInfo) {
                .name = c->name,
                .verified = c->verified,
                .subject = c->subject,
                .thumbprint = c->thumbprint,
                .sha256 = c->sha256,
                .not_before = c->not_before,
                .not_after = c->not_after,
                .created_usec = c->created_usec,
                .updated_usec = c->updated_usec,
                .code_pending = c->code[0] != 0,
                .cert = c->cert,
        };
}

int dps_ca_get(DpsCaStore *cas, size_t i, DpsCaInfo *ret) {
        if (!cas || i >= cas->n)
                return -ENOENT;
        ca_info(cas->cas + i, ret);
        return 0;
}

int dps_ca_find(DpsCaStore *cas, const char *name, DpsCaInfo *ret) {
        if (!cas)
                return -ENOENT;
        db_refresh(cas);
        DpsCa *c = ca_find(cas, name);
        if (!c)
                return -ENOENT;
        ca_info(c, ret);
        return 0;
}

int dps_ca_add(DpsCaStore *cas, const char *name, const void *cert, size_t len, bool verified, char **reterr) {
        _cleanup_x509_stack_ STACK_OF(X509) *sk = NULL;
        int r;

        if (!cas)
                return -EINVAL;
        db_refresh(cas);
        if (!ca_name_is_valid(name))
                return x509_fail(reterr, -EINVAL, "'%s' is not a valid certificate name (1-%d of [A-Za-z0-9._-])",
                            strna(name), DPS_CA_NAME_MAX);
        if (ca_find(cas, name))
                return x509_fail(reterr, -EEXIST, "a CA certificate named '%s' exists already", name);
        if (cas->n >= DPS_CA_MAX)
                return x509_fail(reterr, -E2BIG, "at most %d CA certificates can be registered", DPS_CA_MAX);
        r = x509_parse_certs(cert, len, &sk);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || sk_X509_num(sk) != 1)
                return x509_fail(reterr, -EINVAL, "expected exactly one certificate (PEM or DER)");
        X509 *x = sk_X509_value(sk, 0);
        if (X509_check_ca(x) < 1)
                return x509_fail(reterr, -EINVAL, "the certificate is not a CA certificate (basicConstraints CA:TRUE)");
        char tp[65];
        if (x509_thumbprint_sha256(x, tp) < 0)
                return -EINVAL;
        for (size_t i = 0; i < cas->n; i++)
                if (streq(cas->cas[i].sha256, tp))
                        return x509_fail(reterr, -EEXIST, "this certificate is registered already as '%s'", cas->cas[i].name);

        DpsCa *c = cas->cas + cas->n;
        *c = (DpsCa) {};
        c->name = strdup(name);
        if (!c->name)
                return -ENOMEM;
        r = ca_fill(c, x);
        if (r < 0) {
                ca_done(c);
                return r;
        }
        (void) sk_X509_shift(sk); /* now owned by c */
        c->verified = verified;
        c->created_usec = c->updated_usec = now_usec(cas);
        r = db_save(cas, c);
        if (r < 0) {
                ca_done(c);
                return x509_fail(reterr, r, "cannot store the certificate");
        }
        cas->n++;
        log_info("CA certificate '%s' (%s, thumbprint %s) added, %s.", c->name, c->subject, c->thumbprint,
                 verified ? "verified on upload" : "unverified");
        return 0;
}

int dps_ca_delete(DpsCaStore *cas, const char *name) {
        if (!cas)
                return -ENOENT;
        db_refresh(cas);
        DpsCa *c = ca_find(cas, name);
        if (!c)
                return -ENOENT;
        int r = db_delete(cas, c->name);
        if (r < 0)
                return r;
        log_info("CA certificate '%s' deleted.", c->name);
        ca_done(c);
        size_t i = (size_t) (c - cas->cas);
        memmove(cas->cas + i, cas->cas + i + 1, (cas->n - i - 1) * sizeof(DpsCa));
        cas->n--;
        cas->cas[cas->n] = (DpsCa) {};
        return 0;
}

int dps_ca_generate_code(DpsCaStore *cas, const char *name, char ret_code[static 2 * DPS_CA_CODE_BYTES + 1],
                         uint64_t *ret_expiry_usec) {
        uint8_t b[DPS_CA_CODE_BYTES];

        if (!cas)
                return -ENOENT;
        db_refresh(cas);
        DpsCa *c = ca_find(cas, name);
        if (!c)
                return -ENOENT;
        if (RAND_bytes(b, sizeof(b)) != 1)
                return -EIO;
        for (size_t i = 0; i < sizeof(b); i++)
                snprintf(c->code + 2 * i, 3, "%02X", b[i]);
        OPENSSL_cleanse(b, sizeof(b));
        c->code_expiry_usec = now_usec(cas) + DPS_CA_CODE_LIFETIME_USEC;
        c->updated_usec = now_usec(cas);
        int r = db_save(cas, c);
        if (r < 0) {
                c->code[0] = 0;
                return r;
        }
        memcpy(ret_code, c->code, sizeof(c->code));
        if (ret_expiry_usec)
                *ret_expiry_usec = c->code_expiry_usec;
        return 0;
}

int dps_ca_verify(DpsCaStore *cas, const char *name, const void *cert, size_t len, char **reterr) {
        _cleanup_x509_ X509 *x = NULL;
        _cleanup_free_ char *cn = NULL;
        char code[sizeof(((DpsCa *) NULL)->code)];
        int r;

        if (!cas)
                return x509_fail(reterr, -ENOENT, "no CA certificate named '%s'", strna(name));
        db_refresh(cas);
        DpsCa *c = ca_find(cas, name);
        if (!c)
                return x509_fail(reterr, -ENOENT, "no CA certificate named '%s'", strna(name));
        if (!c->code[0])
                return x509_fail(reterr, -ENOKEY, "no verification code is outstanding for '%s': generate one first",
                            c->name);

        /* single use: whatever happens below, this code is gone */
        memcpy(code, c->code, sizeof(code));
        uint64_t expiry = c->code_expiry_usec, now = now_usec(cas);
        c->code[0] = 0;
        c->code_expiry_usec = 0;
        c->updated_usec = now;
        r = db_save(cas, c);
        if (r < 0) {
                OPENSSL_cleanse(code, sizeof(code));
                return x509_fail(reterr, r, "cannot store the certificate's state");
        }

        if (now > expiry)
                r = x509_fail(reterr, -EKEYEXPIRED, "the verification code has expired: generate a new one");
        else if (x509_parse_cert(cert, len, &x) < 0)
                r = x509_fail(reterr, -EACCES, "the verification certificate is not a certificate (PEM or DER)");
        else if (x509_get_subject_cn(x, &cn) < 0)
                r = x509_fail(reterr, -EACCES, "the verification certificate has no usable subject CN");
        else if (strlen(cn) != strlen(code) || CRYPTO_memcmp(cn, code, strlen(code)) != 0)
                r = x509_fail(reterr, -EACCES,
                         "the verification certificate's subject CN '%s' is not the verification code", cn);
        else if (X509_verify(x, X509_get0_pubkey(c->cert)) != 1)
                r = x509_fail(reterr, -EACCES,
                         "the verification certificate is not signed by the key of CA certificate '%s'", c->name);
        else if ((r = x509_check_validity(x, now)) != 0)
                r = x509_fail(reterr, -EACCES, "the verification certificate is %s",
                         r == 1 ? "not valid yet" : "expired");
        else {
                c->verified = true;
                c->updated_usec = now;
                r = db_save(cas, c);
                if (r < 0) {
                        c->verified = false;
                        r = x509_fail(reterr, r, "cannot store the certificate's state");
                } else
                        log_info("CA certificate '%s' verified by proof of possession.", c->name);
        }
        OPENSSL_cleanse(code, sizeof(code));
        ERR_clear_error();
        if (r < 0 && r != -ENOMEM && r != -EIO && r != -EBUSY)
                log_notice("Verification of CA certificate '%s' refused: %s.", c->name,
                           reterr && *reterr ? *reterr : "");
        return r;
}

/* ---- authentication --------------------------------------------------------------------------- */

static struct json_object *jget(struct json_object *o, const char *key) {
        struct json_object *v = NULL;
        if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
                return NULL;
        return v;
}

static const char *jstr(struct json_object *o, const char *key) {
        struct json_object *v = jget(o, key);
        return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static struct json_object *x509_attestation(const DpsEnrollment *e) {
        return jget(jget(e->json, "attestation"), "x509");
}

static bool cert_equal(X509 *a, X509 *b) {
        return a && b && X509_cmp(a, b) == 0;
}

/* Does the certificate entry {"certificate": PEM} or {"info": {thumbprints}} name x? */
static bool entry_matches(struct json_object *entry, X509 *x) {
        const char *pem = jstr(entry, "certificate");
        struct json_object *info = jget(entry, "info");
        char tp[65];

        if (!entry)
                return false;
        if (pem) {
                _cleanup_x509_ X509 *c = NULL;
                if (x509_parse_cert(pem, strlen(pem), &c) >= 0 && cert_equal(c, x))
                        return true;
        }
        const char *sha1 = jstr(info, "sha1Thumbprint"), *sha256 = jstr(info, "sha256Thumbprint");
        if (sha1 && x509_thumbprint_sha1(x, tp) >= 0 && strcaseeq(sha1, tp))
                return true;
        if (sha256 && x509_thumbprint_sha256(x, tp) >= 0 && strcaseeq(sha256, tp))
                return true;
        return false;
}

static bool pair_matches(struct json_object *pair, X509 *x) {
        return entry_matches(jget(pair, "primary"), x) || entry_matches(jget(pair, "secondary"), x);
}

/* Does group g name the certificate x (a CA reference or a signing certificate)? */
static bool group_names(DpsCaStore *cas, const DpsEnrollment *g, X509 *x) {
        struct json_object *a = x509_attestation(g);
        if (!a)
                return false;
        if (pair_matches(jget(a, "signingCertificates"), x))
                return true;
        struct json_object *refs = jget(a, "caReferences");
        const char *names[] = { jstr(refs, "primary"), jstr(refs, "secondary") };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                DpsCa *c = cas ? ca_find(cas, names[i]) : NULL;
                if (c && cert_equal(c->cert, x))
                        return true;
        }
        return false;
}

static bool leaf_usage_ok(X509 *leaf, const char **ret_why) {
        uint32_t ex = X509_get_extension_flags(leaf);
        if (ex & EXFLAG_INVALID) {
                *ret_why = "has invalid extensions";
                return false;
        }
        if ((ex & EXFLAG_CA) || X509_check_ca(leaf) >= 1) {
                *ret_why = "is a CA certificate, not a device certificate";
                return false;
        }
        if ((ex & EXFLAG_KUSAGE) && !(X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE)) {
                *ret_why = "has a keyUsage without digitalSignature";
                return false;
        }
        if ((ex & EXFLAG_XKUSAGE) && !(X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT)) {
                *ret_why = "has an extendedKeyUsage without clientAuth";
                return false;
        }
        return true;
}

/* Builds and verifies the chain against the given anchors; ret_chain gets the built chain. */
static int verify_chain(STACK_OF(X509) *anchors, STACK_OF(X509) *untrusted, X509 *leaf, uint64_t now_usec,
                        STACK_OF(X509) **ret_chain, int *ret_error) {
        X509_STORE *store = X509_STORE_new();
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        int r = -ENOMEM;

        if (!store || !ctx)
                goto finish;
        for (int i = 0; i < sk_X509_num(anchors); i++)
                if (X509_STORE_add_cert(store, sk_X509_value(anchors, i)) != 1)
                        goto finish;
        if (X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1)
                goto finish;
        X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
        X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
        X509_VERIFY_PARAM_set_time(param, (time_t) (now_usec / 1000000));
        X509_VERIFY_PARAM_set_depth(param, X509_CHAIN_MAX);
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
        if (X509_verify_cert(ctx) == 1) {
                *ret_chain = X509_STORE_CTX_get1_chain(ctx);
                r = *ret_chain ? 0 : -ENOMEM;
        } else {
                *ret_error = X509_STORE_CTX_get_error(ctx);
                r = -EACCES;
        }
finish:
        X509_STORE_CTX_free(ctx);
        X509_STORE_free(store);
        ERR_clear_error();
        return r;
}

static int authenticate_individual(const DpsEnrollment *ind, X509 *leaf, const DpsEnrollment **ret_enrollment,
                                   char **ret_message) {
        if (!pair_matches(jget(x509_attestation(ind), "clientCertificates"), leaf))
                return x509_fail(ret_message, -EACCES,
                            "Unauthorized: the device certificate is not the one of the individual enrollment "
                            "'%s' (certificate or thumbprint differ)",
                            ind->registration_id);
        if (!ind->enabled)
                return x509_fail(ret_message, -EACCES, "Unauthorized: the individual enrollment '%s' is disabled",
                            ind->registration_id);
        *ret_enrollment = ind;
        return 0;
}

int dps_x509_authenticate(DpsCaStore *cas, const DpsData *d, const char *registration_id, STACK_OF(X509) *chain,
                          uint64_t now_usec, const DpsEnrollment **ret_enrollment, uint64_t *ret_not_after_sec,
                          char **ret_message) {
        _cleanup_x509_stack_ STACK_OF(X509) *verified = NULL, *all = NULL, *untrusted = NULL, *built = NULL;
        _cleanup_free_ char *cn = NULL;
        const char *why = NULL;
        uint64_t not_after = 0;
        int r, err = 0;

        if (!registration_id || !ret_enrollment)
                return -EINVAL;
        if (!chain || sk_X509_num(chain) == 0)
                return x509_fail(ret_message, -EACCES, "Unauthorized: no client certificate was presented");
        if (sk_X509_num(chain) > X509_CHAIN_MAX)
                return x509_fail(ret_message, -EACCES, "Unauthorized: more than %d certificates presented",
                            X509_CHAIN_MAX);
        if (cas)
                db_refresh(cas);

        X509 *leaf = sk_X509_value(chain, 0);
        r = x509_get_subject_cn(leaf, &cn);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return x509_fail(ret_message, -EACCES, "Unauthorized: the device certificate has no usable subject CN");
        if (!x509_cn_is_valid_registration_id(cn, &why))
                return x509_fail(ret_message, -EACCES,
                            "Unauthorized: the device certificate's CN '%s' is not a valid registration id: %s", cn,
                            why);
        if (!strcaseeq(cn, registration_id))
                return x509_fail(ret_message, -EACCES,
                            "Unauthorized: the device certificate's CN '%s' does not match the registration id '%s'",
                            cn, registration_id);
        r = x509_check_validity(leaf, now_usec);
        if (r != 0) {
                char t[32] = "?";
                (void) x509_format_time(r == 1 ? X509_get0_notBefore(leaf) : X509_get0_notAfter(leaf), t);
                return x509_fail(ret_message, -EACCES, "Unauthorized: the device certificate %s %s",
                            r == 1 ? "is not valid before" : "expired at", t);
        }
        if (!leaf_usage_ok(leaf, &why))
                return x509_fail(ret_message, -EACCES, "Unauthorized: the device certificate %s", why);
        if (x509_not_after(leaf, &not_after) < 0)
                return x509_fail(ret_message, -EACCES, "Unauthorized: the device certificate's notAfter is unreadable");

        const DpsEnrollment *ind = d ? dps_data_find_individual(d, registration_id) : NULL;
        if (ind && ind->attestation == DPS_ATTESTATION_X509) {
                r = authenticate_individual(ind, leaf, ret_enrollment, ret_message);
                if (r >= 0 && ret_not_after_sec)
                        *ret_not_after_sec = not_after;
                return r;
        }
        if (ind)
                return x509_fail(ret_message, -EACCES,
                            "Unauthorized: the individual enrollment '%s' uses %s attestation, not x509",
                            registration_id, strna(dps_attestation_type_to_string(ind->attestation)));

        bool have_groups = false;
        for (size_t i = 0; d && i < d->n_groups; i++)
                if (d->groups[i].attestation == DPS_ATTESTATION_X509)
                        have_groups = true;
        if (!have_groups)
                return x509_fail(ret_message, -EACCES,
                            "Unauthorized: no X.509 enrollment for registration id '%s' (no individual enrollment, "
                            "no X.509 enrollment group)",
                            registration_id);

        verified = sk_X509_new_null();
        all = sk_X509_new_null();
        untrusted = sk_X509_new_null();
        if (!verified || !all || !untrusted)
                return -ENOMEM;
        for (int i = 1; i < sk_X509_num(chain); i++)
                if (!sk_X509_push(untrusted, X509_dup(sk_X509_value(chain, i))))
                        return -ENOMEM;
        for (size_t i = 0; cas && i < cas->n; i++) {
                X509 *c = cas->cas[i].cert;
                if (X509_up_ref(c) != 1 || !sk_X509_push(all, c))
                        return -ENOMEM;
                if (cas->cas[i].verified) {
                        if (X509_up_ref(c) != 1 || !sk_X509_push(verified, c))
                                return -ENOMEM;
                } else if (X509_up_ref(c) != 1 || !sk_X509_push(untrusted, c))
                        return -ENOMEM;
        }
        /* the groups' signing certificates help building the chain, they are not anchors */
        for (size_t i = 0; d && i < d->n_groups; i++) {
                struct json_object *sc = jget(x509_attestation(d->groups + i), "signingCertificates");
                const char *pems[] = { jstr(jget(sc, "primary"), "certificate"),
                                       jstr(jget(sc, "secondary"), "certificate") };
                for (size_t j = 0; j < ELEMENTSOF(pems); j++) {
                        X509 *x = NULL;
                        if (pems[j] && sk_X509_num(untrusted) < 4 * X509_CHAIN_MAX &&
                            x509_parse_cert(pems[j], strlen(pems[j]), &x) >= 0 && !sk_X509_push(untrusted, x)) {
                                X509_free(x);
                                return -ENOMEM;
                        }
                }
        }

        r = sk_X509_num(verified) > 0 ? verify_chain(verified, untrusted, leaf, now_usec, &built, &err) : -EACCES;
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                /* tell an unverified CA from a chain that leads nowhere */
                _cleanup_x509_stack_ STACK_OF(X509) *b2 = NULL;
                int err2 = 0;
                r = verify_chain(all, untrusted, leaf, now_usec, &b2, &err2);
                if (r == -ENOMEM)
                        return r;
                if (r == 0) {
                        X509 *anchor = sk_X509_value(b2, sk_X509_num(b2) - 1);
                        for (size_t i = 0; cas && i < cas->n; i++)
                                if (cert_equal(cas->cas[i].cert, anchor))
                                        return x509_fail(ret_message, -EACCES,
                                                    "Unauthorized: the CA certificate '%s' of this device's chain is "
                                                    "not verified (no proof of possession)",
                                                    cas->cas[i].name);
                }
                return x509_fail(ret_message, -EACCES,
                            "Unauthorized: the device certificate chain does not lead to a verified CA certificate "
                            "(%s)",
                            X509_verify_cert_error_string(err ?: err2));
        }

        /* most specific first: the leaf's issuer, then up to the anchor */
        for (int i = 1; i < sk_X509_num(built); i++) {
                X509 *x = sk_X509_value(built, i);
                for (size_t j = 0; d && j < d->n_groups; j++) {
                        const DpsEnrollment *g = d->groups + j;
                        if (g->attestation != DPS_ATTESTATION_X509 || !group_names(cas, g, x))
                                continue;
                        if (!g->enabled)
                                return x509_fail(ret_message, -EACCES,
                                            "Unauthorized: the enrollment group '%s' is disabled",
                                            g->enrollment_group_id);
                        *ret_enrollment = g;
                        if (ret_not_after_sec)
                                *ret_not_after_sec = not_after;
                        return 0;
                }
        }
        return x509_fail(ret_message, -EACCES,
                    "Unauthorized: no enrollment group references a certificate of this device's chain");
}

int dps_x509_chain_from_der(const uint8_t *const *der, const size_t *der_len, size_t n, STACK_OF(X509) **ret) {
        _cleanup_x509_stack_ STACK_OF(X509) *sk = NULL;

        if (!der || !der_len || n == 0)
                return -EINVAL;
        if (n > X509_CHAIN_MAX)
                return -E2BIG;
        sk = sk_X509_new_null();
        if (!sk)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int r = x509_stack_push_der(sk, der[i], der_len[i]);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(sk);
        return 0;
}

int dps_x509_authenticate_der(DpsCaStore *cas, const DpsData *d, const char *registration_id,
                              const uint8_t *const *der, const size_t *der_len, size_t n, uint64_t now_usec,
                              const DpsEnrollment **ret_enrollment, uint64_t *ret_not_after_sec, char **ret_message) {
        _cleanup_x509_stack_ STACK_OF(X509) *chain = NULL;
        int r = dps_x509_chain_from_der(der, der_len, n, &chain);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return x509_fail(ret_message, -EACCES, "Unauthorized: the client certificate chain cannot be parsed");
        return dps_x509_authenticate(cas, d, registration_id, chain, now_usec, ret_enrollment, ret_not_after_sec,
                                     ret_message);
}
