#!/bin/bash
# Faults of the network and the service (issue 8), each a separate part:
#  1. unreachable at boot with no assignment: READY=1 anyway, the daemon stays up, retries with
#     backoff and jitter (delays vary, never above retry_max), NextRetry on D-Bus lies in the
#     future and STATUS= says when; the service appearing later is used (no restart loop);
#  2. unreachable at boot with a committed assignment: READY=1 and the assignment at once,
#     without contacting the service;
#  3. the broker restarted in the middle of a registration (after the 202, before the poll):
#     the registration completes;
#  4. the service's clock far ahead (plugin_opt_clock_offset): the SAS token is refused as
#     expired; the agent says so (and that a clock is off) on D-Bus, in STATUS= and in the log,
#     and retries only every retry_max instead of looping.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/bus-lib.sh"
command -v socat > /dev/null || skip "socat is not installed"

GW=/io/edgeprov/Gateway1
IF=io.edgeprov.Gateway1
pki_create "$WORK/pki"
KEY=$(new_key)
service_init "$WORK/data.json" hub-a.example.test
enroll "$WORK/data.json" gw1 "$KEY" --device-id gw1-device
enroll "$WORK/data.json" gw2 "$KEY" --device-id gw2-device
enroll "$WORK/data.json" gw3 "$KEY" --device-id gw3-device
printf '%s' "$KEY" > "$WORK/dps-key"
chmod 0600 "$WORK/dps-key"
start_bus bus open

# notify_listen NAME: a socket that receives sd_notify() datagrams like systemd's
notify_listen() {
        socat -u "UNIX-RECV:$WORK/$1.sock" "OPEN:$WORK/$1.out,creat,append" 2> "$WORK/socat-$1.log" &
        ep_track $!
        wait_for 5 test -S "$WORK/$1.sock" || fail "socat did not create $1.sock"
}
run_agent() { # CONF LOG NOTIFY
        NOTIFY_SOCKET="$WORK/$3.sock" LOG_TARGET=console "$EDGEPROVD" --config "$1" --bus-address="$BUS_ADDRESS" \
                > "$2" 2>&1 &
        AGENT_PID=$!
        ep_track "$AGENT_PID"
}
prop() { bget "$BUS_ADDRESS" "$GW" "$IF" "$1"; }
state_is() { [ "$(prop State)" = "$1" ]; }

# ---- 1. nothing listening, no assignment
BROKER_PORT=$(random_port)
while port_open "$BROKER_PORT"; do BROKER_PORT=$(random_port); done
DOWN_PORT=$BROKER_PORT
AGENT_RETRY_MAX=4 REGISTRATION_ID=gw1 write_agent_conf "$WORK/a1.conf" "$WORK/state1" "$WORK/dps-key"
notify_listen n1
T=$SECONDS
run_agent "$WORK/a1.conf" "$WORK/agent1.log" n1
wait_for 10 grep -q READY=1 "$WORK/n1.out" || fail "no READY=1 without the service"
wait_for 15 state_is retrying || fail "State is $(prop State), not retrying"
now_us=$(($(date +%s) * 1000000))
next=$(prop NextRetry)
[ "$next" -gt "$now_us" ] && [ "$next" -lt $((now_us + 5 * 1000000)) ] || fail "NextRetry $next is not within retry_max of now ($now_us)"
[ -n "$(prop LastError)" ] || fail "LastError empty while retrying"
retries_at_least() { [ "$(grep -c 'retrying in' "$WORK/agent1.log")" -ge "$1" ]; }
wait_for 30 retries_at_least 6 || fail "fewer than 6 retries in 30 s"
kill -0 "$AGENT_PID" || fail "edgeprovd exited while the service is unreachable"
grep -q 'STATUS=Attempt [0-9]* failed (.*), retrying in [0-9]* s' "$WORK/n1.out" || fail "STATUS= does not give the next retry: $(tail -n 3 "$WORK/n1.out")"
grep -o 'retrying in [0-9.]* s' "$WORK/agent1.log" | awk '{print $3}' > "$WORK/delays"
awk '$1 > 4.05 {bad = 1} END {exit bad}' "$WORK/delays" || fail "a retry delay above retry_max: $(tr '\n' ' ' < "$WORK/delays")"
[ "$(sort -u "$WORK/delays" | wc -l)" -ge 3 ] || fail "retry delays without jitter: $(tr '\n' ' ' < "$WORK/delays")"
ATTEMPTS=$(grep -c 'retrying in' "$WORK/agent1.log")
# a refused connection is noticed at once, and waiting costs no CPU (no spinning on the socket)
grep -q 'No answer from .* while connecting' "$WORK/agent1.log" && fail "a refused connection waited for the request timeout"
CPU_TICKS=$(awk '{print $14 + $15}' "/proc/$AGENT_PID/stat")
WALL_TICKS=$(((SECONDS - T + 1) * $(getconf CLK_TCK)))
[ $((CPU_TICKS * 2)) -lt "$WALL_TICKS" ] || fail "edgeprovd used $CPU_TICKS CPU ticks in $WALL_TICKS while the service is unreachable"
# the service appears: the next retry gets through, no restart needed
# start_broker picks a random port: put the agent's port into its configuration instead
start_broker "$WORK/data.json"
sed -i "s/^listener .*/listener $DOWN_PORT 127.0.0.1/" "$WORK/broker/mosquitto.conf"
stop_broker
mosquitto -c "$WORK/broker/mosquitto.conf" >> "$WORK/broker/stdout.log" 2>&1 &
BROKER_PID=$!
ep_track "$BROKER_PID"
BROKER_PORT=$DOWN_PORT
wait_for 10 port_open "$BROKER_PORT" || fail "mosquitto did not start on $DOWN_PORT"
wait_for 20 state_is assigned || fail "not assigned after the service appeared (State $(prop State))"
[ "$(prop NextRetry)" = 0 ] || fail "NextRetry $(prop NextRetry) after the assignment"
wait_for 5 grep -q 'STATUS=Assigned to hub-a.example.test as gw1-device' "$WORK/n1.out" || fail "STATUS= not updated"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly (1)"
ep_log "1: $ATTEMPTS retries in $((SECONDS - T)) s with delays $(tr '\n' ' ' < "$WORK/delays")"

# ---- 2. service down, assignment committed: READY and the assignment at once
stop_broker
notify_listen n2
T_US=$(date +%s%N)
run_agent "$WORK/a1.conf" "$WORK/agent2.log" n2
wait_for 10 grep -q READY=1 "$WORK/n2.out" || fail "no READY=1 with a committed assignment"
wait_for 5 state_is assigned || fail "State $(prop State) with a committed assignment and no service"
READY_MS=$((($(date +%s%N) - T_US) / 1000000))
grep -q "Provisioning 'gw1' at" "$WORK/agent2.log" && fail "the agent contacted the service despite its assignment"
[ "$(prop DeviceId)" = gw1-device ] || fail "DeviceId $(prop DeviceId) offline"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly (2)"
ep_log "2: READY and State=assigned ${READY_MS} ms after the start, offline"

# ---- 3. broker restarted between the 202 and the poll (retry-after 4 s): completes
DPS_RETRY_AFTER=4 start_broker "$WORK/data.json"
REGISTRATION_ID=gw2 AGENT_RETRY_MAX=2 write_agent_conf "$WORK/a3.conf" "$WORK/state3" "$WORK/dps-key"
notify_listen n3
run_agent "$WORK/a3.conf" "$WORK/agent3.log" n3
wait_for 20 grep -q "Registration 'gw2' assigned" "$WORK/broker/mosquitto.log" || fail "gw2 never reached the service"
kill -KILL "$BROKER_PID"
wait "$BROKER_PID" 2> /dev/null || true
sleep 0.5
mosquitto -c "$WORK/broker/mosquitto.conf" >> "$WORK/broker/stdout.log" 2>&1 &
BROKER_PID=$!
ep_track "$BROKER_PID"
wait_for 10 port_open "$BROKER_PORT" || fail "mosquitto did not come back"
wait_for 40 state_is assigned || fail "gw2 not assigned after the broker restart (State $(prop State): $(prop LastError))"
[ "$(jq -r '(.gateway // .).deviceId' "$WORK/state3/state.json")" = gw2-device ] || fail "state after the broker restart: $(cat "$WORK/state3/state.json")"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly (3)"
stop_broker

# ---- 4. the service's clock two hours ahead: "SAS token expired", reported, no tight loop
printf 'plugin_opt_clock_offset 7200\n' > "$WORK/clock.conf"
start_broker "$WORK/data.json" "$WORK/clock.conf"
REGISTRATION_ID=gw3 AGENT_RETRY_MAX=3 write_agent_conf "$WORK/a4.conf" "$WORK/state4" "$WORK/dps-key"
notify_listen n4
run_agent "$WORK/a4.conf" "$WORK/agent4.log" n4
wait_for 20 state_is rejected || fail "State $(prop State) with an expired token (LastError: $(prop LastError))"
prop LastError | grep -qi "expired" || fail "LastError does not say the token expired: $(prop LastError)"
prop LastError | grep -qi "clock" || fail "LastError does not point at the clock: $(prop LastError)"
grep -qi 'STATUS=Rejected: .*expired.*clock' "$WORK/n4.out" || fail "STATUS= does not report the expiry: $(tail -n 2 "$WORK/n4.out")"
sleep 7
kill -0 "$AGENT_PID" || fail "edgeprovd exited on an expired token"
TRIES=$(grep -c "Provisioning 'gw3' at" "$WORK/agent4.log")
[ "$TRIES" -ge 2 ] && [ "$TRIES" -le 5 ] || fail "$TRIES attempts in ~8 s with retry_max 3 (expected 2..5)"
test -e "$WORK/state4/state.json" && fail "a state file was written for a refused registration"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly (4)"
stop_broker

# ---- 5. a 429 storm (the service takes 60 registrations a minute) against 80 sensors with
# the agent's own budget of 600 a minute: every 429's retry-after is honoured (no request
# before it ends), the agent's budget is never exceeded, and all sensors get through
printf 'plugin_opt_registrations_per_minute 60\n' > "$WORK/storm.conf"
# the group before the broker starts: an edit of a running service's data file is picked up
# within a second, and the first sensors would meet "no enrollment" (permanent) before that
GKEY=$(new_key)
"$DPSCTL" --data "$WORK/data.json" group add sensors --primary-key "$GKEY" > /dev/null
printf '%s' "$GKEY" > "$WORK/group-key"
chmod 0600 "$WORK/group-key"
start_broker "$WORK/data.json" "$WORK/storm.conf"
REGISTRATION_ID=gw1 write_agent_conf "$WORK/a5.conf" "$WORK/state1" "$WORK/dps-key" "};
downstream = {
        group_key_file = \"$WORK/group-key\";
        concurrency = 8;
        rate = 600;
        sensors = ( $(seq -f '"storm-%02g"' 1 80 | paste -sd,) );"
notify_listen n5
T=$SECONDS
run_agent "$WORK/a5.conf" "$WORK/agent5.log" n5
storm_done() { [ "$(grep -l '"state":"assigned"' "$WORK/state1/devices/storm-"*.json 2> /dev/null | wc -l)" = 80 ]; }
wait_for 150 storm_done || fail "only $(grep -l '"state":"assigned"' "$WORK/state1/devices/storm-"*.json 2> /dev/null | wc -l) of 80 sensors through the 429 storm"
STORM_S=$((SECONDS - T))
N429=$(grep -c "answered 429" "$WORK/agent5.log" || true)
[ "$N429" -gt 0 ] || fail "no 429 seen (the storm test tests nothing)"
# the service takes 60 at once, then one a second: with retry-after honoured the agent
# cannot have got through faster than the service's budget allows
[ "$STORM_S" -ge 18 ] || fail "80 sensors through a 60-a-minute service in ${STORM_S}s: a budget was not kept"
# no tight loop: each sensor waits retry-after (up to 60 s) after a 429; 8 in flight
[ "$N429" -lt 400 ] || fail "$N429 answers of 429 for 80 sensors: retry-after not honoured"
# the agent's own budget (600/min = 10/s, bursts of 8): registrations the service logged in any
# window of w whole seconds (w = 1..10) stay within 10·w plus the burst counted twice (once as
# the agent's, once for requests of a burst that a loaded broker logs a second later: seen
# under ASan). With sensors waiting out retry-after without a slot, the bucket is the only
# limit: without it the first 60 would reach the service within a second or two.
grep -o "^[0-9:]*: edgeprov-dps: Registration 'storm-[0-9]*' assigned" "$WORK/broker/mosquitto.log" | cut -d: -f1-3 |
        awk -F: '{ t = $1 * 3600 + $2 * 60 + $3; n[t]++; if (!(t in seen)) { seen[t] = 1; ts[++k] = t } }
                 END { for (i = 1; i <= k; i++) for (w = 1; w <= 10; w++) { c = 0
                               for (t = ts[i]; t < ts[i] + w; t++) c += n[t]
                               if (c > 16 + 10 * w) { printf "%d registrations in %d s\n", c, w; bad = 1 } }
                       exit bad }' > "$WORK/storm-windows.txt" ||
        fail "the agent's budget was exceeded: $(head -n 3 "$WORK/storm-windows.txt")"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly (5)"
ep_log "5: 80 sensors through a 60-a-minute service in ${STORM_S}s with $N429 answers of 429"
echo "PASS: unreachable (READY, $ATTEMPTS jittered retries ≤ retry_max, NextRetry, STATUS=, recovered), offline READY in ${READY_MS} ms, broker restart mid-registration completed, clock 2 h off reported ($TRIES attempts)"
