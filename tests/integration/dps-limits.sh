#!/bin/bash
# The service protecting itself, seen from real MQTT clients: the registration rate limit
# (plugin_opt_registrations_per_minute) answers 429 / 429001 with a retry-after, an oversize
# body gives 413 / 413001, a malformed one 400 / 400002, a wrong registrationId 400 / 400003,
# and an operation id that is unknown 404 / 404203.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
command -v mosquitto_rr > /dev/null || skip "mosquitto-clients not installed"

pki_create "$WORK/pki"
KEY=$(new_key)
service_init "$WORK/data.json" hub-a.example.test
for id in l1 l2 l3; do
        enroll "$WORK/data.json" "$id" "$KEY"
done
echo "plugin_opt_registrations_per_minute 2" > "$WORK/extra.conf"
start_broker "$WORK/data.json" "$WORK/extra.conf"

later=$(( $(date +%s) + 3600 ))
user() { printf '%s/registrations/%s/api-version=2019-03-31' "$ID_SCOPE" "$1"; }
# rr CLIENT RID EXPECTED_STATUS BODY [RETRY_AFTER]: prints the reply body, fails without one
rr() {
        local resp="\$dps/registrations/res/$3/?\$rid=$2"
        [ -z "${5:-}" ] || resp="$resp&retry-after=$5"
        mosquitto_rr -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 \
                -i "$1" -u "$(user "$1")" -P "$(sas_token "$KEY" "$ID_SCOPE/registrations/$1" "$later")" \
                -t "\$dps/registrations/PUT/iotdps-register/?\$rid=$2" -e "$resp" -m "$4" -W 5
}

# body checks happen before the rate limit takes a token
big=$(head -c $((97 * 1024)) /dev/zero | tr '\0' 'x')
out=$(rr l1 big 413 "{\"registrationId\":\"l1\",\"payload\":\"$big\"}") || fail "no 413 for a 97 KiB body"
echo "$out" | grep -q '"errorCode":413001' || fail "413 body: $out"
out=$(rr l1 bad 400 '{"registrationId":"l1"') || fail "no 400 for malformed JSON"
echo "$out" | grep -q '"errorCode":400002' || fail "400 body: $out"
out=$(rr l1 other 400 '{"registrationId":"l2"}') || fail "no 400 for another registrationId"
echo "$out" | grep -q '"errorCode":400003' || fail "400 body: $out"
out=$(mosquitto_rr -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 -i l1 -u "$(user l1)" \
        -P "$(sas_token "$KEY" "$ID_SCOPE/registrations/l1" "$later")" \
        -t '$dps/registrations/GET/iotdps-get-operationstatus/?$rid=p&operationId=4.0.nope' \
        -e '$dps/registrations/res/404/?$rid=p' -m ' ' -W 5) || fail "no 404 for an unknown operation"
echo "$out" | grep -q '"errorCode":404203' || fail "404 body: $out"

# two registrations a minute: the third one within the minute is throttled for ~30 s
rr l1 a 202 '{}' 1 > /dev/null || fail "first registration not accepted"
rr l2 b 202 '{}' 1 > /dev/null || fail "second registration not accepted"
# (the exact retry-after depends on the time since the first two; 30 s less that, rounded up)
out=
for ra in 30 29; do
        out=$(rr l3 "c$ra" 429 '{}' "$ra" 2> /dev/null) && break
done
[ -n "$out" ] || fail "the third registration in a minute was not answered 429 with retry-after 29..30"
echo "$out" | grep -q '"errorCode":429001' || fail "429 body: $out"
echo "PASS: rate limit 429 + retry-after, size and syntax limits"
