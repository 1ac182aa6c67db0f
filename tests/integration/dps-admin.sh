#!/bin/bash
# The admin API on $CONTROL/edgeprov-dps/v1 (dynamic-security style JSON commands), seen from a
# real MQTT client: only the configured admin identity may use it (wrong password → CONNACK
# refused; a device connection cannot publish there or see responses); registration records
# and enrollments (without keys) are returned; deleteRegistration takes effect at once; bad
# requests get a per-command "error".
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
command -v mosquitto_rr > /dev/null || skip "mosquitto-clients not installed"

pki_create "$WORK/pki"
KEY=$(new_key)
mkdir -p "$WORK/broker"
service_init "$WORK/data.json" hub-a.example.test
enroll "$WORK/data.json" adm1 "$KEY" --initial-twin '{"tags":{"floor":"3"}}'
ADMIN_PW=$(openssl rand -hex 16)
( umask 077; printf '%s\n' "$ADMIN_PW" > "$WORK/broker/admin.pw" )
{
        echo "plugin_opt_registrations_db $WORK/broker/registrations.db"
        echo "plugin_opt_admin_username dps-admin"
        echo "plugin_opt_admin_password_file $WORK/broker/admin.pw"
} > "$WORK/extra.conf"
start_broker "$WORK/data.json" "$WORK/extra.conf"
later=$(( $(date +%s) + 3600 ))

# admin JSON [PASSWORD]: one request/response on the admin API
admin() {
        mosquitto_rr -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 -i admin-cli \
                -u dps-admin -P "${2:-$ADMIN_PW}" -t '$CONTROL/edgeprov-dps/v1' -e '$CONTROL/edgeprov-dps/v1/response' \
                -m "$1" -W 5
}
dev_rr() {
        mosquitto_rr -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 -i adm1 \
                -u "$ID_SCOPE/registrations/adm1/api-version=2019-03-31" \
                -P "$(sas_token "$KEY" "$ID_SCOPE/registrations/adm1" "$later")" -t "$1" -e "$2" -m "$3" -W "${4:-5}"
}

# a device registers
dev_rr '$dps/registrations/PUT/iotdps-register/?$rid=1' '$dps/registrations/res/202/?$rid=1&retry-after=1' '{}' \
        > /dev/null || fail "registration not accepted"

out=$(admin '{"commands":[{"command":"getRegistration","registrationId":"adm1","correlationData":"c1"},{"command":"listRegistrations"}]}') ||
        fail "no admin response"
echo "$out" | grep -q '"command":"getRegistration","correlationData":"c1","data":{"registration":{"registrationId":"adm1"' ||
        fail "getRegistration: $out"
echo "$out" | grep -q '"substatus":"initialAssignment"' || fail "getRegistration substatus: $out"
echo "$out" | grep -q '"initialTwin":{"tags":{"floor":"3"}}' || fail "initial twin not returned: $out"
echo "$out" | grep -q '"command":"listRegistrations","data":{"registrations":\[{' || fail "listRegistrations: $out"

out=$(admin '{"commands":[{"command":"getEnrollment","registrationId":"adm1"},{"command":"listHubs"}]}') ||
        fail "no admin response"
echo "$out" | grep -q '"enrollment":{"registrationId":"adm1"' || fail "getEnrollment: $out"
echo "$out" | grep -qF "$KEY" && fail "the admin API returned a symmetric key"
echo "$out" | grep -q 'primaryKey' && fail "the admin API returned a key field: $out"
echo "$out" | grep -q '"linkedHubs":\[{"name":"hub-a.example.test","allocationWeight":1' || fail "listHubs: $out"

# errors per command
out=$(admin '{"commands":[{"command":"getRegistration","registrationId":"nobody"},{"command":"getRegistration"},{"command":"frobnicate"}]}')
echo "$out" | grep -q '"command":"getRegistration","error":"Not found: ' || fail "unknown record: $out"
echo "$out" | grep -q '"error":"Invalid/missing registrationId"' || fail "missing id: $out"
echo "$out" | grep -q '"command":"frobnicate","error":"Unknown command"' || fail "unknown command: $out"
out=$(admin '{"commands":') || fail "no answer to malformed JSON"
echo "$out" | grep -q '"error":"Invalid request' || fail "malformed request: $out"

# edgeprov-dpsctl speaking the admin API: table, --json, exit codes
CTL=("$DPSCTL" --broker "127.0.0.1:$BROKER_PORT" --cafile "$WORK/pki/ca.pem" --admin-user dps-admin
        --admin-password-file "$WORK/broker/admin.pw")
"${CTL[@]}" registration list > "$WORK/ctl-list.out" || fail "dpsctl registration list over the API failed"
grep -q "^adm1 .* assigned .*initialAssignment .*hub-a.example.test" "$WORK/ctl-list.out" ||
        fail "dpsctl table: $(cat "$WORK/ctl-list.out")"
"${CTL[@]}" --json registration show adm1 > "$WORK/ctl-show.json" || fail "dpsctl registration show over the API failed"
grep -q '"assignedHub": "hub-a.example.test"' "$WORK/ctl-show.json" || fail "dpsctl --json: $(cat "$WORK/ctl-show.json")"
rc=0; "${CTL[@]}" registration show nobody 2> /dev/null || rc=$?
[ "$rc" = 4 ] || fail "dpsctl over the API: a missing record gave exit $rc, expected 4"
( umask 077; echo wrong > "$WORK/wrong.pw" )
rc=0; "$DPSCTL" --broker "127.0.0.1:$BROKER_PORT" --cafile "$WORK/pki/ca.pem" --admin-password-file "$WORK/wrong.pw" \
        registration list > /dev/null 2> "$WORK/ctl-wrong.err" || rc=$?
[ "$rc" = 3 ] || fail "dpsctl with a wrong admin password gave exit $rc, expected 3: $(cat "$WORK/ctl-wrong.err")"
grep -q "refused" "$WORK/ctl-wrong.err" || fail "dpsctl wrong password message: $(cat "$WORK/ctl-wrong.err")"

# deleteRegistration takes effect without a restart
out=$(admin '{"commands":[{"command":"deleteRegistration","registrationId":"adm1"}]}')
echo "$out" | grep -q '"command":"deleteRegistration","data":{}' || fail "deleteRegistration: $out"
rc=0; "$DPSCTL" --data "$WORK/data.json" --db "$WORK/broker/registrations.db" registration show adm1 > /dev/null 2>&1 || rc=$?
[ "$rc" = 4 ] || fail "the record is still there after deleteRegistration (exit $rc)"

# only the admin: wrong password refused at CONNECT; a device cannot use or watch the API
admin '{"commands":[{"command":"listRegistrations"}]}' "wrong-password" > /dev/null 2>&1 && fail "wrong admin password accepted"
log_has "$WORK/broker/mosquitto.log" "Admin connection refused: wrong password" || fail "refusal not logged"
dev_rr '$CONTROL/edgeprov-dps/v1' '$CONTROL/edgeprov-dps/v1/response' '{"commands":[{"command":"listRegistrations"}]}' 2 \
        > "$WORK/dev.out" 2>&1 || true
grep -q responses "$WORK/dev.out" && fail "a device got an admin response: $(cat "$WORK/dev.out")"
grep -qF "$ADMIN_PW" "$WORK/broker/mosquitto.log" && fail "the admin password appears in the log"
kill -0 "$BROKER_PID" || fail "mosquitto died"
echo "PASS: admin API"
