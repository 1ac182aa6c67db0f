#!/bin/bash
# The service's answers to bad requests, seen from real MQTT clients (mosquitto_rr/_sub):
# 401002 for a bad or expired SAS, 404201 for an unknown registration, 400 for a malformed
# body, nothing for anyone but the requester, no connection without a DPS username.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
command -v mosquitto_rr > /dev/null || skip "mosquitto-clients not installed"

pki_create "$WORK/pki"
KEY1=$(new_key)
KEY2=$(new_key)
service_init "$WORK/data.json" hub-a.example.test
enroll "$WORK/data.json" gw1 "$KEY1"
enroll "$WORK/data.json" gw2 "$KEY2"
start_broker "$WORK/data.json"

user() { printf '%s/registrations/%s/api-version=2019-03-31' "$ID_SCOPE" "$1"; }
later=$(( $(date +%s) + 3600 ))

# rr CLIENT PASSWORD REQUEST_TOPIC RESPONSE_TOPIC BODY: prints "topic payload" or fails after 5 s
rr() {
        mosquitto_rr -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 \
                -i "$1" -u "$(user "$1")" -P "$2" -t "$3" -e "$4" -m "$5" -W 5 -v
}
REG='$dps/registrations/PUT/iotdps-register/?$rid='

# an eavesdropper: gw2, authenticated, subscribed to every response topic
mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -i gw2 -u "$(user gw2)" \
        -P "$(sas_token "$KEY2" "$ID_SCOPE/registrations/gw2" "$later")" -t '$dps/registrations/res/#' -v \
        > "$WORK/eavesdropper.out" 2> "$WORK/eavesdropper.err" &
ep_track $!
wait_for 10 log_has "$WORK/broker/mosquitto.log" 'gw2 [01] \$dps/registrations/res/#' || fail "eavesdropper did not subscribe"

# good SAS (made with openssl, not our code) → 202 assigning
out=$(rr gw1 "$(sas_token "$KEY1" "$ID_SCOPE/registrations/gw1" "$later")" "${REG}r1" \
        '$dps/registrations/res/202/?$rid=r1&retry-after=1' '{"registrationId":"gw1"}') || fail "no 202 for a good SAS"
echo "$out" | grep -q '"status":"assigning"' || fail "202 body: $out"
op=$(echo "$out" | sed -n 's/.*"operationId":"\([^"]*\)".*/\1/p')
[ -n "$op" ] || fail "no operationId in $out"

# poll → 200 assigned
out=$(rr gw1 "$(sas_token "$KEY1" "$ID_SCOPE/registrations/gw1" "$later")" \
        "\$dps/registrations/GET/iotdps-get-operationstatus/?\$rid=r2&operationId=$op" '$dps/registrations/res/200/?$rid=r2' ' ') \
        || fail "no 200 for the poll"
echo "$out" | grep -q '"assignedHub":"hub-a.example.test"' || fail "200 body: $out"

# gw2 polling gw1's operation → 404
out=$(rr gw2 "$(sas_token "$KEY2" "$ID_SCOPE/registrations/gw2" "$later")" \
        "\$dps/registrations/GET/iotdps-get-operationstatus/?\$rid=x&operationId=$op" '$dps/registrations/res/404/?$rid=x' '') \
        || fail "another registration's operation was not refused with 404"

# wrong key → 401 401002
out=$(rr gw1 "$(sas_token "$KEY2" "$ID_SCOPE/registrations/gw1" "$later")" "${REG}r3" \
        '$dps/registrations/res/401/?$rid=r3' '{"registrationId":"gw1"}') || fail "no 401 for a wrong key"
echo "$out" | grep -q '"errorCode":401002' || fail "401 body: $out"

# expired SAS → 401 401002
out=$(rr gw1 "$(sas_token "$KEY1" "$ID_SCOPE/registrations/gw1" 1700000000)" "${REG}r4" \
        '$dps/registrations/res/401/?$rid=r4' '{"registrationId":"gw1"}') || fail "no 401 for an expired SAS"
echo "$out" | grep -q '"errorCode":401002' || fail "401 body: $out"

# SAS of gw1 presented by gw2 → 401
out=$(rr gw2 "$(sas_token "$KEY1" "$ID_SCOPE/registrations/gw1" "$later")" "${REG}r5" \
        '$dps/registrations/res/401/?$rid=r5' '{}') || fail "no 401 for another registration's SAS"

# unknown registration → 404 404201
out=$(rr ghost "$(sas_token "$KEY1" "$ID_SCOPE/registrations/ghost" "$later")" "${REG}r6" \
        '$dps/registrations/res/404/?$rid=r6' '{}') || fail "no 404 for an unknown registration"
echo "$out" | grep -q '"errorCode":404201' || fail "404 body: $out"

# malformed body → 400
out=$(rr gw1 "$(sas_token "$KEY1" "$ID_SCOPE/registrations/gw1" "$later")" "${REG}r7" \
        '$dps/registrations/res/400/?$rid=r7' '{"registrationId":') || fail "no 400 for a malformed body"

# a client without a DPS username is not let in
mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -i nobody -t '$dps/registrations/res/200/?$rid=1' \
        -m '{"status":"assigned"}' 2> "$WORK/anon.err" && fail "an anonymous client could publish"

sleep 0.5
kill -0 "$BROKER_PID" || fail "mosquitto died"
[ ! -s "$WORK/eavesdropper.out" ] || fail "another client received replies: $(head -c 300 "$WORK/eavesdropper.out")"
echo "PASS: error answers as DPS gives them; replies reach only the requester"
