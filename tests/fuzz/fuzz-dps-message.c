/* SPDX-License-Identifier: MIT */
/* The service's request handler (src/dps/service.c) fed arbitrary requests.
 *
 * Input: one selector byte (which connection publishes: byte % 4 → an authenticated
 * individual enrollment, an authenticated group member, a disabled enrollment, a client with
 * a bad token), then the topic up to the first '\n', then the payload.  Every request must
 * produce exactly one well-formed reply; a 202 is followed by a poll of its operation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dps/datafile.h"
#include "dps/service.h"
#include "edgeprov/dps.h"
#include "edgeprov/json-util.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/sas.h"
#include "fuzz.h"

#define SCOPE "0ne00000A0A"
#define K1 "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
#define K2 "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
#define SK(p, s) "{\"type\":\"symmetricKey\",\"symmetricKey\":{\"primaryKey\":\"" p "\",\"secondaryKey\":\"" s "\"}}"

static const char data_json[] =
        "{\"idScope\":\"" SCOPE "\",\"linkedHubs\":[{\"name\":\"hub1.example.net\",\"allocationWeight\":2},"
        "{\"name\":\"hub2.example.net\"}],"
        "\"individualEnrollments\":[{\"registrationId\":\"gw1\",\"deviceId\":\"gw1-device\",\"attestation\":" SK(K1, K2)
        "},{\"registrationId\":\"off\",\"provisioningStatus\":\"disabled\",\"attestation\":" SK(K1, K2) "}],"
        "\"enrollmentGroups\":[{\"enrollmentGroupId\":\"sensors\",\"attestation\":" SK(K2, K1) "}]}";

static uint64_t fuzz_clock(void *userdata) {
        return UINT64_C(1600000000) * UINT64_C(1000000);
}

/* Replies to unparseable topics carry an empty rid. */
static bool rid_is_empty(const char *topic) {
        const char *q = strstr(topic, "?$rid=");
        return q && (q[6] == 0 || q[6] == '&');
}

static void check_reply(const DpsReply *r) {
        _cleanup_(dps_response_topic_done) DpsResponseTopic t = {};
        _cleanup_json_ struct json_object *o = NULL;
        char prefix[64];

        if (!r->topic || !r->body || strlen(r->body) != r->body_len)
                abort();
        snprintf(prefix, sizeof(prefix), DPS_RESPONSE_TOPIC_PREFIX "%u/?$rid=", r->status);
        if (!startswith(r->topic, prefix))
                abort();
        /* a reply with a rid must be understood by our own client */
        if (!rid_is_empty(r->topic) && dps_response_topic_parse(r->topic, &t) < 0)
                abort();
        if (t.rid && t.status != r->status)
                abort();
        if (json_parse_limited(r->body, r->body_len, SIZE_MAX / 2, DPS_JSON_MAX_DEPTH + 2, &o) < 0 || !o)
                abort();
        /* never "unassigned" */
        const char *status = json_get_string(o, "status");
        if (status && streq(status, "unassigned"))
                abort();
}

static DpsClient *connect_client(DpsService *s, const void *conn, const char *id, const char *key, bool derive) {
        _cleanup_free_ char *username = NULL, *resource = NULL, *token = NULL, *dk = NULL;
        DpsClient *c = NULL;

        if (asprintf(&username, SCOPE "/registrations/%s/api-version=2019-03-31", id) < 0 ||
            asprintf(&resource, SCOPE "/registrations/%s", id) < 0)
                return NULL;
        if (derive && sas_derive_device_key(key, id, &dk) < 0)
                return NULL;
        if (sas_token_build_b64(dk ?: key, resource, UINT64_C(1700000000), NULL, &token) < 0)
                return NULL;
        if (dps_service_connect(s, conn, id, username, token, strlen(token), &c) != DPS_CONNECT_ACCEPTED)
                return NULL;
        return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(dps_service_freep) DpsService *s = NULL;
        _cleanup_free_ char *topic = NULL, *msg = NULL;
        static int conns[4];
        DpsData *d = NULL;

        log_set_max_level(LOG_CRIT);
        if (size < 1 || size > 256 * 1024)
                return 0;

        if (dps_service_new(&s) < 0 || dps_data_parse(data_json, strlen(data_json), &d, &msg) < 0)
                abort();
        dps_service_set_data(s, d);
        dps_service_set_clock(s, fuzz_clock, NULL);

        DpsClient *clients[4] = {
                connect_client(s, &conns[0], "gw1", K1, false),
                connect_client(s, &conns[1], "sensor-7", K2, true),
                connect_client(s, &conns[2], "off", K2, false),
                connect_client(s, &conns[3], "gw1", K2, true), /* wrong key */
        };
        for (size_t i = 0; i < ELEMENTSOF(clients); i++)
                if (!clients[i])
                        abort();
        DpsClient *c = clients[data[0] % 4];

        const uint8_t *p = data + 1, *end = data + size;
        const uint8_t *nl = memchr(p, '\n', end - p);
        size_t tl = nl ? (size_t) (nl - p) : (size_t) (end - p);
        topic = strndup((const char *) p, tl);
        if (!topic)
                return 0;
        const uint8_t *payload = nl ? nl + 1 : end;
        size_t plen = end - payload;

        _cleanup_(dps_reply_done) DpsReply r = {};
        if (dps_client_handle_request(c, topic, payload, plen, &r) < 0)
                return 0;
        check_reply(&r);

        if (r.status == 202) {
                _cleanup_json_ struct json_object *o = NULL;
                _cleanup_free_ char *poll = NULL;
                _cleanup_(dps_reply_done) DpsReply r2 = {}, r3 = {};

                if (json_parse_limited(r.body, r.body_len, SIZE_MAX / 2, 4, &o) < 0)
                        abort();
                const char *op = json_get_string(o, "operationId");
                if (!op || dps_poll_topic_format("2", op, &poll) < 0)
                        abort();
                if (dps_client_handle_request(c, poll, payload, plen, &r2) < 0)
                        return 0;
                check_reply(&r2);
                if (plen <= DPS_BODY_MAX && r2.status != 200)
                        abort();
                /* another connection must not see it */
                DpsClient *other = clients[(data[0] + 1) % 4];
                if (dps_client_handle_request(other, poll, NULL, 0, &r3) < 0)
                        return 0;
                check_reply(&r3);
                if (r3.status == 200)
                        abort();
        }
        return 0;
}
