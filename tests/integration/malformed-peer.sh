#!/bin/bash
# A scripted peer answers the agent's requests with malformed responses: the agent logs a
# clear error, retries, never crashes and never commits; a valid answer at the end is
# accepted.  The peer is a plain mosquitto (no plugin) plus mosquitto_sub/mosquitto_pub.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
command -v mosquitto_sub > /dev/null || skip "mosquitto-clients not installed"

pki_create "$WORK/pki"
BROKER_ANONYMOUS=true start_broker ""

P="$WORK/replies"
mkdir -p "$P"
printf '200 {not json'                                            > "$P/1"
printf '202 {"operationId": 5, "status": []}'                     > "$P/2"
printf '200 %s' "$(printf '[%.0s' $(seq 1 200))"                   > "$P/3"
printf '200 {"operationId":"op1","status":"assigned","registrationState":{"registrationId":"gw1","status":"assigned"}}' > "$P/4"
printf '202 '                                                     > "$P/5"
head -c 200000 /dev/zero | tr '\0' 'a' | sed 's/^/200 "/; s/$/"/' > "$P/6"
printf '200 {"operationId":"op1","status":"assigned","registrationState":{"registrationId":"gw1","assignedHub":"hub-z.example.test","deviceId":"gw1","status":"assigned","substatus":"initialAssignment"}}' > "$P/7"

sub() { mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" "$@"; }
pub() { mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" "$@"; }

(
        for f in "$P"/1 "$P"/2 "$P"/3 "$P"/4 "$P"/5 "$P"/6 "$P"/7; do
                line=$(sub -i "peer-sub" -t '$dps/registrations/PUT/#' -t '$dps/registrations/GET/#' -v -C 1 -W 60) || exit 1
                topic=${line%% *}
                rid=$(printf '%s' "$topic" | sed -n 's/.*[?&]\$rid=\([^&]*\).*/\1/p')
                status=$(head -c 3 "$f")
                tail -c +5 "$f" > "$f.body"
                pub -i "peer-pub" -t "\$dps/registrations/res/$status/?\$rid=$rid" -f "$f.body" || exit 1
                echo "answered rid=$rid with $(basename "$f")"
        done
) > "$WORK/peer.log" 2>&1 &
PEER_PID=$!
ep_track "$PEER_PID"
wait_for 10 log_has "$WORK/broker/mosquitto.log" 'peer-sub 0 \$dps/registrations/PUT/#' || fail "peer did not subscribe"

printf '%s' "$(new_key)" > "$WORK/dps-key"
chmod 0600 "$WORK/dps-key"
AGENT_RETRY_MAX=1 write_agent_conf "$WORK/edgeprovd.conf" "$WORK/state" "$WORK/dps-key"
start_agent "$WORK/edgeprovd.conf" "$WORK/agent.log"

# The peer re-subscribes between answers, so an attempt may go unanswered: the agent's
# request timeout (10 s) covers that.  Seven answers fit well within 120 s.
wait_for 120 test -s "$WORK/state/state.json" || fail "the agent never accepted the final valid answer"
kill -0 "$AGENT_PID" || fail "edgeprovd died"
grep -q "Malformed response" "$WORK/agent.log" || fail "malformed JSON not reported"
grep -q "without assignedHub/deviceId" "$WORK/agent.log" || fail "incomplete assignment not reported"
grep -q "Oversized response\|Malformed response.*200001 bytes\|Malformed response.*20000[0-9] bytes" "$WORK/agent.log" \
        || fail "oversized response not reported"
[ "$(json_get "$WORK/state/state.json" assignedHub)" = hub-z.example.test ] || fail "wrong hub committed"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly"
echo "PASS: malformed answers reported and survived; valid answer committed"
