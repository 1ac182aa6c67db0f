/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/conf.h"
#include "edgeprov/fileio.h"
#include "edgeprov/macro.h"

#define VALID_PROV                                      \
        "provisioning = {\n"                            \
        "  endpoint = \"127.0.0.1\";\n"                 \
        "  id_scope = \"0ne00000A0A\";\n"               \
        "  registration_id = \"gw1\";\n"                \
        "  attestation = {\n"                           \
        "    method = \"symmetric_key\";\n"             \
        "    key_file = \"dps-key\";\n"                 \
        "  };\n"                                        \
        "};\n"

/* Parses text as one file named "t.conf" and runs the semantic checks. */
static int parse(const char *text, Config *c, char **err) {
        int r;
        conf_init(c);
        c->path = strdup("t.conf");
        r = conf_apply_string(c, text, "t.conf", err);
        if (r < 0)
                return r;
        return conf_verify(c, err);
}

static void expect_error(const char *text, const char *needle) {
        Config c;
        _cleanup_free_ char *err = NULL;
        int r = parse(text, &c, &err);
        if (r >= 0)
                fail_msg("accepted: %s", text);
        assert_int_equal(r, -EINVAL);
        assert_non_null(err);
        if (!strstr(err, needle))
                fail_msg("error '%s' does not contain '%s'", err, needle);
        conf_done(&c);
}

static void test_valid_defaults(void **state) {
        Config c;
        _cleanup_free_ char *err = NULL;
        assert_int_equal(parse(VALID_PROV, &c, &err), 0);
        assert_null(err);
        assert_string_equal(c.endpoint, "127.0.0.1");
        assert_int_equal(c.port, 8883);
        assert_string_equal(c.registration_id, "gw1");
        assert_int_equal(c.attestation, ATTESTATION_SYMMETRIC_KEY);
        assert_int_equal(c.retry_initial, 2);
        assert_int_equal(c.retry_max, 300);
        assert_int_equal(c.request_timeout, 30);
        assert_false(c.fail_fast);
        assert_null(c.state_directory);
        conf_done(&c);
}

static void test_all_keys(void **state) {
        Config c;
        _cleanup_free_ char *err = NULL;
        const char *text = VALID_PROV
                "provisioning: { port = 18883; transport = \"mqtt\"; api_version = \"2021-06-01\";\n"
                "  ca_file = \"/x/ca.pem\"; payload = \"{\\\"a\\\":1}\"; sas_lifetime = 600; };\n"
                "agent = { state_directory = \"/var/lib/x\"; retry_initial = 3; retry_max = 60;\n"
                "  request_timeout = 5; fail_fast = true; log_level = \"debug\"; };\n";
        /* libconfig refuses a second "provisioning" group in one file: check that this is an error */
        assert_int_equal(parse(text, &c, &err), -EINVAL);
        assert_non_null(strstr(err, "t.conf:10: syntax error"));
        conf_done(&c);
        free(err);
        err = NULL;

        text = "provisioning = { endpoint = \"dps.example.com\"; port = 18883; transport = \"mqtt\";\n"
               "  id_scope = \"0ne00000A0A\"; registration_id = \"gw-1.a_b:c\"; api_version = \"2021-06-01\";\n"
               "  ca_file = \"/x/ca.pem\"; payload = \"{\\\"a\\\":1}\"; sas_lifetime = 600;\n"
               "  attestation = { method = \"symmetric_key\"; key_file = \"/k\"; }; };\n"
               "agent = { state_directory = \"/var/lib/x\"; retry_initial = 3; retry_max = 60;\n"
               "  request_timeout = 5; fail_fast = true; log_level = \"debug\"; };\n";
        assert_int_equal(parse(text, &c, &err), 0);
        assert_int_equal(c.port, 18883);
        assert_string_equal(c.api_version, "2021-06-01");
        assert_string_equal(c.payload, "{\"a\":1}");
        assert_int_equal(c.sas_lifetime, 600);
        assert_string_equal(c.state_directory, "/var/lib/x");
        assert_int_equal(c.retry_initial, 3);
        assert_int_equal(c.retry_max, 60);
        assert_int_equal(c.request_timeout, 5);
        assert_true(c.fail_fast);
        assert_string_equal(c.log_level, "debug");
        conf_done(&c);
}

static void test_syntax_error(void **state) {
        expect_error("provisioning = {\n endpoint = ;\n};\n", "t.conf:2: syntax error");
}

static void test_unknown_keys(void **state) {
        expect_error(VALID_PROV "agent = {\n  retry_intial = 3;\n};\n", "t.conf:11: unknown setting 'agent.retry_intial'");
        expect_error("foo = 1;\n" VALID_PROV, "t.conf:1: unknown setting 'foo'");
        expect_error("provisioning = { attestation = { method = \"symmetric_key\"; colour = \"red\"; }; };",
                     "unknown setting 'provisioning.attestation.colour'");
}

static void test_wrong_types(void **state) {
        expect_error("provisioning = { port = \"8883\"; };", "t.conf:1: provisioning.port= must be an integer");
        expect_error("provisioning = { endpoint = 5; };", "provisioning.endpoint= must be a string");
        expect_error("agent = { fail_fast = 1; };", "agent.fail_fast= must be true or false");
        expect_error("provisioning = \"x\";", "provisioning= must be a group");
        expect_error("provisioning = { id_scope = [\"a\"]; };", "provisioning.id_scope= must be a string");
        expect_error("provisioning = { attestation = \"tpm\"; };", "provisioning.attestation= must be a group");
}

static void test_ranges(void **state) {
        expect_error("provisioning = { port = 0; };", "provisioning.port= must be between 1 and 65535 (got 0)");
        expect_error("provisioning = { port = 70000; };", "provisioning.port= must be between 1 and 65535");
        expect_error("agent = { retry_initial = 0; };", "agent.retry_initial= must be between 1 and 3600");
        expect_error("agent = { retry_max = 99999999; };", "agent.retry_max= must be between");
        expect_error("agent = { request_timeout = 601; };", "agent.request_timeout= must be between 1 and 600");
        expect_error("provisioning = { sas_lifetime = 10; };", "provisioning.sas_lifetime= must be between");
        expect_error("provisioning = { port = 9999999999L; };", "provisioning.port= must be between");
}

static void test_bad_values(void **state) {
        expect_error("provisioning = { endpoint = \"mqtts://x\"; };", "provisioning.endpoint= must be a bare host");
        expect_error("provisioning = { endpoint = \"\"; };", "provisioning.endpoint= must be a host name");
        expect_error("provisioning = { endpoint = \"a b\"; };", "provisioning.endpoint= must be a bare host");
        expect_error("provisioning = { transport = \"http\"; };",
                     "provisioning.transport= must be \"mqtt\" or \"https\"");
        expect_error("provisioning = { id_scope = \"no scope\"; };", "provisioning.id_scope= must be a DPS ID scope");
        expect_error("provisioning = { registration_id = \"-gw\"; };", "provisioning.registration_id= must be 1 to 128");
        expect_error("provisioning = { registration_id = \"gw/1\"; };", "provisioning.registration_id= must be");
        expect_error("provisioning = { api_version = \"2019-3-31\"; };", "provisioning.api_version= must be an API version");
        expect_error("provisioning = { api_version = \"2019-03-31x\"; };", "provisioning.api_version=");
        expect_error("provisioning = { payload = \"{nope\"; };", "provisioning.payload= must be valid JSON");
        expect_error("provisioning = { ca_file = \"\"; };", "provisioning.ca_file= must not be empty");
        expect_error("provisioning = { attestation = { method = \"magic\"; }; };",
                     "provisioning.attestation.method= must be \"symmetric_key\"");
        expect_error("provisioning = { attestation = { key_file = \"\"; }; };",
                     "provisioning.attestation.key_file= must not be empty");
        expect_error("agent = { state_directory = \"var/lib\"; };", "agent.state_directory= must be an absolute path");
        expect_error("agent = { log_level = \"loud\"; };", "agent.log_level= must be one of");
}

static void test_required(void **state) {
        expect_error("provisioning = { id_scope = \"0ne00000A0A\"; registration_id = \"gw1\"; "
                     "attestation = { method = \"symmetric_key\"; key_file = \"k\"; }; };",
                     "t.conf: provisioning.endpoint= is required");
        expect_error("provisioning = { endpoint = \"h\"; registration_id = \"gw1\"; "
                     "attestation = { method = \"symmetric_key\"; key_file = \"k\"; }; };",
                     "provisioning.id_scope= is required");
        expect_error("provisioning = { endpoint = \"h\"; id_scope = \"0ne00000A0A\"; "
                     "attestation = { method = \"symmetric_key\"; key_file = \"k\"; }; };",
                     "provisioning.registration_id= is required");
        expect_error("provisioning = { endpoint = \"h\"; id_scope = \"0ne00000A0A\"; registration_id = \"gw1\"; };",
                     "provisioning.attestation.method= is required");
        expect_error("provisioning = { endpoint = \"h\"; id_scope = \"0ne00000A0A\"; registration_id = \"gw1\"; "
                     "attestation = { method = \"symmetric_key\"; }; };",
                     "provisioning.attestation.key_file= is required");
        expect_error(VALID_PROV "agent = { retry_initial = 100; retry_max = 10; };",
                     "agent.retry_max= (10) must not be smaller than agent.retry_initial= (100)");
}

/* TPM attestation keys (src/agent/attest.c) */
#define TPM_PROV                                                                               \
        "provisioning = { endpoint = \"h\"; id_scope = \"0ne00000A0A\"; attestation = { method = \"tpm\"; }; };\n"

static void test_tpm(void **state) {
        Config c;
        _cleanup_free_ char *err = NULL;
        uint32_t h = 0;

        /* no registration id and no key file needed: derived from the EK */
        assert_int_equal(parse(TPM_PROV "tpm = { tcti = \"swtpm:host=127.0.0.1,port=2321\"; "
                                        "endorsement_auth_file = \"e\"; owner_auth_file = \"o\"; "
                                        "ek_ca_file = \"/etc/ek-ca.pem\"; key_slot_a = \"0x81000200\"; "
                                        "key_slot_b = \"0x81000201\"; };\n",
                               &c, &err),
                         0);
        assert_int_equal(c.attestation, ATTESTATION_TPM);
        assert_null(c.registration_id);
        assert_string_equal(c.tpm_tcti, "swtpm:host=127.0.0.1,port=2321");
        assert_string_equal(c.tpm_endorsement_auth_file, "e");
        assert_string_equal(c.tpm_owner_auth_file, "o");
        assert_string_equal(c.tpm_ek_ca_file, "/etc/ek-ca.pem");
        assert_int_equal(conf_parse_tpm_slot(c.tpm_slot_a, &h), 0);
        assert_int_equal(h, 0x81000200);
        conf_done(&c);

        expect_error(TPM_PROV "tpm = { tcti = \"\"; };", "t.conf:2: tpm.tcti= must be a TCTI string");
        expect_error(TPM_PROV "tpm = { endorsement_auth_file = \"\"; };", "tpm.endorsement_auth_file= must not be empty");
        expect_error(TPM_PROV "tpm = { owner_auth_file = \"\"; };", "tpm.owner_auth_file= must not be empty");
        expect_error(TPM_PROV "tpm = { ek_ca_file = \"ca.pem\"; };", "tpm.ek_ca_file= must be an absolute path");
        expect_error(TPM_PROV "tpm = { key_slot_a = \"0x81010001\"; };", "tpm.key_slot_a= must be a persistent handle");
        expect_error(TPM_PROV "tpm = { key_slot_b = \"0x01000100\"; };", "tpm.key_slot_b= must be a persistent handle");
        expect_error(TPM_PROV "tpm = { key_slot_a = \"81000100\"; };", "tpm.key_slot_a= must be a persistent handle");
        expect_error(TPM_PROV "tpm = { key_slot_a = \"0x81000001\"; };", "tpm.key_slot_a= must be a persistent handle");
        expect_error(TPM_PROV "tpm = { key_slot_a = \"0x81000100x\"; };", "tpm.key_slot_a= must be a persistent handle");
        expect_error(TPM_PROV "tpm = { key_slot_a = 5; };", "tpm.key_slot_a=");
        expect_error(TPM_PROV "tpm = { key_slot_a = \"0x81000100\"; key_slot_b = \"0x81000100\"; };",
                     "tpm.key_slot_a= and tpm.key_slot_b= must differ");
        expect_error(TPM_PROV "tpm = { colour = \"red\"; };", "unknown setting 'tpm.colour'");
        assert_int_equal(conf_parse_tpm_slot("0x81000002", &h), 0);
        assert_int_equal(conf_parse_tpm_slot("0x81800000", &h), -EINVAL);
        assert_int_equal(conf_parse_tpm_slot(NULL, &h), -EINVAL);
}

static void test_oversized(void **state) {
        size_t n = CONF_FILE_MAX + 10;
        char *big = malloc(n + 1);
        assert_non_null(big);
        memset(big, '#', n);
        big[n] = 0;
        expect_error(big, "file larger than");
        free(big);

        char longstr[6000];
        memset(longstr, 'a', sizeof(longstr));
        memcpy(longstr, "provisioning = { ca_file = \"", 28);
        strcpy(longstr + sizeof(longstr) - 10, "\"; };");
        expect_error(longstr, "must be at most 4096 characters");
}

static char tmpdir[] = "/tmp/edgeprov-test-conf.XXXXXX";

static void write_text(const char *path, const char *text) {
        assert_int_equal(write_file_atomic(path, text, strlen(text), 0644), 0);
}

static void test_dropins_and_key_path(void **state) {
        char path[512], dir[512], p[600];
        Config c;
        _cleanup_free_ char *err = NULL, *key = NULL;

        assert_non_null(mkdtemp(tmpdir));
        snprintf(path, sizeof(path), "%s/edgeprovd.conf", tmpdir);
        snprintf(dir, sizeof(dir), "%s/edgeprovd.conf.d", tmpdir);
        write_text(path, VALID_PROV);
        assert_int_equal(mkdir(dir, 0755), 0);
        snprintf(p, sizeof(p), "%s/20-later.conf", dir);
        write_text(p, "provisioning = { registration_id = \"gw-later\"; };\n");
        snprintf(p, sizeof(p), "%s/10-first.conf", dir);
        write_text(p, "provisioning = { registration_id = \"gw-first\"; port = 1234; };\n");
        snprintf(p, sizeof(p), "%s/ignored.txt", dir);
        write_text(p, "this is not a config file");

        assert_int_equal(conf_load(path, &c, &err), 0);
        assert_string_equal(c.registration_id, "gw-later"); /* lexical order, later wins */
        assert_int_equal(c.port, 1234);
        assert_string_equal(c.endpoint, "127.0.0.1");

        /* key path: relative to the config directory, then to $CREDENTIALS_DIRECTORY */
        unsetenv("CREDENTIALS_DIRECTORY");
        assert_int_equal(conf_key_path(&c, &key), 0);
        snprintf(p, sizeof(p), "%s/dps-key", tmpdir);
        assert_string_equal(key, p);
        free(key);
        setenv("CREDENTIALS_DIRECTORY", "/run/credentials/edgeprovd.service", 1);
        assert_int_equal(conf_key_path(&c, &key), 0);
        assert_string_equal(key, "/run/credentials/edgeprovd.service/dps-key");
        free(key);
        key = NULL;
        unsetenv("CREDENTIALS_DIRECTORY");
        free(c.key_file);
        c.key_file = strdup("/etc/edgeprov/k");
        assert_int_equal(conf_key_path(&c, &key), 0);
        assert_string_equal(key, "/etc/edgeprov/k");
        conf_done(&c);

        /* an error in a drop-in names the drop-in and its line */
        snprintf(p, sizeof(p), "%s/30-bad.conf", dir);
        write_text(p, "\nprovisioning = { port = -1; };\n");
        assert_int_equal(conf_load(path, &c, &err), -EINVAL);
        assert_non_null(strstr(err, "30-bad.conf:2: provisioning.port= must be between"));

        /* a missing main file is an I/O error naming it */
        free(err);
        err = NULL;
        snprintf(p, sizeof(p), "%s/nope.conf", tmpdir);
        assert_int_equal(conf_load(p, &c, &err), -ENOENT);
        assert_non_null(strstr(err, "nope.conf: cannot read"));

        char cmd[700];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        assert_int_equal(system(cmd), 0);
}

static void test_fingerprint(void **state) {
        Config c;
        _cleanup_free_ char *err = NULL, *a = NULL, *b = NULL, *d = NULL, *e = NULL;
        assert_int_equal(parse(VALID_PROV, &c, &err), 0);
        assert_int_equal(conf_identity_fingerprint(&c, "a2V5MQ==", &a), 0);
        assert_int_equal(conf_identity_fingerprint(&c, "a2V5MQ==", &b), 0);
        assert_string_equal(a, b);
        assert_int_equal(strlen(a), 64);
        /* Pinned: state files written by earlier versions (OpenSSL's SHA-256) must still match. */
        assert_string_equal(a, "67c76925a12e6dbeae2d65f16d7d6c4eebafa668c3d3df9896e00a7c3254fb7d");
        assert_int_equal(conf_identity_fingerprint(&c, "a2V5Mg==", &d), 0);
        assert_string_not_equal(a, d);
        free(c.registration_id);
        c.registration_id = strdup("gw2");
        assert_int_equal(conf_identity_fingerprint(&c, "a2V5MQ==", &e), 0);
        assert_string_not_equal(a, e);
        assert_null(strstr(a, "a2V5MQ")); /* the key does not show through */
        conf_done(&c);
}

/* HTTPS transport (issue 9): defaults of provisioning.transport and .port */
static void test_transport(void **state) {
        static const struct {
                const char *text;
                const char *transport;
                int port;
        } cases[] = {
                { "", "mqtt", 8883 },
                { "provisioning = { transport = \"https\"; };", "https", 443 },
                { "provisioning = { transport = \"https\"; port = 8443; };", "https", 8443 },
                { "provisioning = { port = 8883; transport = \"https\"; };", "https", 8883 },
                /* symmetric key against Azure: MQTT unless configured */
                { "provisioning = { endpoint = \"global.azure-devices-provisioning.net\"; };", "mqtt", 8883 },
                /* TPM: HTTPS against Azure DPS host names, MQTT against anything else (ours) */
                { "provisioning = { endpoint = \"global.azure-devices-provisioning.net\"; "
                             "attestation = { method = \"tpm\"; }; };", "https", 443 },
                { "provisioning = { endpoint = \"MyDps.Azure-Devices-Provisioning.cn\"; "
                             "attestation = { method = \"tpm\"; }; };", "https", 443 },
                { "provisioning = { endpoint = \"dps.example.com\"; "
                             "attestation = { method = \"tpm\"; }; };", "mqtt", 8883 },
                { "provisioning = { endpoint = \"azure-devices-provisioning.net.example.com\"; "
                             "attestation = { method = \"tpm\"; }; };", "mqtt", 8883 },
                { "provisioning = { endpoint = \"global.azure-devices-provisioning.net\"; "
                             "transport = \"mqtt\"; attestation = { method = \"tpm\"; }; };", "mqtt", 8883 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Config c;
                _cleanup_free_ char *err = NULL;
                conf_init(&c);
                if (conf_apply_string(&c, VALID_PROV, "t.conf", &err) < 0 ||
                    conf_apply_string(&c, cases[i].text, "d.conf", &err) < 0 || conf_verify(&c, &err) < 0)
                        fail_msg("case %zu: %s", i, strna(err));
                if (!streq(conf_transport(&c), cases[i].transport) || conf_port(&c) != cases[i].port)
                        fail_msg("case %zu: %s:%d, expected %s:%d", i, conf_transport(&c), conf_port(&c),
                                 cases[i].transport, cases[i].port);
                conf_done(&c);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid_defaults),
                cmocka_unit_test(test_all_keys),
                cmocka_unit_test(test_syntax_error),
                cmocka_unit_test(test_unknown_keys),
                cmocka_unit_test(test_wrong_types),
                cmocka_unit_test(test_ranges),
                cmocka_unit_test(test_bad_values),
                cmocka_unit_test(test_required),
                cmocka_unit_test(test_oversized),
                cmocka_unit_test(test_tpm),
                cmocka_unit_test(test_dropins_and_key_path),
                cmocka_unit_test(test_fingerprint),
                cmocka_unit_test(test_transport),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
