#!/bin/bash
# Admin API writes (issue 3): linked hubs, individual enrollments and enrollment groups created,
# updated and deleted through $CONTROL/edgeprov-dps/v1 (raw JSON and edgeprov-dpsctl --broker)
# take effect on the next registration without restarting mosquitto, are written to the data
# file (so they survive a restart), are validated with clear errors, and honour ifMatch (etag).
# Exit codes of edgeprov-dpsctl: 2 invalid, 4 not found, 5 already exists, 6 etag mismatch.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
command -v mosquitto_rr > /dev/null || skip "mosquitto-clients not installed"

pki_create "$WORK/pki"
KEY=$(new_key)
GKEY=$(new_key)
A=hub-a.example.test
B=hub-b.example.test
B_DIR=$WORK/broker
DATA=$B_DIR/data.json # the plugin (user mosquitto) writes it: in a directory it owns
mkdir -p "$B_DIR"
service_init "$DATA" "$A"
ADMIN_PW=$(openssl rand -hex 16)
( umask 077; printf '%s\n' "$ADMIN_PW" > "$B_DIR/admin.pw" )
{
        echo "plugin_opt_registrations_db $B_DIR/registrations.db"
        echo "plugin_opt_admin_username dps-admin"
        echo "plugin_opt_admin_password_file $B_DIR/admin.pw"
} > "$WORK/extra.conf"
start_broker "$DATA" "$WORK/extra.conf"
later=$(( $(date +%s) + 3600 ))

admin() {
        mosquitto_rr -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 -i admin-cli \
                -u dps-admin -P "$ADMIN_PW" -t '$CONTROL/edgeprov-dps/v1' -e '$CONTROL/edgeprov-dps/v1/response' \
                -m "$1" -W 10
}
CTL=("$DPSCTL" --broker "127.0.0.1:$BROKER_PORT" --cafile "$WORK/pki/ca.pem" --admin-user dps-admin
        --admin-password-file "$B_DIR/admin.pw")
# ctl_rc EXPECTED ARGS...: runs edgeprov-dpsctl over the admin API and checks the exit status
ctl_rc() {
        local want=$1 rc=0
        shift
        "${CTL[@]}" "$@" > "$WORK/ctl.out" 2> "$WORK/ctl.err" || rc=$?
        [ "$rc" = "$want" ] || fail "dpsctl $*: exit $rc, expected $want: $(cat "$WORK/ctl.out" "$WORK/ctl.err")"
}
# register REGID KEY [STATUS]: register + poll, prints the 200 body; with STATUS, the register
# request itself is expected to be answered with that status (printed)
register() {
        local id=$1 key=$2 status=${3:-} out op
        local args=(-h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 -i "$id"
                -u "$ID_SCOPE/registrations/$id/api-version=2019-03-31"
                -P "$(sas_token "$key" "$ID_SCOPE/registrations/$id" "$later")" -W 10)
        if [ -n "$status" ]; then
                mosquitto_rr "${args[@]}" -t '$dps/registrations/PUT/iotdps-register/?$rid=1' \
                        -e "\$dps/registrations/res/$status/?\$rid=1" -m "{\"registrationId\":\"$id\"}" ||
                        fail "$id: no $status answer"
                return 0
        fi
        out=$(mosquitto_rr "${args[@]}" -t '$dps/registrations/PUT/iotdps-register/?$rid=1' \
                -e '$dps/registrations/res/202/?$rid=1&retry-after=1' -m "{\"registrationId\":\"$id\"}") ||
                fail "$id: no 202"
        op=$(echo "$out" | sed -n 's/.*"operationId":"\([^"]*\)".*/\1/p')
        mosquitto_rr "${args[@]}" -t "\$dps/registrations/GET/iotdps-get-operationstatus/?\$rid=2&operationId=$op" \
                -e '$dps/registrations/res/200/?$rid=2' -m ' ' || fail "$id: no poll answer"
}
jfield() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" | head -n 1; }

# --- hubs -------------------------------------------------------------------------------------
ctl_rc 0 hub add "$B" --weight 3
grep -q "\"name\": \"$B\"" "$DATA" || fail "linkHub not written to the data file: $(cat "$DATA")"
ctl_rc 0 hub list
grep -q "^$B .* 3 yes" "$WORK/ctl.out" || fail "hub table: $(cat "$WORK/ctl.out")"
ctl_rc 5 hub add "$B"
grep -q "Already exists" "$WORK/ctl.err" || fail "duplicate hub message: $(cat "$WORK/ctl.err")"
ctl_rc 2 hub add "bad_name.example.test"
ctl_rc 0 hub update "$B" --weight 7
ctl_rc 0 --json hub show "$B"
grep -q '"allocationWeight": 7' "$WORK/ctl.out" || fail "updateHub: $(cat "$WORK/ctl.out")"
ctl_rc 4 hub update nohub.example.test --weight 2

# --- individual enrollment: create, effective at once ------------------------------------------
ctl_rc 0 enrollment create w1 --primary-key "$KEY" --hub "$B" --initial-twin '{"tags":{"line":"7"}}'
out=$(register w1 "$KEY")
[ "$(echo "$out" | jfield assignedHub)" = "$B" ] || fail "w1 not assigned to $B after createEnrollment: $out"
ctl_rc 5 enrollment create w1 --primary-key "$KEY"
ctl_rc 2 enrollment create "bad!id" --primary-key "$KEY"
ctl_rc 0 --json enrollment show w1
grep -qF "$KEY" "$WORK/ctl.out" && fail "enrollment show printed the key"
grep -q '"etag"' "$WORK/ctl.out" || fail "no etag: $(cat "$WORK/ctl.out")"
ctl_rc 0 enrollment list
grep -q "^w1 .* enabled .*symmetricKey .*$B" "$WORK/ctl.out" || fail "enrollment table: $(cat "$WORK/ctl.out")"

# validation through the raw API: unknown field, bad id, hub not linked, size limit
out=$(admin '{"commands":[{"command":"createEnrollment","enrollment":{"registrationId":"w2","colour":"red","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"'"$KEY"'"}}}}]}')
echo "$out" | grep -q '"error":"Invalid: .*colour: unknown field' || fail "unknown field: $out"
out=$(admin '{"commands":[{"command":"createEnrollment","enrollment":{"registrationId":"w2!","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"'"$KEY"'"}}}}]}')
echo "$out" | grep -q '"error":"Invalid: .*is not a valid registration id' || fail "bad id: $out"
out=$(admin '{"commands":[{"command":"createEnrollment","enrollment":{"registrationId":"w2","iotHubs":["nowhere.example.test"],"attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"'"$KEY"'"}}}}]}')
echo "$out" | grep -q "\"error\":\"Invalid: .*'nowhere.example.test' is not a linked hub" || fail "unlinked hub: $out"
echo "$out" | grep -qF "$KEY" && fail "an error echoed the key"
big=$(head -c 120000 /dev/zero | tr '\0' a)
out=$(admin "{\"commands\":[{\"command\":\"createEnrollment\",\"enrollment\":{\"registrationId\":\"w3\",\"x\":\"$big\"}}]}")
echo "$out" | grep -q '"error":"Payload too large"' || fail "oversize request: $out"

# update: disabled is answered "disabled"/403001 at once; the key is kept
ctl_rc 0 enrollment update w1 --disabled
out=$(register w1 "$KEY")
echo "$out" | grep -q '"status":"disabled"' || fail "w1 not disabled after update: $out"
echo "$out" | grep -q '"errorCode":403001' || fail "disabled errorCode: $out"
ctl_rc 0 enrollment update w1 --enabled --hub "$A"
out=$(register w1 "$KEY")
[ "$(echo "$out" | jfield assignedHub)" = "$A" ] || fail "w1 not moved to $A: $out"
[ "$(echo "$out" | jfield substatus)" = "deviceDataMigrated" ] || fail "w1 substatus: $out"

# optimistic concurrency: a stale etag is refused, the current one accepted
etag=$(admin '{"commands":[{"command":"getEnrollment","registrationId":"w1"}]}' | jfield etag)
[ -n "$etag" ] || fail "no etag from getEnrollment"
out=$(admin '{"commands":[{"command":"updateEnrollment","ifMatch":"stale","enrollment":{"registrationId":"w1","attestation":{"type":"symmetricKey"}}}]}')
echo "$out" | grep -q '"error":"Precondition failed' || fail "stale ifMatch: $out"
out=$(admin '{"commands":[{"command":"updateEnrollment","ifMatch":"'"$etag"'","enrollment":{"registrationId":"w1","deviceId":"dev-w1","attestation":{"type":"symmetricKey"}}}]}')
echo "$out" | grep -q '"data":{"enrollment":{"registrationId":"w1"' || fail "update with the current etag: $out"
out=$(register w1 "$KEY")
[ "$(echo "$out" | jfield deviceId)" = "dev-w1" ] || fail "deviceId from the update (key kept): $out"

# a hub in use cannot be unlinked
ctl_rc 0 enrollment update w1 --hub "$B"
ctl_rc 2 hub remove "$B"
grep -q "is not a linked hub" "$WORK/ctl.err" || fail "unlink of a used hub: $(cat "$WORK/ctl.err")"

# delete: the next registration is 404201
ctl_rc 0 enrollment delete w1
out=$(register w1 "$KEY" 404)
echo "$out" | grep -q '"errorCode":404201' || fail "w1 still enrolled after delete: $out"
ctl_rc 4 enrollment delete w1
ctl_rc 4 enrollment show w1

# --- groups -----------------------------------------------------------------------------------
ctl_rc 0 group create plant1 --primary-key "$GKEY" --hub "$B"
DKEY=$("$DPSCTL" compute-key --group-key "$GKEY" sensor-17)
ep_secret "$DKEY"
out=$(register sensor-17 "$DKEY")
[ "$(echo "$out" | jfield assignedHub)" = "$B" ] || fail "group member not assigned: $out"
echo "$out" | grep -q '"enrollmentGroupId":"plant1"' || fail "group member: $out"
ctl_rc 0 group update plant1 --disabled
out=$(register sensor-17 "$DKEY")
echo "$out" | grep -q '"status":"disabled"' || fail "group not disabled: $out"
ctl_rc 0 group list
grep -q "^plant1 .* disabled" "$WORK/ctl.out" || fail "group table: $(cat "$WORK/ctl.out")"

# --- persisted: a restart serves the same data --------------------------------------------------
ctl_rc 0 enrollment create w9 --primary-key "$KEY"
stop_broker
"$DPSCTL" --data "$DATA" enrollment list | grep -q "^w9 " || fail "w9 not in the data file"
start_broker "$DATA" "$WORK/extra.conf"
CTL=("$DPSCTL" --broker "127.0.0.1:$BROKER_PORT" --cafile "$WORK/pki/ca.pem" --admin-user dps-admin
        --admin-password-file "$B_DIR/admin.pw")
out=$(register w9 "$KEY")
[ "$(echo "$out" | jfield status)" = "assigned" ] || fail "w9 after restart: $out"
ctl_rc 0 group show plant1
grep -q "provisioningStatus *disabled" "$WORK/ctl.out" || fail "group after restart: $(cat "$WORK/ctl.out")"

# an offline edit with --data is picked up, and an admin write after it keeps it
"$DPSCTL" --data "$DATA" enrollment add off1 --primary-key "$KEY" > /dev/null || fail "offline add"
ctl_rc 0 enrollment create w10 --primary-key "$KEY"
"$DPSCTL" --data "$DATA" enrollment list | grep -q "^off1 " || fail "the admin write lost the offline edit"

grep -qF "$KEY" "$B_DIR/mosquitto.log" && fail "a key appears in the broker log"
grep -qF "$GKEY" "$WORK/ctl.out" "$WORK/ctl.err" && fail "dpsctl printed the group key"
kill -0 "$BROKER_PID" || fail "mosquitto died"
echo "PASS: admin API writes"
