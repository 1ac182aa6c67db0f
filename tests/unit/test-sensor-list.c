/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agent/conf.h"
#include "agent/downstream.h"
#include "agent/sensor-list.h"
#include "edgeprov/macro.h"

static void check_norm(const char *in, const char *want_id, const char *want_proto) {
        char *id = NULL;
        const char *proto = NULL, *why = NULL;
        int r = sensor_id_normalize(in, &id, &proto, &why);
        if (!want_id) {
                assert_int_equal(r, -EINVAL);
                assert_non_null(why);
                return;
        }
        assert_int_equal(r, 0);
        assert_string_equal(id, want_id);
        if (want_proto)
                assert_string_equal(proto, want_proto);
        else
                assert_null(proto);
        free(id);
}

static void test_normalize(void **state) {
        check_norm("AA:BB:CC:DD:EE:FF", "ble-aabbccddeeff", "ble");
        check_norm("ble:aa-bb-cc-dd-ee-0f", "ble-aabbccddee0f", "ble");
        check_norm("ble:aabbccddeeff", "ble-aabbccddeeff", "ble");
        check_norm("00:12:4B:00:01:02:03:04", "zigbee-00124b0001020304", "zigbee");
        check_norm("zigbee:00124B0001020304", "zigbee-00124b0001020304", "zigbee");
        check_norm("3@/dev/ttyUSB0", "modbus-ttyusb0-3", "modbus");
        check_norm("modbus:247@RS485 bus", "modbus-rs485-bus-247", "modbus");
        check_norm("sensor-1", "sensor-1", NULL);
        check_norm("aabbccddeeff", "ble-aabbccddeeff", "ble");   /* a bare 12-hex-digit id is a MAC */
        check_norm("ble:AA:BB:CC", NULL, NULL);
        check_norm("zigbee:0012", NULL, NULL);
        check_norm("256@ttyS0", NULL, NULL);
        check_norm("x@", NULL, NULL);
        check_norm("@bus", NULL, NULL);
        check_norm("-bad", NULL, NULL);
        check_norm("has space", NULL, NULL);
        check_norm("", NULL, NULL);
}

static void test_csv(void **state) {
        const char *t = "id,options\n# c\n\nble:AA:BB:CC:DD:EE:FF, room=kitchen ,floor=2\r\n s2 \n";
        SensorList l = {};
        char *err = NULL;
        assert_int_equal(sensor_list_parse(t, strlen(t), &l, &err), 0);
        assert_int_equal(l.n, 2);
        assert_string_equal(l.entries[0].id, "ble:AA:BB:CC:DD:EE:FF");
        assert_int_equal(l.entries[0].n_options, 2);
        assert_string_equal(l.entries[0].keys[0], "room");
        assert_string_equal(l.entries[0].values[0], "kitchen");
        assert_string_equal(l.entries[0].values[1], "2");
        assert_string_equal(l.entries[1].id, "s2");
        sensor_list_done(&l);

        t = "s1\ns2,novalue\n";
        assert_int_equal(sensor_list_parse(t, strlen(t), &l, &err), -EINVAL);
        assert_non_null(strstr(err, "line 2"));
        free(err);
}

static void test_json(void **state) {
        const char *t = "[\"s1\", {\"id\": \"7@ttyS1\", \"options\": {\"room\": \"hall\", \"n\": 3, \"b\": true}}]";
        SensorList l = {};
        char *err = NULL;
        assert_int_equal(sensor_list_parse(t, strlen(t), &l, &err), 0);
        assert_int_equal(l.n, 2);
        assert_string_equal(l.entries[1].id, "7@ttyS1");
        assert_int_equal(l.entries[1].n_options, 3);
        sensor_list_done(&l);

        t = "[\"s1\", {\"id\": \"x\", \"options\": {\"o\": [1]}}]";
        assert_int_equal(sensor_list_parse(t, strlen(t), &l, &err), -EINVAL);
        assert_non_null(strstr(err, "entry 2"));
        free(err);
        err = NULL;
        t = "{\"id\": 1}";
        assert_int_equal(sensor_list_parse(t, strlen(t), &l, &err), -EINVAL);
        free(err);
}

static void test_record(void **state) {
        Sensor s = { .id = strdup("ble-aabbccddeeff"), .protocol = strdup("ble"),
                     .options_json = strdup("{\"room\":\"k\"}"), .state = SENSOR_REGISTERING, .attempts = 2 };
        Sensor t = {};
        char *text = NULL;
        assert_int_equal(sensor_record_format(&s, &text), 0);
        assert_int_equal(sensor_record_parse(text, strlen(text), &t), 0);
        /* in-flight work is persisted as pending */
        assert_int_equal(t.state, SENSOR_PENDING);
        assert_string_equal(t.options_json, "{\"room\":\"k\"}");
        assert_int_equal(t.attempts, 2);
        free(text);
        sensor_done(&t);
        /* an assignment needs its hub and device id */
        const char *bad = "{\"version\":1,\"registrationId\":\"s\",\"state\":\"assigned\"}";
        assert_int_equal(sensor_record_parse(bad, strlen(bad), &t), -EBADMSG);
        bad = "{\"version\":1,\"registrationId\":\"../x\",\"state\":\"pending\"}";
        assert_int_equal(sensor_record_parse(bad, strlen(bad), &t), -EBADMSG);
        sensor_done(&s);
}

/* the operation accepted by the service survives a restart, only while pending */
static void test_record_operation(void **state) {
        Sensor s = { .id = strdup("sensor-1"), .operation_id = strdup("4.0a1b2c.0001"), .state = SENSOR_REGISTERING };
        Sensor t = {};
        char *text = NULL;
        assert_int_equal(sensor_record_format(&s, &text), 0);
        assert_non_null(strstr(text, "\"operationId\":\"4.0a1b2c.0001\""));
        assert_int_equal(sensor_record_parse(text, strlen(text), &t), 0);
        assert_int_equal(t.state, SENSOR_PENDING);
        assert_string_equal(t.operation_id, "4.0a1b2c.0001");
        free(text);
        sensor_done(&t);
        /* an assigned record does not carry it */
        s.state = SENSOR_ASSIGNED;
        s.device_id = strdup("d");
        s.assigned_hub = strdup("h");
        assert_int_equal(sensor_record_format(&s, &text), 0);
        assert_null(strstr(text, "operationId"));
        free(text);
        sensor_done(&s);
        /* it goes into a topic: no spaces, no control characters, bounded, only with pending */
        static const char *const bad[] = {
                "{\"version\":1,\"registrationId\":\"s\",\"state\":\"pending\",\"operationId\":\"a b\"}",
                "{\"version\":1,\"registrationId\":\"s\",\"state\":\"pending\",\"operationId\":\"a\\nb\"}",
                "{\"version\":1,\"registrationId\":\"s\",\"state\":\"pending\",\"operationId\":\"\"}",
                "{\"version\":1,\"registrationId\":\"s\",\"state\":\"pending\",\"operationId\":7}",
                "{\"version\":1,\"registrationId\":\"s\",\"state\":\"failed\",\"operationId\":\"x\"}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(sensor_record_parse(bad[i], strlen(bad[i]), &t), -EBADMSG);
        char big[400];
        int n = snprintf(big, sizeof(big), "{\"version\":1,\"registrationId\":\"s\",\"state\":\"pending\",\"operationId\":\"");
        memset(big + n, 'a', 257);
        strcpy(big + n + 257, "\"}");
        assert_int_equal(sensor_record_parse(big, strlen(big), &t), -EBADMSG);
}

static void test_conf_group_key_in_tpm(void **state) {
        Config c;
        char *err = NULL;
        conf_init(&c);
        assert_false(c.downstream_group_key_in_tpm);
        assert_int_equal(conf_apply_string(&c,
                                           "provisioning = { endpoint = \"h\"; id_scope = \"0ne00000001\";\n"
                                           "  registration_id = \"gw\"; attestation = { method = \"symmetric_key\";\n"
                                           "  key_file = \"k\"; }; };\ndownstream = { group_key_in_tpm = true; };\n",
                                           "t.conf", &err),
                         0);
        assert_true(c.downstream_group_key_in_tpm);
        assert_int_equal(conf_verify(&c, &err), 0);
        /* one source of the group key, not two */
        assert_int_equal(conf_apply_string(&c, "downstream = { group_key_file = \"gk\"; };", "d.conf", &err), 0);
        assert_int_equal(conf_verify(&c, &err), -EINVAL);
        assert_non_null(strstr(err, "exclude each other"));
        free(err);
        conf_done(&c);
}

static void test_conf_keys(void **state) {
        Config c;
        char *err = NULL;
        conf_init(&c);
        assert_int_equal(c.downstream_concurrency, 8);
        assert_int_equal(c.downstream_rate, 1000);
        const char *t = "downstream = { group_key_file = \"gk\"; concurrency = 16; rate = 600;\n"
                        "  sensors = ( \"s1\", \"AA:BB:CC:DD:EE:FF\" ); };\nagent = { admin_group = \"wheel\"; };\n";
        assert_int_equal(conf_apply_string(&c, t, "t.conf", &err), 0);
        assert_string_equal(c.downstream_group_key_file, "gk");
        assert_int_equal(c.downstream_concurrency, 16);
        assert_int_equal(c.downstream_rate, 600);
        assert_string_equal(c.downstream_sensors[0], "s1");
        assert_string_equal(c.downstream_sensors[1], "AA:BB:CC:DD:EE:FF");
        assert_null(c.downstream_sensors[2]);
        assert_string_equal(c.admin_group, "wheel");
        /* a later drop-in replaces the list */
        assert_int_equal(conf_apply_string(&c, "downstream = { sensors = [ \"x\" ]; };", "d.conf", &err), 0);
        assert_string_equal(c.downstream_sensors[0], "x");
        assert_null(c.downstream_sensors[1]);
        /* errors carry file:line */
        assert_int_equal(conf_apply_string(&c, "downstream = {\n sensors = ( \"a\", 3 );\n};", "e.conf", &err),
                         -EINVAL);
        assert_non_null(strstr(err, "e.conf:2"));
        free(err);
        err = NULL;
        assert_int_equal(conf_apply_string(&c, "downstream = { concurrency = 0; };", "e.conf", &err), -EINVAL);
        free(err);
        err = NULL;
        assert_int_equal(conf_apply_string(&c, "downstream = { sensors = \"s\"; };", "e.conf", &err), -EINVAL);
        free(err);
        conf_done(&c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_normalize),
                cmocka_unit_test(test_csv),
                cmocka_unit_test(test_json),
                cmocka_unit_test(test_record),
                cmocka_unit_test(test_record_operation),
                cmocka_unit_test(test_conf_group_key_in_tpm),
                cmocka_unit_test(test_conf_keys),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
