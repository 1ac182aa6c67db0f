#!/bin/bash
# The official Azure IoT Node.js provisioning SDK (azure-iot-provisioning-device,
# azure-iot-provisioning-device-mqtt, azure-iot-security-symmetric-key), unmodified, against
# mosquitto + edgeprov_dps.so over TLS with the service's CA: an individual enrollment, a group
# enrollment (derived key), and the SDK's errors for a wrong key, the group key used directly,
# an unknown registration id and a disabled enrollment.  The packages come from tests/node/package-lock.json (npm ci into
# the build directory); without npm or the registry the test is skipped (77), not failed.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/node-lib.sh"

command -v node > /dev/null || skip "node is not installed (scripts/check installs nodejs)"
command -v npm > /dev/null || skip "npm is not installed (scripts/check installs npm)"

# npm ci only when the lock file changed since the last install in this build directory
node_sdk_install node-sdk azure-iot-provisioning-device || {
        tail -n 5 "$WORK/npm.log" >&2
        skip "npm ci failed (is the npm registry reachable?); the Node SDK tests did not run"
}

# sdk_register REGID KEY OUTFILE: one SDK registration; its JSON line goes to OUTFILE
sdk_register() {
        timeout 60 node "$NODE_DIR/register.js" 127.0.0.1 "$BROKER_PORT" "$WORK/pki/ca.pem" "$ID_SCOPE" "$1" "$2" \
                > "$3" 2>> "$WORK/node.log"
}

node_sdk_enrollments
start_broker "$WORK/data.json"

# individual enrollment
sdk_register node-dev1 "$KEY" "$WORK/ind.json" || fail "individual enrollment: SDK failed: $(cat "$WORK/ind.json")"
[ "$(field "$WORK/ind.json" r.result.assignedHub)" = hub-a.example.test ] || fail "assignedHub: $(cat "$WORK/ind.json")"
[ "$(field "$WORK/ind.json" r.result.deviceId)" = node-dev1-device ] || fail "deviceId: $(cat "$WORK/ind.json")"
[ "$(field "$WORK/ind.json" r.result.registrationId)" = node-dev1 ] || fail "registrationId: $(cat "$WORK/ind.json")"
[ "$(field "$WORK/ind.json" r.result.status)" = assigned ] || fail "status: $(cat "$WORK/ind.json")"
[ "$(field "$WORK/ind.json" r.result.substatus)" = initialAssignment ] || fail "substatus: $(cat "$WORK/ind.json")"

# group enrollment: the device key is HMAC-SHA256(group key, registration id)
DEV_KEY=$("$DPSCTL" compute-key --group-key "$GROUP_KEY" node-g1)
[ -n "$DEV_KEY" ] && [ "$DEV_KEY" != "$GROUP_KEY" ] || fail "compute-key gave '$DEV_KEY'"
sdk_register node-g1 "$DEV_KEY" "$WORK/grp.json" || fail "group enrollment: SDK failed: $(cat "$WORK/grp.json")"
[ "$(field "$WORK/grp.json" r.result.assignedHub)" = hub-b.example.test ] || fail "group assignedHub: $(cat "$WORK/grp.json")"
[ "$(field "$WORK/grp.json" r.result.deviceId)" = node-g1 ] || fail "group deviceId: $(cat "$WORK/grp.json")"

# the group key itself is not a device key
sdk_register node-g2 "$GROUP_KEY" "$WORK/grpkey.json" && fail "the group key was accepted as a device key"
[ "$(field "$WORK/grpkey.json" r.name)" = UnauthorizedError ] || fail "group key: $(cat "$WORK/grpkey.json")"
[ "$(field "$WORK/grpkey.json" r.result.errorCode)" = 401002 ] || fail "group key: $(cat "$WORK/grpkey.json")"

# wrong key → 401 / 401002, which the SDK reports as UnauthorizedError
sdk_register node-dev1 "$(new_key)" "$WORK/wrong.json" && fail "a wrong key was accepted"
[ "$(field "$WORK/wrong.json" r.name)" = UnauthorizedError ] || fail "wrong key: $(cat "$WORK/wrong.json")"
[ "$(field "$WORK/wrong.json" r.result.errorCode)" = 401002 ] || fail "wrong key: $(cat "$WORK/wrong.json")"

# unknown registration id: with symmetric-key groups it could be any group's device, so the
# answer is 401 / 401002 (UnauthorizedError), as from Azure DPS
sdk_register node-nobody "$KEY" "$WORK/unknown.json" && fail "an unknown registration id was accepted"
[ "$(field "$WORK/unknown.json" r.name)" = UnauthorizedError ] || fail "unknown id: $(cat "$WORK/unknown.json")"
[ "$(field "$WORK/unknown.json" r.result.errorCode)" = 401002 ] || fail "unknown id: $(cat "$WORK/unknown.json")"

# disabled enrollment → status "disabled", errorCode 403001
sdk_register node-off "$KEY" "$WORK/off.json" && fail "a disabled enrollment was assigned"
# (the SDK reports a final status other than assigned/failed as "status is <status>")
[ "$(field "$WORK/off.json" r.message)" = "status is disabled" ] || fail "disabled: $(cat "$WORK/off.json")"
[ "$(field "$WORK/off.json" r.result.status)" = disabled ] || fail "disabled: $(cat "$WORK/off.json")"
[ "$(field "$WORK/off.json" r.result.registrationState.errorCode)" = 403001 ] || fail "disabled: $(cat "$WORK/off.json")"

grep -qF "$KEY" "$WORK/broker/mosquitto.log" && fail "the key appears in the broker log"
echo "PASS: the Azure IoT Node.js SDK provisions individual and group enrollments"
