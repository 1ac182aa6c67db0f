#!/bin/bash
# Crash consistency of the agent (issue 8): the gateway plus 200 downstream sensors (an
# inventory in a drop-in) against mosquitto + edgeprov_dps.so with its SQLite record store;
# edgeprovd is killed with SIGKILL at a random moment 100 times and restarted each time.
# After every kill the state files must be readable (valid JSON, no temporary files left
# visible as records); at the end every sensor is assigned exactly once on both sides (the
# service's records equal the agent's), and no committed identity registered again.
# Prints: kills, sensors, lost, duplicated (register requests beyond one per sensor).
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
command -v jq > /dev/null || skip "jq is not installed"

N=${KILL_LOOP_SENSORS:-200}
KILLS=${KILL_LOOP_KILLS:-100}
# few in flight, so that the registrations span most of the kills (with 16 all 200 were
# assigned by about the 17th kill)
CONCURRENCY=${KILL_LOOP_CONCURRENCY:-4}

crash_fleet_setup kl-sensor "$N" "$CONCURRENCY"
seq -f 'kl-sensor-%03g' 1 "$N" | sort > "$WORK/expected"

# state_readable: state.json and every sensor record parse; no record is half written
state_readable() {
        local f
        if [ -e "$WORK/state/state.json" ]; then
                jq -e '.version and (.gateway // .).registrationId' "$WORK/state/state.json" > /dev/null 2>&1 || {
                        ep_log "state.json unreadable after kill $1: $(head -c 300 "$WORK/state/state.json")"
                        return 1
                }
                [ "$(stat -c %a "$WORK/state/state.json")" = 600 ] || { ep_log "state.json not 0600"; return 1; }
        fi
        [ -d "$WORK/state/devices" ] || return 0
        # one jq over all records: any parse error fails
        if ! find "$WORK/state/devices" -maxdepth 1 -name '*.json' -print0 | xargs -0 -r jq -e -s \
                'all(.[]; .registrationId and .state)' > /dev/null 2> "$WORK/jq.err"; then
                ep_log "a sensor record is unreadable after kill $1: $(head -n 3 "$WORK/jq.err")"
                return 1
        fi
}
assigned_count() { { grep -l '"state":"assigned"' "$WORK/state/devices/"*.json 2> /dev/null || true; } | wc -l; }
all_assigned() { [ "$(assigned_count)" -ge "$N" ]; }

GW_DEVICE=
T0=$SECONDS
kills=0
early=0
for i in $(seq 1 "$KILLS"); do
        LOG_TARGET=console "$EDGEPROVD" --config "$WORK/edgeprovd.conf" --bus-address=none >> "$WORK/agent.log" 2>&1 &
        AGENT_PID=$!
        ep_track "$AGENT_PID"
        # a random moment: 0 .. 1 s after the start, a quarter of them 0.6 s later (retry-after
        # is 1 s, so kills land before, during and after the polls; the first ones land before
        # the gateway itself is provisioned)
        sleep "$(printf '0.%03d' $((RANDOM % 1000)))"
        [ $((RANDOM % 4)) = 0 ] && sleep 0.6
        # on a slow machine (sanitizers, load) the gateway's own registration (connect, 202,
        # retry-after, poll) may not fit: after 3 kills without it, give it longer
        [ -e "$WORK/state/state.json" ] || [ "$i" -le 3 ] || sleep "$(printf '%d.%03d' $((1 + i % 3)) $((RANDOM % 1000)))"
        if kill -0 "$AGENT_PID" 2> /dev/null; then
                kill -KILL "$AGENT_PID"
                kills=$((kills + 1))
        else
                early=$((early + 1))
        fi
        wait "$AGENT_PID" 2> /dev/null || true
        state_readable "$i" || fail "state unreadable after kill $i"
        [ -n "${ALL_AT:-}" ] || [ "$(assigned_count)" -lt "$N" ] || ALL_AT=$i
        if [ -z "$GW_DEVICE" ] && [ -e "$WORK/state/state.json" ]; then
                GW_DEVICE=$(jq -r '(.gateway // .).deviceId' "$WORK/state/state.json")
                GW_ETAG=$(jq -c '(.gateway // .) | [.registrationId, .deviceId, .assignedHub]' "$WORK/state/state.json")
        elif [ -n "$GW_DEVICE" ]; then
                [ "$(jq -c '(.gateway // .) | [.registrationId, .deviceId, .assignedHub]' "$WORK/state/state.json")" = "$GW_ETAG" ] ||
                        fail "the gateway's committed assignment changed after kill $i"
        fi
done
[ "$early" = 0 ] || fail "edgeprovd exited $early time(s) on its own during the loop (see agent.log)"
[ -n "$GW_DEVICE" ] || fail "the gateway was never provisioned during $KILLS kills"
AT_LAST_KILL=$(assigned_count)
T_LOOP=$((SECONDS - T0))

# the final run completes the rest
started_before=$(grep -c 'Using the committed assignment' "$WORK/agent.log" || true)
started() { [ "$(grep -c 'Using the committed assignment' "$WORK/agent.log")" -gt "$started_before" ]; }
LOG_TARGET=console "$EDGEPROVD" --config "$WORK/edgeprovd.conf" --bus-address=none >> "$WORK/agent.log" 2>&1 &
AGENT_PID=$!
ep_track "$AGENT_PID"
wait_for 180 all_assigned || fail "only $(assigned_count) of $N sensors assigned after the kills"
# stop it only once it is up (a SIGTERM before its handlers are installed is not a clean stop)
wait_for 30 started || fail "the last edgeprovd did not start"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly after the loop"
state_readable final || fail "state unreadable at the end"

# the agent's view: exactly the N inventory sensors, each assigned once
ls "$WORK/state/devices" | grep '\.json$' | sed 's/\.json$//' | sort > "$WORK/agent-ids"
diff -q "$WORK/expected" "$WORK/agent-ids" > /dev/null || fail "sensor records lost or added: $(diff "$WORK/expected" "$WORK/agent-ids" | head)"
find "$WORK/state" -name '*.tmp*' -o -name '.#*' | grep -q . && fail "temporary files left: $(find "$WORK/state" -name '*.tmp*' -o -name '.#*')"
jq -r -s 'map(select(.state == "assigned")) | .[] | [.registrationId, .deviceId, .assignedHub] | @tsv' \
        "$WORK/state/devices/"*.json | sort > "$WORK/agent-view"
LOST=$((N - $(wc -l < "$WORK/agent-view")))

# the service's view, from its database (the broker is still running: WAL readers are fine)
"$DPSCTL" --data "$WORK/data.json" --db "$DB" --json registration list > "$WORK/service.json" ||
        fail "registration list failed"
jq -r '(if type == "array" then . else (.registrations // .) end) | .[] |
        select(.registrationId | startswith("kl-sensor-")) |
        [.registrationId, .deviceId, .assignedHub, .status] | @tsv' "$WORK/service.json" | sort > "$WORK/service-view4"
awk -F'\t' '$4 != "assigned"' "$WORK/service-view4" | grep -q . && fail "service records not assigned: $(awk -F'\t' '$4 != "assigned"' "$WORK/service-view4" | head -n 3)"
cut -f1-3 "$WORK/service-view4" > "$WORK/service-view"
diff -q "$WORK/agent-view" "$WORK/service-view" > /dev/null ||
        fail "the service's records and the agent's state disagree: $(diff "$WORK/agent-view" "$WORK/service-view" | head)"
[ "$(wc -l < "$WORK/service-view")" = "$N" ] || fail "the service holds $(wc -l < "$WORK/service-view") sensor records, not $N"
sqlite3 "$DB" 'PRAGMA integrity_check;' | grep -qx ok || fail "registrations.db integrity_check failed"

# register requests per identity, from the service's log (one "assigned" line per register request)
grep -o "Registration 'kl-sensor-[0-9]*' assigned" "$WORK/broker/mosquitto.log" | sed "s/Registration '//; s/' assigned//" |
        sort | uniq -c | awk '{print $2, $1}' > "$WORK/register-counts"
[ "$(wc -l < "$WORK/register-counts")" = "$N" ] || fail "register requests seen for $(wc -l < "$WORK/register-counts") sensors, not $N"
DUP_IDS=$(awk '$2 > 1' "$WORK/register-counts" | wc -l)
DUP_REQ=$(awk '$2 > 1 {s += $2 - 1} END {print s + 0}' "$WORK/register-counts")
GW_REGS=$(grep -c "Registration 'gw1' assigned" "$WORK/broker/mosquitto.log" || true)
# an identity registers again only when the kill fell between the service's answer and the
# agent's commit of the operation id: at most one repeat per sensor in flight per kill, and
# a sensor is never registered again once its assignment was committed
# (measured: 0..25 for 100 kills; the agent persists the operation id before it polls, so
# a restart polls instead of registering again; without that it was ~10 per kill)
[ "$DUP_REQ" -le "$kills" ] || fail "$DUP_REQ repeated register requests for $kills kills (more than one per kill)"
MAX_PER_ID=$(awk '{print $2}' "$WORK/register-counts" | sort -n | tail -n 1)
ep_log "register requests per sensor: max $MAX_PER_ID; gateway registered $GW_REGS time(s)"
[ "$GW_REGS" -le 1 ] || ep_log "note: the gateway registered $GW_REGS times (kills before its commit)"
[ "$LOST" = 0 ] || fail "$LOST sensors lost"
grep -qF "$GKEY" "$WORK/agent.log" "$WORK/broker/mosquitto.log" && fail "the group key appears in a log"
grep -qF "$KEY" "$WORK/agent.log" "$WORK/broker/mosquitto.log" && fail "the gateway key appears in a log"
echo "PASS: kills=$kills sensors=$N lost=$LOST duplicated=$DUP_REQ (on $DUP_IDS sensors, max $MAX_PER_ID register requests for one) assigned-at-last-kill=$AT_LAST_KILL (all by kill ${ALL_AT:-none}) loop=${T_LOOP}s total=$((SECONDS - T0))s"
