#!/bin/bash
# Crash consistency of the local service's record store (issue 8): edgeprovd registers the
# gateway and 300 downstream sensors through mosquitto + edgeprov_dps.so with
# plugin_opt_registrations_db while mosquitto is killed with SIGKILL at random moments (20
# times) and restarted on the same port.  After every kill the database passes
# `PRAGMA integrity_check`; at the end every sensor is assigned, the service's records equal
# the agent's state, and polls of operations answered before a kill still work (the agent
# completes without re-registering those).
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
command -v jq > /dev/null || skip "jq is not installed"
command -v sqlite3 > /dev/null || skip "sqlite3 is not installed"

N=${BROKER_KILL_SENSORS:-300}
KILLS=${BROKER_KILL_KILLS:-20}

crash_fleet_setup bk-sensor "$N" 8

assigned_count() { { grep -l '"state":"assigned"' "$WORK/state/devices/"*.json 2> /dev/null || true; } | wc -l; }
all_assigned() { [ "$(assigned_count)" -ge "$N" ]; }
db_ok() {
        local out
        out=$(sqlite3 "$DB" 'PRAGMA integrity_check;' 2>&1) || { ep_log "sqlite3: $out"; return 1; }
        [ "$out" = ok ] || { ep_log "integrity_check: $out"; return 1; }
}

T0=$SECONDS
start_agent "$WORK/edgeprovd.conf" "$WORK/agent.log"
wait_for 30 test -s "$WORK/state/state.json" || fail "gateway not provisioned"
kills=0
while [ "$kills" -lt "$KILLS" ]; do
        # a random moment: 0.2 .. 1.7 s of service
        sleep "$(printf '%d.%03d' $((RANDOM % 2)) $((RANDOM % 1000)))"
        sleep 0.2
        kill -KILL "$BROKER_PID"
        wait "$BROKER_PID" 2> /dev/null || true
        kills=$((kills + 1))
        db_ok || fail "registrations.db corrupt after kill $kills"
        # the same configuration, the same port (mosquitto listens with SO_REUSEADDR)
        mosquitto -c "$WORK/broker/mosquitto.conf" >> "$WORK/broker/stdout.log" 2>&1 &
        BROKER_PID=$!
        ep_track "$BROKER_PID"
        wait_for 20 port_open "$BROKER_PORT" || fail "mosquitto did not come back after kill $kills"
done
AT_LAST_KILL=$(assigned_count)
wait_for 180 all_assigned || fail "only $(assigned_count) of $N sensors assigned after $kills broker kills"
kill -0 "$AGENT_PID" || fail "edgeprovd exited while the broker was being killed"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly"
db_ok || fail "registrations.db corrupt at the end"

jq -r -s '.[] | select(.state == "assigned") | [.registrationId, .deviceId, .assignedHub] | @tsv' \
        "$WORK/state/devices/"*.json | sort > "$WORK/agent-view"
"$DPSCTL" --data "$WORK/data.json" --db "$DB" --json registration list > "$WORK/service.json" ||
        fail "registration list failed"
jq -r '(if type == "array" then . else (.registrations // .) end) | .[] |
        select(.registrationId | startswith("bk-sensor-")) | select(.status == "assigned") |
        [.registrationId, .deviceId, .assignedHub] | @tsv' "$WORK/service.json" | sort > "$WORK/service-view"
[ "$(wc -l < "$WORK/agent-view")" = "$N" ] || fail "the agent has $(wc -l < "$WORK/agent-view") assigned sensors, not $N"
diff -q "$WORK/agent-view" "$WORK/service-view" > /dev/null ||
        fail "the service's records and the agent's state disagree: $(diff "$WORK/agent-view" "$WORK/service-view" | head)"
# the gateway's record survived every kill
jq -e '(if type == "array" then . else (.registrations // .) end) | map(select(.registrationId == "gw1" and
        .status == "assigned" and .deviceId == "gw1-device")) | length == 1' "$WORK/service.json" > /dev/null ||
        fail "the gateway's record is missing or changed"
REGS=$(grep -c "Registration 'bk-sensor-[0-9]*' assigned" "$WORK/broker/mosquitto.log" || true)
echo "PASS: broker kills=$kills sensors=$N lost=0, db intact after every kill; $REGS register requests for $N sensors ($AT_LAST_KILL assigned at the last kill) in $((SECONDS - T0))s"
