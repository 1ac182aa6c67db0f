#!/bin/bash
# SPDX-License-Identifier: MIT
# TPM attestation, reprovisioning ON REQUEST over D-Bus: swtpm + edgeprovd on a private
# dbus-daemon + mosquitto with edgeprov_dps.so.  Reprovision("operator test") runs a new TPM
# challenge, puts the new key into the other A/B slot, commits the assignment and emits
# PropertiesChanged; the old slot's key is untouched.  A Reprovision while the TPM is
# unreachable keeps the previous identity and assignment and reports LastError; when the TPM
# is back the retry alternates the slot again.  No transient handle or session is left.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/tpm-lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/bus-lib.sh"
command -v tpm2_readpublic > /dev/null || skip "tpm2_readpublic is not installed (tpm2-tools)"

GW=/io/edgeprov/Gateway1
IF=io.edgeprov.Gateway1
call() { busctl --address="$BUS_ADDRESS" call io.edgeprov.Gateway1 "$@"; }
prop() { bget "$BUS_ADDRESS" "$GW" "$IF" "$1"; }
prop_is() { [ "$(prop "$1")" = "$2" ]; }
prop_gt() { [ "$(prop "$1")" -gt "$2" ]; }
prop_set() { [ -n "$(prop "$1")" ]; }
count() { grep -c -- "$2" "$1" || true; }
count_above() { [ "$(count "$1" "$2")" -gt "$3" ]; }
# PropertiesChanged signals of the gateway object naming VALUE, as seen by the bus monitor
pc_count() { grep '"member":"PropertiesChanged"' "$WORK/monitor.json" | grep -F "\"path\":\"$GW\"" | grep -c -- "$1" || true; }
pc_above() { [ "$(pc_count "$1")" -gt "$2" ]; }
key_public() { tpm2_readpublic -T "$TPM_TCTI" -c "$1" | sha256sum; }

swtpm_manufacture
swtpm_start
pki_create "$WORK/pki"
service_init "$WORK/data.json" hub-a.example.test
tpm_enroll_gateway
start_broker "$WORK/data.json"
write_tpm_conf
state=$WORK/state/state.json
BLOG=$WORK/broker/mosquitto.log

start_bus bus open
busctl --address="$BUS_ADDRESS" monitor --json=short > "$WORK/monitor.json" 2> "$WORK/monitor.err" &
ep_track $!
sleep 0.5

LOG_TARGET=console "$EDGEPROVD" --config "$WORK/edgeprovd.conf" --bus-address="$BUS_ADDRESS" > "$WORK/agent.log" 2>&1 &
AGENT_PID=$!
ep_track "$AGENT_PID"
ALOG=$WORK/agent.log

# 1. first provisioning, slot A
wait_for 30 prop_is State assigned || fail "not assigned: $(prop State)"
[ "$(json_get "$state" tpmKeySlot)" = 0x81000100 ] || fail "first key not in slot A: $(cat "$state")"
[ "$(prop Attestation)" = tpm ] || fail "Attestation: $(prop Attestation)"
at1=$(prop ProvisionedAt)
[ "$at1" -gt 1700000000000000 ] || fail "ProvisionedAt: $at1"
# edgeprovd opens the TPM only while it uses it: idle, the TPM is free for the tools
pub_a=$(key_public 0x81000100)
challenges=$(count "$BLOG" "challenge issued")
[ "$challenges" -ge 1 ] || fail "service did not log the challenge"
pc_prov=$(pc_count '"provisioning"')
pc_assigned=$(pc_count '"assigned"')
sleep 1.1        # ProvisionedAt has a resolution of one second

# 2. Reprovision on request: new challenge, slot B, committed, properties changed
t0=$(date +%s%N)
call $GW $IF Reprovision s "operator test"
wait_for 5 log_has "$ALOG" "Provisioning again on request (operator test)" || fail "Reprovision not logged"
wait_for 30 prop_gt ProvisionedAt "$at1" || fail "ProvisionedAt did not change: $(prop State) $(prop LastError)"
t1=$(date +%s%N)
[ "$(prop State)" = assigned ] || fail "State after Reprovision: $(prop State)"
[ -z "$(prop LastError)" ] || fail "LastError after Reprovision: $(prop LastError)"
[ "$(prop AssignedHub)" = hub-a.example.test ] || fail "AssignedHub: $(prop AssignedHub)"
[ "$(count "$BLOG" "challenge issued")" -gt "$challenges" ] || fail "no new TPM challenge"
grep -q 'challenge activated, HMAC key persisted at 0x81000101 (active key kept in its slot)' "$ALOG" ||
        fail "new key not activated into slot B next to the active one"
# the key went to B before the assignment was committed, and A was the active key until then
act=$(grep -n 'persisted at 0x81000101' "$ALOG" | head -n 1 | cut -d: -f1)
com=$(grep -n 'start to assigned .*key slot 0x81000101' "$ALOG" | head -n 1 | cut -d: -f1)
[ -n "$act" ] && [ -n "$com" ] && [ "$act" -lt "$com" ] || fail "activation/commit order: '$act' '$com'"
[ "$(json_get "$state" tpmKeySlot)" = 0x81000101 ] || fail "state.json slot after Reprovision: $(cat "$state")"
# the timing counts from the request, not from the daemon's start
ms=$(sed -n 's/.*start to assigned \([0-9]*\)\..*key slot 0x81000101.*/\1/p' "$ALOG" | head -n 1)
[ -n "$ms" ] && [ "$ms" -le $(((t1 - t0) / 1000000)) ] || fail "reprovision timing $ms ms exceeds the $(((t1 - t0) / 1000000)) ms since the request"
grep 'start to assigned .*0x81000101' "$ALOG" | sed 's/^/timing: /' >&2
[ "$(json_get "$state" deviceId)" = gw-tpm ] || fail "state.json deviceId: $(cat "$state")"
wait_for 5 pc_above '"provisioning"' "$pc_prov" || fail "no PropertiesChanged(State=provisioning)"
wait_for 5 pc_above '"assigned"' "$pc_assigned" || fail "no PropertiesChanged(State=assigned)"
grep '"member":"PropertiesChanged"' "$WORK/monitor.json" | grep -F "\"path\":\"$GW\"" | grep -q ProvisionedAt ||
        fail "no PropertiesChanged(ProvisionedAt)"
[ "$(key_public 0x81000100)" = "$pub_a" ] || fail "the old key in slot A was replaced"
pub_b=$(key_public 0x81000101)

# 3. Reprovision while the TPM is unreachable: previous identity and assignment intact, LastError
cp "$state" "$WORK/state-before.json"
at2=$(prop ProvisionedAt)
swtpm_stop
"$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" reprovision --reason "tpm gone" > /dev/null || fail "edgeprovctl reprovision"
wait_for 20 log_has "$ALOG" "Cannot open the TPM" || fail "TPM loss not logged"
wait_for 10 prop_set LastError || fail "no LastError on D-Bus while the TPM is gone"
prop LastError | grep -q "the TPM could not activate the authenticationKey: Connection refused" ||
        fail "LastError does not name the cause: $(prop LastError)"
wait_for 10 prop_is State retrying || fail "State while the TPM is gone: $(prop State)"
[ "$(prop AssignedHub)" = hub-a.example.test ] || fail "AssignedHub lost: $(prop AssignedHub)"
[ "$(prop DeviceId)" = gw-tpm ] || fail "DeviceId lost: $(prop DeviceId)"
[ "$(prop ProvisionedAt)" = "$at2" ] || fail "ProvisionedAt changed without an assignment"
cmp -s "$state" "$WORK/state-before.json" || fail "state.json changed: $(cat "$state")"
# the TPM comes back on the same port: the retry goes into the slot not in use (A), B stays
swtpm socket --tpm2 --server "type=tcp,port=$SWTPM_PORT,bindaddr=127.0.0.1" \
        --ctrl "type=tcp,port=$SWTPM_CTRL,bindaddr=127.0.0.1" --tpmstate "dir=$WORK/tpm/state" \
        --flags not-need-init,startup-clear --log "file=$WORK/swtpm2.log,level=1" &
SWTPM_PID=$!
ep_track "$SWTPM_PID"
wait_for 30 prop_gt ProvisionedAt "$at2" || fail "not assigned after the TPM came back: $(prop LastError)"
[ "$(prop State)" = assigned ] || fail "State after recovery: $(prop State)"
[ -z "$(prop LastError)" ] || fail "LastError not cleared: $(prop LastError)"
[ "$(json_get "$state" tpmKeySlot)" = 0x81000100 ] || fail "slot after recovery: $(cat "$state")"

# 4. edgeprovd stopped: no transient object or session, both slots, B's key untouched, A's new
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly"
[ "$(tpm_count handles-transient)" = 0 ] || fail "transient objects left: $(tpm2_getcap -T "$TPM_TCTI" handles-transient)"
[ "$(tpm_count handles-loaded-session)" = 0 ] || fail "sessions left: $(tpm2_getcap -T "$TPM_TCTI" handles-loaded-session)"
for h in 0x81000001 0x81010001 0x81000100 0x81000101; do
        tpm_has_persistent "$h" || fail "persistent handle $h missing"
done
[ "$(key_public 0x81000101)" = "$pub_b" ] || fail "the key in slot B changed during the failed/retried reprovisioning"
[ "$(key_public 0x81000100)" != "$pub_a" ] || fail "slot A still holds the first key after the third provisioning"

grep -q "sig=" "$ALOG" "$BLOG" "$WORK/monitor.json" && fail "a SAS signature appears in a log"
echo "PASS: TPM Reprovision over D-Bus: new challenge, A/B slots, PropertiesChanged, TPM unreachable, no handles left"
