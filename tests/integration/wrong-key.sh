#!/bin/bash
# A wrong key is rejected with a clear error (401 / 401002) and nothing is written.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"

pki_create "$WORK/pki"
service_init "$WORK/data.json" hub-a.example.test
enroll "$WORK/data.json" gw1 "$(new_key)"
start_broker "$WORK/data.json"

printf '%s' "$(new_key)" > "$WORK/dps-key"
chmod 0600 "$WORK/dps-key"

# fail_fast: the daemon exits with status 2
write_agent_conf "$WORK/ff.conf" "$WORK/state" "$WORK/dps-key" "        fail_fast = true;"
start_agent "$WORK/ff.conf" "$WORK/agent-ff.log"
rc=0
wait "$AGENT_PID" || rc=$?
[ "$rc" = 2 ] || fail "edgeprovd with fail_fast exited with $rc, expected 2"
grep -q "rejected.*401.*401002" "$WORK/agent-ff.log" || fail "no clear 401/401002 error: $(cat "$WORK/agent-ff.log")"
[ ! -e "$WORK/state/state.json" ] || fail "a state file was written for a rejected registration"

# default: the daemon stays up, reports the rejection and retries slowly
write_agent_conf "$WORK/edgeprovd.conf" "$WORK/state" "$WORK/dps-key"
start_agent "$WORK/edgeprovd.conf" "$WORK/agent.log"
wait_for 15 log_has "$WORK/agent.log" "rejected" || fail "rejection not logged"
kill -0 "$AGENT_PID" || fail "edgeprovd exited after a rejection without fail_fast"
[ ! -e "$WORK/state/state.json" ] || fail "a state file was written for a rejected registration"

# a key file readable by others is refused before anything is sent
chmod 0644 "$WORK/dps-key"
rc=0
LOG_TARGET=console "$EDGEPROVD" --config "$WORK/edgeprovd.conf" > "$WORK/perm.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "a world-readable key file was accepted (rc=$rc)"
grep -q "accessible to other users" "$WORK/perm.log" || fail "unclear error for a world-readable key: $(cat "$WORK/perm.log")"
echo "PASS: wrong key rejected with 401002, nothing written"
