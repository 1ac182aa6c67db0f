#!/bin/bash
# scripts/dps-local: first start creates the CA, server certificate, data file and database
# and serves on the given loopback port; a device registers with that CA; a second start
# reuses everything.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
command -v mosquitto_rr > /dev/null || skip "mosquitto-clients not installed"

D=$WORK/dps
# start_local: sets LOCAL_PID and PORT
start_local() {
        local attempt
        for attempt in 1 2 3 4 5; do
                PORT=$(random_port)
                port_open "$PORT" && continue
                "$EDGEPROV_SRCDIR/scripts/dps-local" --data-dir "$D" --port "$PORT" --build "$EDGEPROV_BUILDDIR" \
                        --retry-after 1 > "$WORK/local.log" 2>&1 &
                LOCAL_PID=$!
                ep_track "$LOCAL_PID"
                wait_for 15 port_open "$PORT" && return 0
                kill "$LOCAL_PID" 2> /dev/null || true
                wait "$LOCAL_PID" 2> /dev/null || true
                grep -q "Address already in use" "$WORK/local.log" || { cat "$WORK/local.log" >&2; fail "dps-local did not start"; }
        done
        fail "no free port for dps-local"
}

start_local
grep -q "CA           $D/ca.pem" "$WORK/local.log" || fail "dps-local did not say where the CA is: $(cat "$WORK/local.log")"
for f in ca.pem server.pem server.key data.json registrations.db; do
        [ -s "$D/$f" ] || fail "dps-local did not create $f"
done
[ "$(stat -c %a "$D/ca.key")" = 600 ] || fail "ca.key has mode $(stat -c %a "$D/ca.key")"
ca_fp=$(openssl x509 -in "$D/ca.pem" -noout -fingerprint -sha256)

KEY=$(new_key)
"$DPSCTL" --data "$D/data.json" hub add hub-local.example.test > /dev/null
"$DPSCTL" --data "$D/data.json" enrollment add local1 --primary-key "$KEY" > /dev/null
sleep 1.1 # the plugin looks at the data file at most once a second
later=$(( $(date +%s) + 3600 ))
out=$(mosquitto_rr -h 127.0.0.1 -p "$PORT" --cafile "$D/ca.pem" -V mqttv311 -q 1 -i local1 \
        -u "$ID_SCOPE/registrations/local1/api-version=2019-03-31" \
        -P "$(sas_token "$KEY" "$ID_SCOPE/registrations/local1" "$later")" \
        -t '$dps/registrations/PUT/iotdps-register/?$rid=1' -e '$dps/registrations/res/202/?$rid=1&retry-after=1' \
        -m '{}' -W 5) || fail "no 202 from dps-local"
echo "$out" | grep -q '"status":"assigning"' || fail "202 body: $out"
wait_for 5 sh -c "'$DPSCTL' --data '$D/data.json' registration list | grep -q '^local1 '" ||
        fail "no registration record: $("$DPSCTL" --data "$D/data.json" registration list)"

ep_stop "$LOCAL_PID" || true
start_local
[ "$(openssl x509 -in "$D/ca.pem" -noout -fingerprint -sha256)" = "$ca_fp" ] || fail "the CA was replaced on restart"
"$DPSCTL" --data "$D/data.json" registration show local1 > /dev/null || fail "the record did not survive a restart"
echo "PASS: dps-local"
