#!/bin/bash
# Durable operation records (issue 3): the answer of a register operation is stored in the
# registration database with the record, so a poll after mosquitto was killed (-9) and started
# again still gets the 200 of its operation; another registration's operation id is 404203 as
# before; operations expire (plugin_opt_operation_lifetime) in the store too, and expired rows
# are removed as new registrations come in.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
command -v mosquitto_rr > /dev/null || skip "mosquitto-clients not installed"
command -v sqlite3 > /dev/null || skip "sqlite3 not installed"

pki_create "$WORK/pki"
KEY=$(new_key)
DB=$WORK/broker/registrations.db
mkdir -p "$WORK/broker"
service_init "$WORK/data.json" hub-a.example.test
enroll "$WORK/data.json" op1 "$KEY"
enroll "$WORK/data.json" op2 "$KEY"
{
        echo "plugin_opt_registrations_db $DB"
        echo "plugin_opt_operation_lifetime 6"
} > "$WORK/extra.conf"
start_broker "$WORK/data.json" "$WORK/extra.conf"
later=$(( $(date +%s) + 3600 ))

# poll REGID OPID STATUS
poll() {
        dps_rr "$1" "\$dps/registrations/GET/iotdps-get-operationstatus/?\$rid=2&operationId=$2" \
                "\$dps/registrations/res/$3/?\$rid=2" ' '
}

op=$(dps_register_op op1)
[ -n "$op" ] || fail "no operationId"
t0=$(date +%s)
[ "$(sqlite3 "$DB" "SELECT count(*) FROM operations WHERE id = '$op' AND body IS NOT NULL")" = 1 ] ||
        fail "the operation is not in the store"

# kill -9 and start again: the poll is answered from the store
kill -9 "$BROKER_PID"
wait "$BROKER_PID" 2> /dev/null || true
start_broker "$WORK/data.json" "$WORK/extra.conf"
out=$(poll op1 "$op" 200) || fail "no 200 for the operation after the restart"
echo "$out" | grep -q "\"operationId\":\"$op\"" || fail "wrong operation: $out"
echo "$out" | grep -q '"status":"assigned"' || fail "not assigned: $out"
echo "$out" | grep -q '"assignedHub":"hub-a.example.test"' || fail "no hub: $out"
out=$(poll op2 "$op" 404) || fail "another registration's operation was not 404"
echo "$out" | grep -q '"errorCode":404203' || fail "foreign operation: $out"

# expiry: 6 s after it was created the operation is gone, and a new registration purges it
while [ $(( $(date +%s) - t0 )) -lt 7 ]; do sleep 0.5; done
out=$(poll op1 "$op" 404) || fail "an expired operation was not 404"
echo "$out" | grep -q '"errorCode":404203' || fail "expired operation: $out"
op2=$(dps_register_op op2)
[ -n "$op2" ] || fail "no operationId for op2"
[ "$(sqlite3 "$DB" "SELECT count(*) FROM operations WHERE id = '$op'")" = 0 ] ||
        fail "the expired operation is still stored"
poll op2 "$op2" 200 > /dev/null || fail "op2 not answered"
kill -0 "$BROKER_PID" || fail "mosquitto died"
echo "PASS: durable operations"
