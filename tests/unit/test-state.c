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

#include "agent/state.h"
#include "edgeprov/fileio.h"
#include "edgeprov/macro.h"

static GatewayState sample(void) {
        return (GatewayState) {
                .registration_id = strdup("gw1"),
                .device_id = strdup("gw1-dev"),
                .assigned_hub = strdup("hub.example.net"),
                .substatus = strdup("initialAssignment"),
                .operation_id = strdup("4.abc.def"),
                .attestation = strdup("symmetric_key"),
                .fingerprint = strdup("00ff"),
                .endpoint = strdup("127.0.0.1"),
                .id_scope = strdup("0ne00000A0A"),
                .provisioned_at = 1700000000,
        };
}

static void test_roundtrip_file(void **state) {
        char dir[] = "/tmp/edgeprov-test-state.XXXXXX";
        char sub[128], path[160];
        GatewayState s = sample(), t = {};
        struct stat st;

        assert_non_null(mkdtemp(dir));
        snprintf(sub, sizeof(sub), "%s/a/b", dir);
        assert_int_equal(gateway_state_load(sub, &t), -ENOENT);
        assert_int_equal(gateway_state_save(sub, &s), 0);
        snprintf(path, sizeof(path), "%s/%s", sub, STATE_FILE_NAME);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(stat(sub, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);

        assert_int_equal(gateway_state_load(sub, &t), 0);
        assert_true(gateway_state_is_committed(&t));
        assert_string_equal(t.registration_id, "gw1");
        assert_string_equal(t.device_id, "gw1-dev");
        assert_string_equal(t.assigned_hub, "hub.example.net");
        assert_string_equal(t.substatus, "initialAssignment");
        assert_string_equal(t.operation_id, "4.abc.def");
        assert_string_equal(t.fingerprint, "00ff");
        assert_string_equal(t.id_scope, "0ne00000A0A");
        assert_int_equal(t.provisioned_at, 1700000000);
        gateway_state_done(&t);

        /* overwrite: the new content replaces the old one */
        free(s.assigned_hub);
        s.assigned_hub = strdup("hub2.example.net");
        assert_int_equal(gateway_state_save(sub, &s), 0);
        assert_int_equal(gateway_state_load(sub, &t), 0);
        assert_string_equal(t.assigned_hub, "hub2.example.net");
        gateway_state_done(&t);

        /* a corrupt file is reported as such */
        assert_int_equal(write_file_atomic(path, "{\"version\":1,\"gateway\":{\"deviceId\":", 35, 0600), 0);
        assert_int_equal(gateway_state_load(sub, &t), -EBADMSG);

        gateway_state_done(&s);
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
}

static void expect_bad(const char *text) {
        GatewayState t = {};
        int r = gateway_state_parse(text, strlen(text), &t);
        if (r != -EBADMSG)
                fail_msg("accepted (%d): %s", r, text);
}

static void test_parse_rejects(void **state) {
        expect_bad("");
        expect_bad("null");
        expect_bad("[]");
        expect_bad("{}");                                   /* no version */
        expect_bad("{\"version\":2}");                      /* future version */
        expect_bad("{\"version\":\"1\"}");
        expect_bad("{\"version\":1,\"gateway\":[]}");
        expect_bad("{\"version\":1,\"gateway\":{\"registrationId\":1}}");
        expect_bad("{\"version\":1,\"gateway\":{\"registrationId\":\"gw\"}}"); /* half an assignment */
        expect_bad("{\"version\":1,\"gateway\":{\"registrationId\":\"a\",\"deviceId\":\"b\",\"assignedHub\":\"c\","
                   "\"provisionedAt\":-5}}");
        expect_bad("{\"version\":1} trailing");
}

static void test_parse_empty_document(void **state) {
        GatewayState t = {};
        const char *text = "{\"version\":1}";
        assert_int_equal(gateway_state_parse(text, strlen(text), &t), 0);
        assert_false(gateway_state_is_committed(&t));
        gateway_state_done(&t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip_file),
                cmocka_unit_test(test_parse_rejects),
                cmocka_unit_test(test_parse_empty_document),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
