#!/bin/bash
# Downstream sensors in bulk: N sensors (default 1,000) from `edgeprovctl register --file`,
# registered through the group enrollment with bounded concurrency; edgeprovd is killed
# (SIGKILL) half way and restarted: every sensor ends up assigned and none is lost.  Registered
# twice may only be a sensor whose register request the service had received while its record
# did not hold the operationId yet (the window between sending the request and persisting the
# 202): sensors assigned or with a persisted operationId at the kill are registered exactly once
# (the restarted daemon polls their operation), no sensor more than twice.  Then a service limited to a few
# registrations a minute answers 429: edgeprovd honours it and still gets every sensor through.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/bus-lib.sh"

N=${DOWNSTREAM_N:-1000}
CONCURRENCY=${DOWNSTREAM_CONCURRENCY:-100}

gateway_group_init hub-a.example.test
start_broker "$WORK/data.json"
start_bus bus open

gateway_group_creds
write_agent_conf "$WORK/edgeprovd.conf" "$WORK/state" dps-key "};
downstream = {
        group_key_file = \"group-key\";
        concurrency = $CONCURRENCY;
        rate = 1000000;"

# the bulk file: plain ids, BLE MACs and Modbus units, with options
{
        echo "id,options"
        for i in $(seq 1 "$N"); do
                case $((i % 3)) in
                0) printf 'sensor-%05d,room=r%d\n' "$i" $((i % 7)) ;;
                1) printf 'ble:02:00:00:00:%02X:%02X,kind=ble\n' $((i / 256)) $((i % 256)) ;;
                2) printf '%d@/dev/ttyRS%d\n' $((i % 200 + 1)) $((i / 200)) ;;
                esac
        done
} > "$WORK/sensors.csv"

assigned_count() { grep -l '"state":"assigned"' "$WORK/state/devices/"*.json 2> /dev/null | wc -l; }
at_least() { [ "$(assigned_count)" -ge "$1" ]; }

T0=$SECONDS
start_bus_agent "$WORK/edgeprovd.conf" "$WORK/agent.log"
wait_for 20 test -s "$WORK/state/state.json" || fail "gateway not provisioned"
"$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" register --file "$WORK/sensors.csv" > "$WORK/submit.out" 2>&1 &
SUBMIT_PID=$!
wait_for 120 at_least $((N / 2)) || fail "half of the sensors not assigned in time ($(assigned_count))"
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2> /dev/null || true
# the submission either finished before the kill or failed with it; it is repeated below
wait "$SUBMIT_PID" 2> /dev/null || true
cp -a "$WORK/state/devices" "$WORK/devices-at-kill"
SUBMITTED=$(ls "$WORK/state/devices" | grep -c '\.json$' || true)
grep -l '"state":"assigned"' "$WORK/state/devices/"*.json | sed 's|.*/||; s|\.json$||' | sort > "$WORK/before-kill"
grep -l '"operationId"' "$WORK/state/devices/"*.json 2> /dev/null | sed 's|.*/||; s|\.json$||' | sort > "$WORK/accepted-at-kill" || true
BEFORE=$(wc -l < "$WORK/before-kill")
ACCEPTED=$(wc -l < "$WORK/accepted-at-kill")
ep_log "killed edgeprovd with $BEFORE of $N sensors assigned, $ACCEPTED with a persisted operationId"
# the broker may still handle what the dead daemon's sockets held: wait until it is quiet
registrations_logged() { grep -c "Registration '" "$WORK/broker/mosquitto.log" || true; }
service_quiet() {
        local a b
        a=$(registrations_logged)
        sleep 1
        b=$(registrations_logged)
        [ "$a" = "$b" ]
}
wait_for 20 service_quiet || fail "the service kept registering after the kill"
cp "$WORK/broker/mosquitto.log" "$WORK/broker-at-kill.log"
service_ids() { grep -o "Registration '[^']*' assigned" "$1" | sed "s/Registration '//; s/' assigned//" | grep -v '^gw1$' || true; }
# the window: received by the service, but neither assigned nor accepted in the record
service_ids "$WORK/broker-at-kill.log" | sort -u | comm -23 - "$WORK/before-kill" | comm -23 - "$WORK/accepted-at-kill" \
        > "$WORK/window"
WINDOW=$(wc -l < "$WORK/window")

start_bus_agent "$WORK/edgeprovd.conf" "$WORK/agent2.log"
wait_for 30 log_has "$WORK/agent2.log" "Loaded $SUBMITTED sensor record(s)" || fail "the restarted daemon did not load every record"
# the operator repeats the bulk registration: idempotent for what is known
wait_for 30 busctl --address="$BUS_ADDRESS" get-property io.edgeprov.Gateway1 /io/edgeprov/Gateway1 \
        io.edgeprov.Gateway1 State ||
        fail "restarted daemon not on the bus: $(busctl --address="$BUS_ADDRESS" list --no-pager 2>&1 | head -n 20)"
"$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" register --file "$WORK/sensors.csv" > "$WORK/submit2.out" ||
        fail "register --file after the restart: $(cat "$WORK/submit2.out")"
grep -q "^$N sensor(s) submitted, 0 refused" "$WORK/submit2.out" || fail "submit: $(cat "$WORK/submit2.out")"
wait_for 180 at_least "$N" || fail "only $(assigned_count) of $N sensors assigned after the restart"
T_ALL=$((SECONDS - T0))

# nothing lost: every sensor of the file is assigned, exactly once in the registry
[ "$(ls "$WORK/state/devices" | grep -c '\.json$')" = "$N" ] || fail "sensor records lost or added"
ls "$WORK/state/devices" | grep -q corrupt && fail "a sensor record was torn by the kill"
# registered twice only inside the window: counted from the service's log, one line per register
service_ids "$WORK/broker/mosquitto.log" | sort > "$WORK/service-assignments"
[ "$(sort -u "$WORK/service-assignments" | wc -l)" = "$N" ] || fail "the service did not assign $N distinct sensors"
uniq -d "$WORK/service-assignments" > "$WORK/twice"
uniq -c "$WORK/service-assignments" | awk '$1 > 2 { print $2 }' > "$WORK/thrice"
[ ! -s "$WORK/thrice" ] || fail "sensors registered more than twice: $(head "$WORK/thrice")"
comm -12 "$WORK/twice" "$WORK/before-kill" > "$WORK/twice-committed"
[ ! -s "$WORK/twice-committed" ] || fail "committed sensors registered again: $(head "$WORK/twice-committed")"
comm -12 "$WORK/twice" "$WORK/accepted-at-kill" > "$WORK/twice-accepted"
[ ! -s "$WORK/twice-accepted" ] ||
        fail "sensors with a persisted operationId registered again instead of polling: $(head "$WORK/twice-accepted")"
comm -23 "$WORK/twice" "$WORK/window" > "$WORK/twice-outside"
[ ! -s "$WORK/twice-outside" ] || fail "registered twice outside the send-to-202 window: $(head "$WORK/twice-outside")"
TWICE=$(wc -l < "$WORK/twice")
[ "$WINDOW" -le "$CONCURRENCY" ] || fail "$WINDOW sensors in the window, more than were in flight"
# the accepted ones were resumed: the restarted daemon polled their operation
if [ "$ACCEPTED" -gt 0 ]; then
        grep -q "resuming operation" "$WORK/agent2.log" || fail "no operation resumed after the restart"
fi
# each sensor used its own identity, with the gateway's id in the payload
grep -c "enrollment group 'sensors'" "$WORK/broker/mosquitto.log" | { read -r c; [ "$c" -ge "$N" ]; } ||
        fail "sensors did not register through the group enrollment"
# D-Bus and edgeprovctl see them all
[ "$(bget "$BUS_ADDRESS" /io/edgeprov/Gateway1 io.edgeprov.Gateway1 DeviceCount)" = "$N" ] || fail "DeviceCount"
"$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" devices | tail -n 1 | grep -q "^$N device(s): $N assigned, 0 failed" ||
        fail "edgeprovctl devices: $("$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" devices | tail -n 1)"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly"
ep_log "$N sensors: $SUBMITTED submitted before the kill, all assigned after ${T_ALL}s (concurrency $CONCURRENCY, service retry-after 1 s); at the kill $ACCEPTED had a persisted operationId (polled after the restart, not registered again), $WINDOW were between register and 202; $TWICE registered twice"

# --- 429: a service that takes 60 registrations a minute (a burst of 60, then one a second);
# edgeprovd repeats after retry-after
stop_broker
printf 'plugin_opt_registrations_per_minute 60\n' > "$WORK/throttle.conf"
start_broker "$WORK/data.json" "$WORK/throttle.conf"
M=75
write_agent_conf "$WORK/edgeprovd3.conf" "$WORK/state3" dps-key "};
downstream = {
        group_key_file = \"group-key\";
        concurrency = 16;"
# an inventory in a drop-in is registered too
mkdir -p "$WORK/edgeprovd3.conf.d"
printf 'downstream = {\n        sensors = ( "inventory-1", "ble:02:00:00:00:ff:01" );\n};\n' > "$WORK/edgeprovd3.conf.d/50-sensors.conf"
LOG_TARGET=console "$EDGEPROVD" --config "$WORK/edgeprovd3.conf" --bus-address="$BUS_ADDRESS" \
        > "$WORK/agent3.log" 2>&1 &
AGENT_PID=$!
ep_track "$AGENT_PID"
wait_for 20 test -s "$WORK/state3/state.json" || fail "gateway not provisioned (throttled service)"
seq -f 'throttled-%03g' 1 $M > "$WORK/throttled.csv"
timeout 120 "$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" register --file "$WORK/throttled.csv" --wait > "$WORK/t.out" ||
        fail "throttled run: $(cat "$WORK/t.out")"
grep -q "^$M assigned, 0 failed" "$WORK/t.out" || fail "throttled: $(cat "$WORK/t.out")"
for f in inventory-1 ble-02000000ff01; do
        wait_for 30 grep -q '"state":"assigned"' "$WORK/state3/devices/$f.json" || fail "inventory sensor $f not assigned"
done
THROTTLED=$(grep -c "Provisioning service answered 429" "$WORK/agent3.log" || true)
[ "$THROTTLED" -gt 0 ] || fail "the service never answered 429 (test is not testing anything)"
# honoured: each refusal waits retry-after (1 s here) with at most 16 waiting: no tight loop
[ "$THROTTLED" -lt $((16 * 60)) ] || fail "$THROTTLED 429s for $M sensors: retry-after not honoured"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly (3)"
grep -qF "$GKEY" "$WORK"/agent*.log && fail "the group key appears in a log"
echo "PASS: $N sensors in ${T_ALL}s with a SIGKILL half way ($ACCEPTED resumed by operationId, $TWICE of $WINDOW in the register-to-202 window registered twice, none else); 429 honoured ($THROTTLED throttled answers)"
