#!/bin/bash
# SPDX-License-Identifier: MIT
# TPM attestation over HTTPS (dps-protocol.md §3.2), as Azure DPS offers it: swtpm + edgeprovd
# (transport "https") + edgeprov-dps-httpd: PUT without Authorization → 401 with the
# authenticationKey → activated in the TPM → PUT with a TPM-signed SAS → GET the operation →
# assigned.  Then the same gateway switched to MQTT reprovisions against mosquitto + the plugin
# sharing the same records: the service reports one device, with the substatus of a
# reprovisioning to the same hub.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/tpm-lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/https-lib.sh"

swtpm_manufacture
swtpm_start
pki_create "$WORK/pki"
service_init "$WORK/data.json" hub-a.example.test
mkdir -p "$WORK/dps"
db=$WORK/dps/registrations.db
state=$WORK/state/state.json

tpm_enroll_gateway

# both fronts on the same data file and the same registration records; the broker (user
# mosquitto once it has dropped root) creates the database, the front (root here) shares it
echo "plugin_opt_registrations_db $db" > "$WORK/broker-extra.conf"
broker_chown "$WORK/dps"
start_broker "$WORK/data.json" "$WORK/broker-extra.conf"
wait_for 10 test -e "$db" || fail "the plugin did not create $db"
start_httpd "$WORK/data.json" --db "$db"

# 1. TPM over HTTPS
BROKER_PORT=$HTTPD_PORT write_tpm_conf
sed -i 's|^        attestation = { method = "tpm"; };|&\n        transport = "https";|' "$WORK/edgeprovd.conf"
grep -q 'transport = "https"' "$WORK/edgeprovd.conf" || fail "config not edited"
start_agent "$WORK/edgeprovd.conf" "$WORK/agent1.log"
wait_for 60 log_has "$WORK/agent1.log" "assigned to hub" || fail "not assigned over HTTPS"
ep_stop "$AGENT_PID" || true
grep -q "over https" "$WORK/agent1.log" || fail "the agent did not use HTTPS"
grep -q 'challenge activated, HMAC key persisted at 0x81000100' "$WORK/agent1.log" || fail "no activation"
grep 'TPM attestation: start to assigned' "$WORK/agent1.log" | sed 's/^/timing (https): /' >&2
[ "$(json_get "$state" deviceId)" = gw-tpm ] || fail "state: $(cat "$state")"
[ "$(json_get "$state" substatus)" = initialAssignment ] || fail "substatus: $(cat "$state")"
# the wire: challenge (401), authorized register (202), poll (200), all on the REST paths
grep -q "PUT /$ID_SCOPE/registrations/$REGID/register → 401" "$WORK/httpd.log" || fail "no 401 challenge"
grep -q "PUT /$ID_SCOPE/registrations/$REGID/register → 202" "$WORK/httpd.log" || fail "no 202"
grep -q "GET /$ID_SCOPE/registrations/$REGID/operations/.* → 200" "$WORK/httpd.log" || fail "no poll"
grep -q "challenge issued" "$WORK/httpd.log" || fail "the HTTPS front did not issue the challenge"
[ "$(grep -c 'challenge issued' "$WORK/broker/mosquitto.log" || true)" = 0 ] || fail "MQTT front was used"

# the record is visible through the other front's store
"$DPSCTL" --data "$WORK/data.json" --db "$db" --json registration show "$REGID" > "$WORK/rec1.json" ||
        fail "no record after HTTPS"
grep -q '"initialAssignment"' "$WORK/rec1.json" || fail "record: $(cat "$WORK/rec1.json")"

# 2. the same gateway switched to MQTT: the endpoint changed → reprovisions via the plugin
write_tpm_conf
sed -i 's|^        attestation = { method = "tpm"; };|&\n        transport = "mqtt";|' "$WORK/edgeprovd.conf"
start_agent "$WORK/edgeprovd.conf" "$WORK/agent2.log"
wait_for 60 log_has "$WORK/agent2.log" "assigned to hub" || fail "not reassigned over MQTT"
ep_stop "$AGENT_PID" || true
grep -q "over mqtt" "$WORK/agent2.log" || fail "the agent did not use MQTT"
grep -q "challenge issued" "$WORK/broker/mosquitto.log" || fail "the plugin did not issue a challenge"
[ "$(json_get "$state" tpmKeySlot)" = 0x81000101 ] || fail "reprovision not in slot B: $(cat "$state")"

"$DPSCTL" --data "$WORK/data.json" --db "$db" --json registration list > "$WORK/list.json" || fail "list"
n=$(grep -o '"registrationId"' "$WORK/list.json" | wc -l)
[ "$n" = 1 ] || fail "expected one device, got $n: $(cat "$WORK/list.json")"
"$DPSCTL" --data "$WORK/data.json" --db "$db" --json registration show "$REGID" > "$WORK/rec2.json" || fail "show"
grep -q '"deviceId": *"gw-tpm"' "$WORK/rec2.json" || fail "record: $(cat "$WORK/rec2.json")"
# same hub, the default reprovision policy (migrate device data): the substatus stays
sub=$(json_get "$WORK/rec2.json" substatus)
[ "$sub" = initialAssignment ] || fail "substatus after the switch: '$sub' ($(cat "$WORK/rec2.json"))"
[ "$(json_get "$state" substatus)" = "$sub" ] || fail "agent and service disagree: $(cat "$state")"
[ "$(json_get "$WORK/rec2.json" etag)" != "$(json_get "$WORK/rec1.json" etag)" ] || fail "record not updated"

# 3. and back to HTTPS: the HTTPS front sees the record the plugin wrote
BROKER_PORT=$HTTPD_PORT write_tpm_conf
sed -i 's|^        attestation = { method = "tpm"; };|&\n        transport = "https";|' "$WORK/edgeprovd.conf"
start_agent "$WORK/edgeprovd.conf" "$WORK/agent3.log"
wait_for 60 log_has "$WORK/agent3.log" "assigned to hub" || fail "not reassigned over HTTPS"
ep_stop "$AGENT_PID" || true
"$DPSCTL" --data "$WORK/data.json" --db "$db" --json registration list > "$WORK/list3.json" || fail "list"
[ "$(grep -o '"registrationId"' "$WORK/list3.json" | wc -l)" = 1 ] || fail "not one device: $(cat "$WORK/list3.json")"
[ "$(tpm_count handles-transient)" = 0 ] || fail "transient objects left in the TPM"

EP_STATUS=0
