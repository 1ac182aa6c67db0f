#!/bin/bash
# After a committed assignment the agent starts without the service and serves it at once;
# a changed identity (another key) makes it provision again.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"

pki_create "$WORK/pki"
KEY=$(new_key)
service_init "$WORK/data.json" hub-a.example.test
enroll "$WORK/data.json" gw1 "$KEY"
start_broker "$WORK/data.json"

printf '%s' "$KEY" > "$WORK/dps-key"
chmod 0600 "$WORK/dps-key"
write_agent_conf "$WORK/edgeprovd.conf" "$WORK/state" "$WORK/dps-key"
start_agent "$WORK/edgeprovd.conf" "$WORK/agent1.log"
wait_for 20 test -s "$WORK/state/state.json" || fail "no state file after the first start"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly"
before=$(sha256sum < "$WORK/state/state.json")

stop_broker
port_open "$BROKER_PORT" && fail "the broker is still listening"

start_agent "$WORK/edgeprovd.conf" "$WORK/agent2.log"
wait_for 5 log_has "$WORK/agent2.log" "Using the committed assignment" || fail "committed assignment not served"
sleep 1
kill -0 "$AGENT_PID" || fail "edgeprovd exited while the service is down"
log_has "$WORK/agent2.log" "Provisioning 'gw1' at" && fail "the agent contacted the service although it had an assignment"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly"
[ "$before" = "$(sha256sum < "$WORK/state/state.json")" ] || fail "the state file changed on an offline start"

# service still down, identity changed: the agent keeps the old assignment, retries with backoff, stays up
KEY2=$(new_key)
printf '%s' "$KEY2" > "$WORK/dps-key"
start_agent "$WORK/edgeprovd.conf" "$WORK/agent3.log"
wait_for 10 log_has "$WORK/agent3.log" "identity configuration changed" || fail "identity change not noticed"
wait_for 15 log_has "$WORK/agent3.log" "retrying in" || fail "no retry while the service is down"
kill -0 "$AGENT_PID" || fail "edgeprovd exited while the service is down"
[ "$before" = "$(sha256sum < "$WORK/state/state.json")" ] || fail "the old assignment was destroyed before a new one"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly"
echo "PASS: offline start served the committed assignment; identity change kept it until replaced"
