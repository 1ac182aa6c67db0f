#!/bin/bash
# Durable registration records and reprovisioning (dps-protocol.md §2.7, §7.4) against mosquitto +
# edgeprov_dps.so with plugin_opt_registrations_db: substatus for every reprovision policy,
# etag/created/updated, the initial twin kept in the record, records surviving kill -9 of the
# broker, and edgeprov-dpsctl registration list/show/delete on the live database.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
command -v mosquitto_rr > /dev/null || skip "mosquitto-clients not installed"

pki_create "$WORK/pki"
KEY=$(new_key)
A=hub-a.example.test
B=hub-b.example.test
DB=$WORK/broker/registrations.db
mkdir -p "$WORK/broker"
service_init "$WORK/data.json" "$A" "$B"
TWIN='{"tags":{"site":"plant-1"},"properties":{"desired":{"interval":30}}}'
enroll "$WORK/data.json" mig "$KEY" --hub "$A" --initial-twin "$TWIN"
enroll "$WORK/data.json" rst "$KEY" --hub "$A" --reprovision reset --initial-twin "$TWIN"
enroll "$WORK/data.json" nev "$KEY" --hub "$A" --reprovision never
echo "plugin_opt_registrations_db $DB" > "$WORK/extra.conf"
start_broker "$WORK/data.json" "$WORK/extra.conf"
DPSCTL_DB=("$DPSCTL" --data "$WORK/data.json" --db "$DB")

later=$(( $(date +%s) + 3600 ))
user() { printf '%s/registrations/%s/api-version=2019-03-31' "$ID_SCOPE" "$1"; }
rr() {
        mosquitto_rr -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 \
                -i "$1" -u "$(user "$1")" -P "$(sas_token "$KEY" "$ID_SCOPE/registrations/$1" "$later")" \
                -t "$2" -e "$3" -m "$4" -W 5
}
# register REGID: register + poll; prints the 200 body
register() {
        local out op
        out=$(rr "$1" '$dps/registrations/PUT/iotdps-register/?$rid=1' '$dps/registrations/res/202/?$rid=1&retry-after=1' \
                "{\"registrationId\":\"$1\"}") || fail "$1: no 202"
        op=$(echo "$out" | sed -n 's/.*"operationId":"\([^"]*\)".*/\1/p')
        [ -n "$op" ] || fail "$1: no operationId in $out"
        rr "$1" "\$dps/registrations/GET/iotdps-get-operationstatus/?\$rid=2&operationId=$op" \
                '$dps/registrations/res/200/?$rid=2' ' ' || fail "$1: no 200"
}
jfield() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" | head -n 1; }
# expect REGID HUB SUBSTATUS: registers and checks the result
expect() {
        local out
        out=$(register "$1")
        [ "$(echo "$out" | jfield assignedHub)" = "$2" ] || fail "$1: expected hub $2: $out"
        [ "$(echo "$out" | jfield substatus)" = "$3" ] || fail "$1: expected substatus $3: $out"
        LAST=$out
}
# move_all HUB: every enrollment to HUB (the data file is re-read on the next connection)
move_all() {
        local id
        for id in mig rst nev; do
                "$DPSCTL" --data "$WORK/data.json" enrollment remove "$id" > /dev/null
        done
        enroll "$WORK/data.json" mig "$KEY" --hub "$1" --initial-twin "$TWIN"
        enroll "$WORK/data.json" rst "$KEY" --hub "$1" --reprovision reset --initial-twin "$TWIN"
        enroll "$WORK/data.json" nev "$KEY" --hub "$1" --reprovision never
        sleep 1.1
}

expect mig "$A" initialAssignment
created=$(echo "$LAST" | jfield createdDateTimeUtc)
etag1=$(echo "$LAST" | jfield etag)
expect rst "$A" initialAssignment
expect nev "$A" initialAssignment
# again on the same hub: migrate keeps its substatus, reset is a factory reset
expect mig "$A" initialAssignment
[ "$(echo "$LAST" | jfield createdDateTimeUtc)" = "$created" ] || fail "createdDateTimeUtc changed: $LAST"
[ "$(echo "$LAST" | jfield etag)" != "$etag1" ] || fail "etag did not change: $LAST"
expect rst "$A" deviceDataReset

move_all "$B"
expect mig "$B" deviceDataMigrated
expect rst "$B" deviceDataReset
expect nev "$A" initialAssignment            # never re-provisioned: stays on A
"${DPSCTL_DB[@]}" --json registration show mig > "$WORK/mig.json" || fail "registration show failed"
grep -q '"initialHub": "hub-a.example.test"' "$WORK/mig.json" || fail "initialHub: $(cat "$WORK/mig.json")"
grep -q '"site": "plant-1"' "$WORK/mig.json" || fail "initial twin not in the record: $(cat "$WORK/mig.json")"

# kill -9 the broker: the records survive, and the next assignment knows the history
kill -9 "$BROKER_PID"
wait "$BROKER_PID" 2> /dev/null || true
"${DPSCTL_DB[@]}" registration list > "$WORK/list.out" || fail "registration list failed after kill -9"
grep -q "^mig .*deviceDataMigrated .*$B" "$WORK/list.out" || fail "record lost after kill -9: $(cat "$WORK/list.out")"
move_all "$A"
start_broker "$WORK/data.json" "$WORK/extra.conf"
expect mig "$A" reprovisionedToInitialAssignment
[ "$(echo "$LAST" | jfield createdDateTimeUtc)" = "$created" ] || fail "createdDateTimeUtc lost across the restart: $LAST"

# deleting the record makes the next registration an initial assignment again (no restart)
"${DPSCTL_DB[@]}" registration delete mig || fail "registration delete failed"
rc=0; "${DPSCTL_DB[@]}" registration delete mig 2> /dev/null || rc=$?
[ "$rc" = 4 ] || fail "deleting a missing record gave exit $rc, expected 4"
rc=0; "${DPSCTL_DB[@]}" registration show nobody 2> /dev/null || rc=$?
[ "$rc" = 4 ] || fail "showing a missing record gave exit $rc, expected 4"
expect mig "$A" initialAssignment
[ "$(echo "$LAST" | jfield createdDateTimeUtc)" != "$created" ] || fail "a deleted record kept its creation time"

# a disabled enrollment: status disabled / 403001 is recorded, the last assignment kept
"$DPSCTL" --data "$WORK/data.json" enrollment remove nev > /dev/null
enroll "$WORK/data.json" nev "$KEY" --hub "$A" --disabled
sleep 1.1
out=$(register nev)
echo "$out" | grep -q '"status":"disabled"' || fail "disabled: $out"
echo "$out" | grep -q '"errorCode":403001' || fail "disabled: $out"
"${DPSCTL_DB[@]}" --json registration show nev > "$WORK/nev.json"
grep -q '"status": "disabled"' "$WORK/nev.json" || fail "disabled record: $(cat "$WORK/nev.json")"
grep -q '"assignedHub": "hub-a.example.test"' "$WORK/nev.json" || fail "disabled record: $(cat "$WORK/nev.json")"

[ "$(stat -c %a "$DB")" = 640 ] || fail "the database has mode $(stat -c %a "$DB")"
echo "PASS: registration records and reprovisioning"
