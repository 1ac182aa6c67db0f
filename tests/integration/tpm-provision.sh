#!/bin/bash
# SPDX-License-Identifier: MIT
# TPM attestation end to end: swtpm (manufactured with an EK certificate) + edgeprovd +
# mosquitto with edgeprov_dps.so.  Provision, restart from state (no TPM challenge),
# reprovision into the other key slot (A/B), an unenrolled EK, the TPM vanishing mid-flow,
# and 20 reprovisionings leaving no transient object or session in the TPM.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/tpm-lib.sh"

swtpm_manufacture
swtpm_start
pki_create "$WORK/pki"
service_init "$WORK/data.json" hub-a.example.test

BROKER_PORT=1 write_tpm_conf
"$EDGEPROVD" --config "$WORK/edgeprovd.conf" --check-config > /dev/null || fail "--check-config rejected the TPM config"
ident=$("$EDGEPROVD" --config "$WORK/edgeprovd.conf" --print-tpm-identity 2> "$WORK/ident.log") ||
        fail "--print-tpm-identity: $(cat "$WORK/ident.log")"
REGID=$(sed -n 's/^registrationId: //p' <<< "$ident")
EK=$(sed -n 's/^endorsementKey: //p' <<< "$ident")
[[ $REGID =~ ^[a-z2-7]{52}$ ]] || fail "registration id '$REGID'"
grep -q 'EK certificate matches the EK and verifies against the manufacturer CA' "$WORK/ident.log" ||
        fail "EK certificate not reported: $(cat "$WORK/ident.log")"
"$DPSCTL" --data "$WORK/data.json" enrollment add "$REGID" --tpm-ek "$EK" --device-id gw-tpm > /dev/null
start_broker "$WORK/data.json"
write_tpm_conf
state=$WORK/state/state.json

run_agent() { # LOG: runs until assigned (or the caller's check), then stops it
        start_agent "$WORK/edgeprovd.conf" "$1"
}

# 1. first provisioning
run_agent "$WORK/agent1.log"
wait_for 30 log_has "$WORK/agent1.log" "assigned to hub" || fail "not assigned"
# the TPM and TLS work ran in the helper process (src/agent/worker.h): once idle it is gone, and
# the daemon itself never mapped TSS2 or OpenSSL
no_helper() { ! pgrep -P "$AGENT_PID" -x edgeprov-worker > /dev/null; }
wait_for 30 no_helper || fail "edgeprov-worker still running after the assignment"
grep -q 'libc\.so' "/proc/$AGENT_PID/maps" || fail "cannot read the daemon's maps"
! grep -q 'libtss2\|libcrypto' "/proc/$AGENT_PID/maps" || fail "the daemon mapped TSS2 or OpenSSL"
ep_stop "$AGENT_PID" || true
[ "$(json_get "$state" deviceId)" = gw-tpm ] || fail "state: $(cat "$state")"
[ "$(json_get "$state" registrationId)" = "$REGID" ] || fail "state: $(cat "$state")"
[ "$(json_get "$state" tpmKeySlot)" = 0x81000100 ] || fail "slot: $(cat "$state")"
[ "$(json_get "$state" attestation)" = tpm ] || fail "attestation: $(cat "$state")"
grep -q 'challenge activated, HMAC key persisted at 0x81000100' "$WORK/agent1.log" || fail "no activation logged"
grep 'TPM attestation: start to assigned' "$WORK/agent1.log" | sed 's/^/timing: /' >&2
tpm_has_persistent 0x81000100 || fail "no key at 0x81000100"
grep -q "challenge issued" "$WORK/broker/mosquitto.log" || fail "service did not log the challenge"

# 2. restart: served from state, no challenge, no TPM key activation
run_agent "$WORK/agent2.log"
wait_for 10 log_has "$WORK/agent2.log" "Using the committed assignment" || fail "not served from state"
ep_stop "$AGENT_PID" || true
grep -q 'challenge activated' "$WORK/agent2.log" && fail "restart activated a challenge"

# 3. reprovisioning (identity fingerprint changed) goes into the other slot; A/B alternate
reprovision() { sed -i 's/"fingerprint": *"[^"]*"/"fingerprint": "changed"/' "$state"; }
reprovision
run_agent "$WORK/agent3.log"
wait_for 30 log_has "$WORK/agent3.log" "assigned to hub" || fail "reprovision: not assigned"
ep_stop "$AGENT_PID" || true
[ "$(json_get "$state" tpmKeySlot)" = 0x81000101 ] || fail "reprovision did not use slot B: $(cat "$state")"
tpm_has_persistent 0x81000100 || fail "slot A evicted by the reprovisioning"

# 4. an EK that is not enrolled: rejected with a clear error; the committed identity stays
"$DPSCTL" --data "$WORK/data.json" enrollment remove "$REGID" > /dev/null
tpm2_readpublic -T "$TPM_TCTI" -c 0x81000001 -o "$WORK/srk.pub" > /dev/null
"$DPSCTL" --data "$WORK/data.json" enrollment add "$REGID" --tpm-ek "$(base64 -w0 < "$WORK/srk.pub")" \
        --device-id gw-tpm > /dev/null
broker_chown "$WORK/data.json"
cp "$state" "$WORK/state-before.json"
reprovision
run_agent "$WORK/agent4.log"
wait_for 20 log_has "$WORK/agent4.log" "not the enrolled one" || fail "unenrolled EK: no clear error"
ep_stop "$AGENT_PID" || true
grep -q 'REJECTED\|rejected' "$WORK/agent4.log" || fail "not reported as rejected"
[ "$(json_get "$state" deviceId)" = gw-tpm ] || fail "previous identity lost"
[ "$(json_get "$state" tpmKeySlot)" = 0x81000101 ] || fail "active slot changed"
tpm_has_persistent 0x81000101 || fail "active key lost"
"$DPSCTL" --data "$WORK/data.json" enrollment remove "$REGID" > /dev/null
"$DPSCTL" --data "$WORK/data.json" enrollment add "$REGID" --tpm-ek "$EK" --device-id gw-tpm > /dev/null
broker_chown "$WORK/data.json"

# 5. the TPM vanishes between reading the identity and the challenge: retried, then assigned
stop_broker
run_agent "$WORK/agent5.log"
wait_for 25 log_has "$WORK/agent5.log" "retrying" || fail "agent did not retry without a broker"
swtpm_stop
old_port=$BROKER_PORT
start_broker "$WORK/data.json"
# the agent's configured port is the old one: restart the broker there
if [ "$BROKER_PORT" != "$old_port" ]; then
        stop_broker
        sed -i "s/^listener $BROKER_PORT /listener $old_port /" "$WORK/broker/mosquitto.conf"
        mosquitto -c "$WORK/broker/mosquitto.conf" > "$WORK/broker/stdout2.log" 2>&1 &
        BROKER_PID=$!
        ep_track "$BROKER_PID"
        BROKER_PORT=$old_port
        wait_for 10 port_open "$BROKER_PORT" || fail "broker did not come back on $old_port"
fi
wait_for 20 log_has "$WORK/agent5.log" "Cannot open the TPM" || fail "TPM loss not logged"
grep -q 'tcti:IO failure\|Connection refused\|cannot open TCTI' "$WORK/agent5.log" || fail "TPM error not decoded"
[ "$(json_get "$state" tpmKeySlot)" = 0x81000101 ] || fail "active slot changed while the TPM was gone"
# swtpm back on the same port
swtpm socket --tpm2 --server "type=tcp,port=$SWTPM_PORT,bindaddr=127.0.0.1" \
        --ctrl "type=tcp,port=$SWTPM_CTRL,bindaddr=127.0.0.1" --tpmstate "dir=$WORK/tpm/state" \
        --flags not-need-init,startup-clear --log "file=$WORK/swtpm2.log,level=1" &
SWTPM_PID=$!
ep_track "$SWTPM_PID"
wait_for 30 log_has "$WORK/agent5.log" "assigned to hub" || fail "not assigned after the TPM came back"
ep_stop "$AGENT_PID" || true
[ "$(json_get "$state" tpmKeySlot)" = 0x81000100 ] || fail "after recovery: $(cat "$state")"

# 6. 20 reprovisionings: no transient objects or sessions left, EK/SRK untouched
ek_before=$(tpm2_readpublic -T "$TPM_TCTI" -c 0x81010001 | sha256sum)
for i in $(seq 1 20); do
        reprovision
        run_agent "$WORK/agent-loop.log"
        wait_for 30 log_has "$WORK/agent-loop.log" "assigned to hub" || fail "loop $i: not assigned"
        ep_stop "$AGENT_PID" || true
done
[ "$(tpm_count handles-transient)" = 0 ] || fail "transient objects left: $(tpm2_getcap -T "$TPM_TCTI" handles-transient)"
[ "$(tpm_count handles-loaded-session)" = 0 ] || fail "sessions left"
[ "$(tpm2_readpublic -T "$TPM_TCTI" -c 0x81010001 | sha256sum)" = "$ek_before" ] || fail "EK changed"
persist=$(tpm2_getcap -T "$TPM_TCTI" handles-persistent)
for h in 0x81000001 0x81010001 0x81000100 0x81000101; do
        grep -qi -- "- $h\$" <<< "$persist" || fail "persistent handle $h missing: $persist"
done

# secrets never reach the logs
grep -q "sig=" "$WORK"/agent*.log "$WORK/broker/mosquitto.log" && fail "a SAS signature appears in a log"
grep -q "authenticationKey\|$(head -c 40 <<< "$EK")" "$WORK/broker/mosquitto.log" && fail "blob or EK in the broker log"
echo "PASS: TPM provisioning, restart from state, A/B slots, unenrolled EK, TPM loss, 20 reprovisionings"
