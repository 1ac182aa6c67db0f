#!/bin/bash
# Downstream throughput (issue 5): the bulk D-Bus method and the slot released while a sensor
# waits out the service's retry-after.
#  - RegisterDevices with a mix of valid and invalid ids: the valid ones are registered (one
#    path per entry, "/" for a refused one), the invalid ones reported per entry; more than
#    1,000 entries → LimitExceeded; an unauthorised caller → PermissionDenied; `edgeprovctl
#    register --file` with invalid lines registers the rest and exits 1.
#  - concurrency 2, 24 sensors, service retry-after 2 s: sensors accepted by the service (202)
#    give their connection and slot to queued ones and poll on a new connection later.  Never
#    more than 2 connections of edgeprovd to the service at once (sampled every 50 ms), from
#    the broker's log some sensors connected twice (register, then the poll) and every sensor
#    registered exactly once at the service; State stays "registering", Attempts 1.
#  - RemoveDevice of a sensor waiting without a slot.
#  - the same over HTTPS (edgeprov-dps-httpd, transport "https"): 12 more sensors, polls of
#    parked operations on new requests, each registered once.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/bus-lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/https-lib.sh"

gateway_group_init hub-a.example.test
DPS_RETRY_AFTER=2 start_broker "$WORK/data.json"
start_bus bus open
gateway_group_creds
write_agent_conf "$WORK/edgeprovd.conf" "$WORK/state" dps-key "        admin_group = \"users\";
};
downstream = {
        group_key_file = \"group-key\";
        concurrency = 2;
        rate = 1000000;"
LOG_LEVEL=debug start_bus_agent "$WORK/edgeprovd.conf" "$WORK/agent.log"
wait_for 20 test -s "$WORK/state/state.json" || fail "gateway not provisioned"
wait_for 30 busctl --address="$BUS_ADDRESS" get-property io.edgeprov.Gateway1 /io/edgeprov/Gateway1 io.edgeprov.Gateway1 State > /dev/null || fail "edgeprovd not on the bus"
# the gateway's own connection is over before the sensors start
wait_for 20 grep -q "Client gw1 \(disconnected\|closed its connection\)" "$WORK/broker/mosquitto.log" ||
        fail "the gateway's connection did not end"
CALL=(busctl --address="$BUS_ADDRESS" call io.edgeprov.Gateway1 /io/edgeprov/Gateway1 io.edgeprov.Gateway1)

# 1. a mix: valid, invalid, a BLE MAC with an option, a valid one twice
OUT=$("${CALL[@]}" RegisterDevices 'a(sa{sv})' 5 bulk-a 0 'bad id!' 0 ble:02:00:00:00:00:01 1 room s r1 .x 0 bulk-a 0 2>&1) ||
        fail "RegisterDevices refused the call: $OUT"
ep_log "RegisterDevices: $OUT"
echo "$OUT" | grep -q '^aoa(usss) 5 "/io/edgeprov/Gateway1/devices/bulk_2da" "/" "/io/edgeprov/Gateway1/devices/ble_2d020000000001" "/" "/io/edgeprov/Gateway1/devices/bulk_2da" 2 1 "bad id!" "io.edgeprov.Error.InvalidId" "[^"]*" 3 ".x" "io.edgeprov.Error.InvalidId"' ||
        fail "unexpected RegisterDevices reply: $OUT"
test -f "$WORK/state/devices/bulk-a.json" -a -f "$WORK/state/devices/ble-020000000001.json" || fail "intent records missing"
grep -q '"room":"r1"' "$WORK/state/devices/ble-020000000001.json" || fail "option not recorded"
[ "$(ls "$WORK/state/devices" | grep -c '\.json$')" = 2 ] || fail "an invalid id was recorded"
ls -a "$WORK/state/devices" | grep -q '\.batch$' && fail "temporary batch files left"

# 2. over the limit: nothing registered
ARGS=(1001)
for i in $(seq 1 1001); do ARGS+=("over-$i" 0); done
ERR=$("${CALL[@]}" RegisterDevices 'a(sa{sv})' "${ARGS[@]}" 2>&1) && fail "1,001 entries accepted"
echo "$ERR" | grep -q "At most 1000 devices" || fail "over-limit error: $ERR"
ls "$WORK/state/devices" | grep -q '^over-' && fail "an over-limit call registered something"

# 3. unauthorised caller (the daemon's own check: the bus is open)
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null && id nobody > /dev/null 2>&1; then
        ERR=$($(as_nobody) "${CALL[@]}" RegisterDevices 'a(sa{sv})' 1 denied-1 0 2>&1) && fail "nobody may register"
        echo "$ERR" | grep -q "group 'users'" || fail "unauthorised caller: $ERR"
        ls "$WORK/state/devices" | grep -q '^denied-' && fail "an unauthorised call registered something"
else
        ep_log "not root: unauthorised caller not tested"
fi

# 4. edgeprovctl register --file: 22 valid + 2 invalid lines → the valid ones registered, exit 1
{
        echo "id"
        for i in $(seq 1 22); do printf 'file-%02d\n' "$i"; done
        echo "not valid!"
        echo "-nope"
} > "$WORK/sensors.csv"
# the peak of edgeprovd's established connections to the broker (/proc/net/tcp*, every 50 ms)
echo 0 > "$WORK/conns"
python3 -c 'import os, sys, time
port, peak, out = ":%04X" % int(sys.argv[1]), 0, sys.argv[2]
def count():
    n = 0
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as t:
                next(t)
                n += sum(1 for l in t if l.split()[3] == "01" and l.split()[2].endswith(port))
        except OSError:
            pass
    return n
while True:
    # two reads back to back: one read is not atomic and may see a closed connection and its
    # successor both established
    n = min(count(), count())
    if n > peak:
        peak = n
        with open(out + ".tmp", "w") as o:
            o.write("%d\n" % peak)
        os.replace(out + ".tmp", out)
    time.sleep(0.05)' "$BROKER_PORT" "$WORK/conns" &
SAMPLER_PID=$!
ep_track "$SAMPLER_PID"
rc=0
"$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" register --file "$WORK/sensors.csv" --wait > "$WORK/ctl.out" 2> "$WORK/ctl.err" || rc=$?
cat "$WORK/ctl.out" "$WORK/ctl.err" >&2
[ "$rc" = 1 ] || fail "edgeprovctl register --file with invalid ids exited $rc, not 1"
grep -q "22 sensor(s) submitted, 2 refused" "$WORK/ctl.out" || fail "submission summary"
grep -q "not valid!" "$WORK/ctl.err" && grep -q -- "-nope" "$WORK/ctl.err" || fail "invalid ids not named"
grep -q "22 assigned, 0 failed" "$WORK/ctl.out" || fail "not every sensor assigned"
assigned() { [ "$(grep -l '"state":"assigned"' "$WORK/state/devices/"$1*.json | wc -l)" = "$2" ]; }
wait_for 60 assigned "" 24 || fail "not all 24 assigned"

# 5. the evidence
kill "$SAMPLER_PID"
PEAK=$(cat "$WORK/conns")
LOG=$WORK/broker/mosquitto.log
CONNS=$(grep -c "New client connected from .* as \(bulk\|ble\|file\)-" "$LOG" || true)
TWICE=$(grep -o "New client connected from .* as \(bulk\|ble\|file\)-[^ ]*" "$LOG" | awk '{ print $NF }' | sort | uniq -d | wc -l)
RESUMED=$(grep -c "polling operation .* on a new connection" "$WORK/agent.log" || true)
REGS=$(grep -o "Registration '[^']*' assigned" "$LOG" | grep -v "'gw1'" | sort | uniq -c)
ep_log "sensor connections $CONNS, peak at once $PEAK, sensors connected twice $TWICE, polls on a new connection $RESUMED"
[ "$PEAK" -le 2 ] || fail "$PEAK sensor connections at once with concurrency 2"
[ "$PEAK" -ge 1 ] || fail "no connection seen in /proc/net/tcp"
[ "$RESUMED" -gt 0 ] && [ "$TWICE" -gt 0 ] || fail "no sensor released its slot while waiting"
[ "$(echo "$REGS" | wc -l)" = 24 ] || fail "not 24 sensors registered at the service: $REGS"
echo "$REGS" | awk '$1 != 1 { bad = 1 } END { exit bad }' || fail "a sensor registered more than once: $REGS"
# waiting without a slot is not a retry: State stayed "registering", Attempts is 1 for each
grep -q "retrying in" "$WORK/agent.log" && fail "a sensor went to 'retrying' while waiting"
ATTEMPTS=$("$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" devices --json | grep -o '"Attempts": *[0-9]*' | sort | uniq -c)
[ "$(echo "$ATTEMPTS" | wc -l)" = 1 ] && echo "$ATTEMPTS" | grep -q '24 "Attempts": *1$' || fail "attempts: $ATTEMPTS"

# RemoveDevice of a sensor waiting without a slot: its timer goes, the others are unaffected
seq -f 'rm-%02g' 1 6 > "$WORK/rm.csv"
"$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" register --file "$WORK/rm.csv" > /dev/null || fail "rm sensors"
wait_for 30 grep -q "Sensor 'rm-0[1-6]': operation .* slot released" "$WORK/agent.log" || fail "no rm sensor released its slot"
VICTIM=$(grep -o "Sensor 'rm-0[1-6]': operation .* slot released" "$WORK/agent.log" | head -n 1 | cut -d"'" -f2)
"${CALL[@]}" RemoveDevice s "$VICTIM" || fail "RemoveDevice $VICTIM while it waits"
AT=$(wc -l < "$WORK/agent.log")
wait_for 60 assigned rm- 5 || fail "the other rm sensors"
test -e "$WORK/state/devices/$VICTIM.json" && fail "$VICTIM's record is still there"
tail -n +"$((AT + 1))" "$WORK/agent.log" | grep -q "Sensor '$VICTIM': polling operation" && fail "$VICTIM polled after its removal"
kill -0 "$AGENT_PID" || fail "edgeprovd died"
ep_log "removed $VICTIM while it waited without a slot"

# 6. HTTPS: the accepted callback of dps-http.c reports the retry-after too
ep_stop "$AGENT_PID"
DPS_RETRY_AFTER=2 start_httpd "$WORK/data.json"
sed -e "s/port = $BROKER_PORT;/port = $HTTPD_PORT;\n        transport = \"https\";/" "$WORK/edgeprovd.conf" > "$WORK/edgeprovd-https.conf"
grep -q 'transport = "https"' "$WORK/edgeprovd-https.conf" || fail "https config"
LOG_LEVEL=debug start_bus_agent "$WORK/edgeprovd-https.conf" "$WORK/agent-https.log"
wait_for 30 busctl --address="$BUS_ADDRESS" get-property io.edgeprov.Gateway1 /io/edgeprov/Gateway1 io.edgeprov.Gateway1 State > /dev/null || fail "edgeprovd (https) not on the bus"
seq -f 'https-%02g' 1 12 > "$WORK/https.csv"
"$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" register --file "$WORK/https.csv" --wait > "$WORK/ctl-https.out" 2>&1 ||
        fail "https sensors: $(cat "$WORK/ctl-https.out")"
RESUMED=$(grep -c "polling operation .* on a new connection" "$WORK/agent-https.log" || true)
REGS=$(grep -o "Registration 'https-[^']*' assigned" "$WORK/httpd.log" | sort | uniq -c)
ep_log "https: polls on a new connection $RESUMED"
[ "$RESUMED" -gt 0 ] || fail "no https sensor released its slot while waiting"
[ "$(echo "$REGS" | wc -l)" = 12 ] || fail "not 12 sensors registered at the https service: $REGS"
echo "$REGS" | awk '$1 != 1 { bad = 1 } END { exit bad }' || fail "an https sensor registered more than once: $REGS"
ep_log "OK"
