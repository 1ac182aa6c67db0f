/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "edgeprov/dps.h"
#include "edgeprov/macro.h"

typedef struct Case {
        const char *name;
        const char *username;
        const char *scope, *id, *api_version, *client_version;
} Case;

/* dps-protocol.md §2.2, one line per SDK */
static const Case good[] = {
        { "C SDK (not encoded)", "0ne00000A0A/registrations/dev1/api-version=2021-06-01&ClientVersion=1.15.0",
          "0ne00000A0A", "dev1", "2021-06-01", "1.15.0" },
        { "embedded C without user agent", "0ne00000A0A/registrations/dev1/api-version=2019-03-31", "0ne00000A0A",
          "dev1", "2019-03-31", NULL },
        { "embedded C with user agent", "0ne00000A0A/registrations/dev1/api-version=2019-03-31&ClientVersion=azsdk-c%2F1.5.0",
          "0ne00000A0A", "dev1", "2019-03-31", "azsdk-c/1.5.0" },
        { "Node", "0ne00000A0A/registrations/sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1",
          "0ne00000A0A", "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", "2019-03-31", "azure-iot-provisioning-device/1.9.1" },
        { "Python (urlencode, quote_via=quote)",
          "0ne00000A0A/registrations/my.device_1/api-version=2019-03-31&ClientVersion=azure-iot-device-provisioning-py%2F2.14.0%283.11.2%3BLinux%206.1.0-18-amd64%3Bx86_64%29",
          "0ne00000A0A", "my.device_1", "2019-03-31",
          "azure-iot-device-provisioning-py/2.14.0(3.11.2;Linux 6.1.0-18-amd64;x86_64)" },
        { ".NET (Uri.EscapeDataString)",
          "0ne00000A0A/registrations/dev:1/api-version=2019-03-31&ClientVersion=Microsoft.Azure.Devices.Provisioning.Client%2F1.19.4%20%28.NET%206.0.25%3B%20Ubuntu%2022.04%3B%20X64%29",
          "0ne00000A0A", "dev:1", "2019-03-31",
          "Microsoft.Azure.Devices.Provisioning.Client/1.19.4 (.NET 6.0.25; Ubuntu 22.04; X64)" },
        { "legacy api-version", "0ne00000001/registrations/DEV1/api-version=2017-11-15", "0ne00000001", "DEV1",
          "2017-11-15", NULL },
        { "keys in another order, unknown key", "0ne00000A0A/registrations/dev1/ClientVersion=x%2Fy&foo=bar&api-version=2021-10-01",
          "0ne00000A0A", "dev1", "2021-10-01", "x/y" },
        { "verbatim agent with a stray %", "0ne00000A0A/registrations/dev1/api-version=2019-03-31&ClientVersion=100%",
          "0ne00000A0A", "dev1", "2019-03-31", "100%" },
        { "verbatim agent with &", "0ne00000A0A/registrations/dev1/api-version=2019-03-31&ClientVersion=a b&c",
          "0ne00000A0A", "dev1", "2019-03-31", "a b" },
        { "empty ClientVersion", "0ne00000A0A/registrations/dev1/api-version=2019-03-31&ClientVersion=", "0ne00000A0A",
          "dev1", "2019-03-31", "" },
        { "second /registrations/ in the query", "0ne00000A0A/registrations/dev1/api-version=2019-03-31&ClientVersion=a/registrations/b",
          "0ne00000A0A", "dev1", "2019-03-31", "a/registrations/b" },
};

static void test_sdk_variants(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_(dps_username_done) DpsUsername u = {};
                int r = dps_username_parse(good[i].username, &u);
                if (r != 0)
                        fail_msg("%s: %d", good[i].name, r);
                assert_string_equal(u.id_scope, good[i].scope);
                assert_string_equal(u.registration_id, good[i].id);
                assert_string_equal(u.api_version, good[i].api_version);
                if (good[i].client_version)
                        assert_string_equal(u.client_version, good[i].client_version);
                else
                        assert_null(u.client_version);
        }
}

static void test_bad(void **state) {
        char id129[DPS_REGISTRATION_ID_MAX + 2];
        memset(id129, 'a', sizeof(id129) - 1);
        id129[sizeof(id129) - 1] = 0;
        _cleanup_free_ char *long_id = NULL;
        assert_true(asprintf(&long_id, "0ne00000A0A/registrations/%s/api-version=2019-03-31", id129) > 0);

        const char *bad[] = {
                "",
                "0ne00000A0A",
                "0ne00000A0A/dev1/api-version=2019-03-31",                      /* no /registrations/ */
                "0ne00000A0A/Registrations/dev1/api-version=2019-03-31",        /* case matters */
                "/registrations/dev1/api-version=2019-03-31",                   /* empty scope */
                "0ne 0A/registrations/dev1/api-version=2019-03-31",             /* bad scope */
                "0ne00000A0A/registrations//api-version=2019-03-31",            /* empty id */
                "0ne00000A0A/registrations/dev1",                               /* no query */
                "0ne00000A0A/registrations/dev1/",                              /* empty query */
                "0ne00000A0A/registrations/dev1/ClientVersion=1.15.0",          /* no api-version */
                "0ne00000A0A/registrations/dev1/api-version=",                  /* empty api-version */
                "0ne00000A0A/registrations/dev1/api-version",
                "0ne00000A0A/registrations/dev1/api-version=2019 03 31",
                "0ne00000A0A/registrations/dev1/api-version=%zz",
                "0ne00000A0A/registrations/dev1/api-version=2019-03-31&api-version=2021-06-01",
                "0ne00000A0A/registrations/dev1/api-version=2019-03-31&ClientVersion=a&ClientVersion=b",
                "0ne00000A0A/registrations/dev1/api-version=2019-03-31&ClientVersion=a%0Ab", /* control char */
                "0ne00000A0A/registrations/dev 1/api-version=2019-03-31",        /* invalid id chars */
                "0ne00000A0A/registrations/dev#1/api-version=2019-03-31",
                "0ne00000A0A/registrations/dev%41/api-version=2019-03-31",
                "0ne00000A0A/registrations/d\xc3\xa9v/api-version=2019-03-31",
                "0ne00000A0A/registrations/-dev1/api-version=2019-03-31",        /* first/last alphanumeric */
                "0ne00000A0A/registrations/dev1-/api-version=2019-03-31",
                "0ne00000A0A/registrations/.dev1/api-version=2019-03-31",
                long_id,                                                         /* 129 characters */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                DpsUsername u = { .id_scope = (char *) 0x1 };
                int r = dps_username_parse(bad[i], &u);
                if (r != -EINVAL)
                        fail_msg("case %zu '%s': %d", i, bad[i], r);
                assert_ptr_equal(u.id_scope, (char *) 0x1);
        }

        /* 128 characters are fine */
        _cleanup_free_ char *ok_id = NULL;
        id129[DPS_REGISTRATION_ID_MAX] = 0;
        assert_true(asprintf(&ok_id, "0ne00000A0A/registrations/%s/api-version=2019-03-31", id129) > 0);
        _cleanup_(dps_username_done) DpsUsername u = {};
        assert_int_equal(dps_username_parse(ok_id, &u), 0);
        assert_int_equal(strlen(u.registration_id), DPS_REGISTRATION_ID_MAX);
}

static void test_too_long(void **state) {
        char buf[DPS_USERNAME_MAX + 2];
        int n = snprintf(buf, sizeof(buf), "0ne00000A0A/registrations/dev1/api-version=2019-03-31&ClientVersion=");
        memset(buf + n, 'x', sizeof(buf) - n - 1);
        buf[sizeof(buf) - 1] = 0;
        assert_int_equal(strlen(buf), DPS_USERNAME_MAX + 1);

        DpsUsername u = {};
        assert_int_equal(dps_username_parse(buf, &u), -E2BIG);
        assert_null(u.id_scope);

        buf[DPS_USERNAME_MAX] = 0;
        assert_int_equal(dps_username_parse(buf, &u), 0);
        assert_int_equal(strlen(u.client_version), DPS_USERNAME_MAX - n);
        dps_username_done(&u);
        assert_null(u.client_version);
}

static void test_format(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;

        assert_int_equal(dps_username_format("0ne00000A0A", "dev1", NULL, NULL, &a), 0);
        assert_string_equal(a, "0ne00000A0A/registrations/dev1/api-version=" DPS_API_VERSION_DEFAULT);

        assert_int_equal(dps_username_format("0ne00000A0A", "dev1", "2021-06-01", "edgeprov/0.1 (Linux; x86_64)", &b), 0);
        assert_string_equal(b, "0ne00000A0A/registrations/dev1/api-version=2021-06-01&ClientVersion=edgeprov%2F0.1%20%28Linux%3B%20x86_64%29");

        _cleanup_(dps_username_done) DpsUsername u = {};
        assert_int_equal(dps_username_parse(b, &u), 0);
        assert_string_equal(u.id_scope, "0ne00000A0A");
        assert_string_equal(u.registration_id, "dev1");
        assert_string_equal(u.api_version, "2021-06-01");
        assert_string_equal(u.client_version, "edgeprov/0.1 (Linux; x86_64)");

        char *x = (char *) 0x1;
        assert_int_equal(dps_username_format("", "dev1", NULL, NULL, &x), -EINVAL);
        assert_int_equal(dps_username_format("0ne/x", "dev1", NULL, NULL, &x), -EINVAL);
        assert_int_equal(dps_username_format("0ne00000A0A", "dev/1", NULL, NULL, &x), -EINVAL);
        assert_int_equal(dps_username_format("0ne00000A0A", "dev1", "a&b", NULL, &x), -EINVAL);
        assert_int_equal(dps_username_format("0ne00000A0A", "dev1", NULL, "a\nb", &x), -EINVAL);
        assert_ptr_equal(x, (char *) 0x1);

        /* registration ids and scopes are validated */
        assert_true(dps_registration_id_is_valid("a"));
        assert_true(dps_registration_id_is_valid("a.b:c_d-e"));
        assert_false(dps_registration_id_is_valid(""));
        assert_false(dps_registration_id_is_valid(NULL));
        assert_false(dps_registration_id_is_valid("a."));
        assert_false(dps_registration_id_is_valid("_a"));
        assert_true(dps_id_scope_is_valid("0ne00000A0A"));
        assert_false(dps_id_scope_is_valid("0ne-00000A0A"));
        assert_false(dps_id_scope_is_valid(""));

        assert_int_equal(dps_username_format("0ne00000A0A", "x", NULL, "y", &c), 0);
        assert_string_equal(c, "0ne00000A0A/registrations/x/api-version=2019-03-31&ClientVersion=y");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sdk_variants),
                cmocka_unit_test(test_bad),
                cmocka_unit_test(test_too_long),
                cmocka_unit_test(test_format),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
