#!/bin/bash
# First provisioning end to end: real mosquitto + edgeprov_dps.so, real edgeprovd.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"

pki_create "$WORK/pki"
KEY=$(new_key)
service_init "$WORK/data.json" hub-a.example.test
enroll "$WORK/data.json" gw1 "$KEY" --device-id gw1-device
start_broker "$WORK/data.json"

mkdir -m 0700 "$WORK/creds"
printf '%s\n' "$KEY" > "$WORK/creds/dps-key"
chmod 0600 "$WORK/creds/dps-key"
write_agent_conf "$WORK/edgeprovd.conf" "$WORK/state" "dps-key"
"$EDGEPROVD" --config "$WORK/edgeprovd.conf" --check-config > /dev/null 2>&1 && \
        fail "--check-config accepted a config whose key is not found (CREDENTIALS_DIRECTORY unset)" || true

export CREDENTIALS_DIRECTORY="$WORK/creds"
"$EDGEPROVD" --config "$WORK/edgeprovd.conf" --check-config > /dev/null || fail "--check-config rejected a valid config"

# listen for sd_notify messages like systemd does
if command -v socat > /dev/null; then
        socat -u "UNIX-RECV:$WORK/notify.sock" - > "$WORK/notify.out" 2> "$WORK/socat.log" &
        ep_track $!
        wait_for 5 test -S "$WORK/notify.sock" || fail "socat did not create the notify socket"
        export NOTIFY_SOCKET="$WORK/notify.sock"
fi
start_agent "$WORK/edgeprovd.conf" "$WORK/agent.log"
unset NOTIFY_SOCKET
wait_for 20 test -s "$WORK/state/state.json" || fail "no state file after 20 s"
wait_for 5 log_has "$WORK/agent.log" "assigned to hub" || fail "agent did not log the assignment"

state="$WORK/state/state.json"
[ "$(json_get "$state" registrationId)" = gw1 ] || fail "registrationId in state: $(cat "$state")"
[ "$(json_get "$state" deviceId)" = gw1-device ] || fail "deviceId in state: $(cat "$state")"
[ "$(json_get "$state" assignedHub)" = hub-a.example.test ] || fail "assignedHub in state: $(cat "$state")"
[ "$(json_get "$state" substatus)" = initialAssignment ] || fail "substatus in state: $(cat "$state")"
[ "$(stat -c %a "$state")" = 600 ] || fail "state file mode is $(stat -c %a "$state"), expected 600"
ls -a "$WORK/state" | grep -q '^\.#' && fail "temporary files left in the state directory"

if [ -f "$WORK/notify.out" ]; then
        wait_for 5 grep -q "STATUS=Assigned to hub-a.example.test as gw1-device" "$WORK/notify.out" ||
                fail "no STATUS= for the assignment: $(tr '\n' ' ' < "$WORK/notify.out")"
        grep -q "READY=1" "$WORK/notify.out" || fail "no READY=1"
        grep -q "STATUS=Provisioning at 127.0.0.1" "$WORK/notify.out" || fail "no STATUS= while provisioning"
fi

# the daemon stays up after the assignment and stops cleanly
kill -0 "$AGENT_PID" || fail "edgeprovd exited after the assignment"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly on SIGTERM"

"$EDGEPROVCTL" --state-dir "$WORK/state" status > "$WORK/status.out" || fail "edgeprovctl status failed"
grep -q "Assigned hub: hub-a.example.test" "$WORK/status.out" || fail "edgeprovctl: $(cat "$WORK/status.out")"

# secrets never reach the logs
grep -qF "$KEY" "$WORK/agent.log" "$WORK/broker/mosquitto.log" && fail "the key appears in a log"
grep -q "sig=" "$WORK/agent.log" "$WORK/broker/mosquitto.log" && fail "a SAS signature appears in a log"
echo "PASS: provisioned gw1 → $(json_get "$state" assignedHub) as $(json_get "$state" deviceId)"
