#!/bin/bash
# Lowest-latency allocation (geoLatency, issue 3): the plugin measures each linked hub's TCP
# connect time to its probeAddress with non-blocking connects from MOSQ_EVT_TICK.  A real
# difference: two hubs answer at once (loopback), one drops the first SYN of every connect
# (full accept queue, probe-listener.py slow: ≈1 s), one refuses.  Devices of a geoLatency group
# land only on the two fast hubs (their tie broken by weight), although the slow and the dead
# hub weigh 1000; once the fast hubs stop listening, the slow hub takes over and the dead one is
# never chosen.  Runs in a network namespace of its own when it can (the slow listener counts
# the namespace's ListenOverflows).
if [ -z "${EP_NETNS:-}" ] && [ "$(id -u)" = 0 ] && command -v ip > /dev/null && unshare -n true 2> /dev/null; then
        exec unshare -n env EP_NETNS=1 bash -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
command -v mosquitto_rr > /dev/null || skip "mosquitto-clients not installed"
command -v python3 > /dev/null || skip "python3 not installed"

pki_create "$WORK/pki"
GKEY=$(new_key)
B_DIR=$WORK/broker
DATA=$B_DIR/data.json
mkdir -p "$B_DIR"

listener() { # MODE NAME: starts a probe listener, sets PORT_<NAME> and PID_<NAME>
        python3 "$EDGEPROV_SRCDIR/tests/integration/probe-listener.py" "$1" "$WORK/$2.port" > "$WORK/$2.out" 2>&1 &
        ep_track $!
        printf -v "PID_$2" %s $!
        wait_for 20 test -s "$WORK/$2.port" || fail "listener $2 did not start: $(cat "$WORK/$2.out")"
        printf -v "PORT_$2" %s "$(cat "$WORK/$2.port")"
}
listener fast NEAR1
listener fast NEAR2
listener slow FAR
DEAD=$(random_port)
while port_open "$DEAD"; do DEAD=$(random_port); done

"$DPSCTL" --data "$DATA" init --id-scope "$ID_SCOPE" > /dev/null
"$DPSCTL" --data "$DATA" hub add near1.example.test --weight 1 --probe-address "127.0.0.1:$PORT_NEAR1" > /dev/null
"$DPSCTL" --data "$DATA" hub add near2.example.test --weight 3 --probe-address "127.0.0.1:$PORT_NEAR2" > /dev/null
"$DPSCTL" --data "$DATA" hub add far.example.test --weight 1000 --probe-address "127.0.0.1:$PORT_FAR" > /dev/null
"$DPSCTL" --data "$DATA" hub add dead.example.test --weight 1000 --probe-address "127.0.0.1:$DEAD" > /dev/null
rc=0; "$DPSCTL" --data "$DATA" hub add bad.example.test --probe-address "far.example.test:443" 2> /dev/null || rc=$?
[ "$rc" = 2 ] || fail "a probe address with a name was accepted (exit $rc)"
"$DPSCTL" --data "$DATA" group add plant --primary-key "$GKEY" > /dev/null
python3 - "$DATA" << 'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["enrollmentGroups"][0]["allocationPolicy"] = "geoLatency"
json.dump(d, open(sys.argv[1], "w"), indent=2)
EOF
{
        echo "plugin_opt_latency_probe_interval 1"
        echo "plugin_opt_latency_probe_timeout 3"
} > "$WORK/extra.conf"
start_broker "$DATA" "$WORK/extra.conf"
LOG=$B_DIR/mosquitto.log
later=$(( $(date +%s) + 3600 ))

# the measurements
for h in near1 near2 far; do
        wait_for 30 grep -q "Hub '$h.example.test' is reachable" "$LOG" || fail "$h never measured: $(grep Hub "$LOG")"
done
wait_for 30 grep -q "Hub 'dead.example.test' is not reachable .*refused" "$LOG" || fail "dead hub: $(grep Hub "$LOG")"
usec() { sed -n "s/.*Hub '$1.example.test' is reachable at .* (TCP connect \([0-9]*\) µs).*/\1/p" "$LOG" | head -n 1; }
echo "connect times: near1 $(usec near1) µs, near2 $(usec near2) µs, far $(usec far) µs"
[ "$(usec far)" -ge 900000 ] || fail "the slow hub measured $(usec far) µs"
[ "$(usec near1)" -lt 100000 ] && [ "$(usec near2)" -lt 100000 ] || fail "the fast hubs are slow?"

# register ID: group member through register + poll; prints the hub
register() {
        local id=$1 key out op
        key=$("$DPSCTL" compute-key --group-key "$GKEY" "$id")
        ep_secret "$key"
        local args=(-h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 -i "$id"
                -u "$ID_SCOPE/registrations/$id/api-version=2019-03-31"
                -P "$(sas_token "$key" "$ID_SCOPE/registrations/$id" "$later")" -W 10)
        out=$(mosquitto_rr "${args[@]}" -t '$dps/registrations/PUT/iotdps-register/?$rid=1' \
                -e '$dps/registrations/res/202/?$rid=1&retry-after=1' -m "{\"registrationId\":\"$id\"}") ||
                fail "$id: no 202"
        op=$(echo "$out" | sed -n 's/.*"operationId":"\([^"]*\)".*/\1/p')
        mosquitto_rr "${args[@]}" -t "\$dps/registrations/GET/iotdps-get-operationstatus/?\$rid=2&operationId=$op" \
                -e '$dps/registrations/res/200/?$rid=2' -m ' ' | sed -n 's/.*"assignedHub":"\([^"]*\)".*/\1/p'
}

declare -A count
for i in $(seq 1 16); do
        hub=$(register "sensor-$i")
        [ -n "$hub" ] || fail "sensor-$i not assigned"
        count[$hub]=$(( ${count[$hub]:-0} + 1 ))
done
echo "16 devices: near1 ${count[near1.example.test]:-0}, near2 ${count[near2.example.test]:-0}," \
        "far ${count[far.example.test]:-0}, dead ${count[dead.example.test]:-0}"
[ "${count[far.example.test]:-0}" = 0 ] && [ "${count[dead.example.test]:-0}" = 0 ] ||
        fail "a slow or dead hub was chosen over the fast ones"
[ "${count[near1.example.test]:-0}" -gt 0 ] && [ "${count[near2.example.test]:-0}" -gt "${count[near1.example.test]:-0}" ] ||
        fail "the tie of the fast hubs was not broken by weight (1:3)"

# the fast hubs go away: the slow one is the only reachable hub, the dead one stays excluded
kill "$PID_NEAR1" "$PID_NEAR2"
wait_for 30 grep -q "Hub 'near2.example.test' is not reachable" "$LOG" || fail "near2 still reachable"
wait_for 30 grep -q "Hub 'near1.example.test' is not reachable" "$LOG" || fail "near1 still reachable"
for i in 17 18 19; do
        hub=$(register "sensor-$i")
        [ "$hub" = far.example.test ] || fail "sensor-$i: expected far.example.test, got '$hub'"
done
kill -0 "$BROKER_PID" || fail "mosquitto died"
echo "PASS: lowest latency"
