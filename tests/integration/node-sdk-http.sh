#!/bin/bash
# The official Azure IoT Node.js provisioning SDK over its HTTPS transport
# (azure-iot-provisioning-device-http, unmodified) against edgeprov-dps-httpd: an individual
# and a group enrollment (derived key) with symmetric keys, an individual X.509 enrollment
# (azure-iot-security-x509, TLS client certificate), the SDK's errors for a wrong key, a
# disabled enrollment and a foreign certificate, and the record in the shared store.  npm ci into
# <builddir>/tests/node-sdk-http (its own directory: node-sdk.sh may run at the same time);
# without npm or the registry the test is skipped (77).
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/https-lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/node-lib.sh"

command -v node > /dev/null || skip "node is not installed (scripts/check installs nodejs)"
command -v npm > /dev/null || skip "npm is not installed (scripts/check installs npm)"

node_sdk_install node-sdk-http azure-iot-provisioning-device-http azure-iot-security-x509 || {
        tail -n 5 "$WORK/npm.log" >&2
        skip "npm ci failed (is the npm registry reachable?); the Node SDK HTTP tests did not run"
}

sdk_register() { # REGID KEY OUTFILE
        timeout 60 node "$NODE_DIR/register-http.js" 127.0.0.1 "$HTTPD_PORT" "$WORK/pki/ca.pem" "$ID_SCOPE" "$1" "$2" \
                > "$3" 2>> "$WORK/node.log"
}

node_sdk_enrollments
mkdir -p "$WORK/dev"
(cd "$WORK/dev" && "$DPSCTL" cert root --out root --cn "Node Root CA" && "$DPSCTL" cert root --out rogue --cn Rogue &&
        "$DPSCTL" cert device node-x1 --ca root && "$DPSCTL" cert device node-x1 --ca rogue --out rogue-x1) \
        > "$WORK/cert.log" 2>&1 || fail "certificates: $(cat "$WORK/cert.log")"
"$DPSCTL" --data "$WORK/data.json" enrollment add node-x1 --x509-cert "$WORK/dev/node-x1.cert.pem" --device-id node-x1-dev \
        > /dev/null || fail "enrollment add --x509-cert"
cat "$WORK/dev/root.cert.pem" "$WORK/dev/rogue.cert.pem" > "$WORK/client-ca.pem"
start_httpd "$WORK/data.json" --db "$WORK/registrations.db" --client-ca "$WORK/client-ca.pem"

# individual enrollment
sdk_register node-dev1 "$KEY" "$WORK/ind.json" || fail "individual: SDK failed: $(cat "$WORK/ind.json")"
[ "$(field "$WORK/ind.json" r.result.assignedHub)" = hub-a.example.test ] || fail "assignedHub: $(cat "$WORK/ind.json")"
[ "$(field "$WORK/ind.json" r.result.deviceId)" = node-dev1-device ] || fail "deviceId: $(cat "$WORK/ind.json")"
[ "$(field "$WORK/ind.json" r.result.status)" = assigned ] || fail "status: $(cat "$WORK/ind.json")"
[ "$(field "$WORK/ind.json" r.result.substatus)" = initialAssignment ] || fail "substatus: $(cat "$WORK/ind.json")"
grep -q "PUT /$ID_SCOPE/registrations/node-dev1/register → 202" "$WORK/httpd.log" || fail "not over the REST API"
grep -q "GET /$ID_SCOPE/registrations/node-dev1/operations/.* → 200" "$WORK/httpd.log" || fail "SDK did not poll"

# group enrollment: the device key is HMAC-SHA256(group key, registration id)
DEV_KEY=$("$DPSCTL" compute-key --group-key "$GROUP_KEY" node-g1)
sdk_register node-g1 "$DEV_KEY" "$WORK/grp.json" || fail "group: SDK failed: $(cat "$WORK/grp.json")"
[ "$(field "$WORK/grp.json" r.result.assignedHub)" = hub-b.example.test ] || fail "group hub: $(cat "$WORK/grp.json")"
[ "$(field "$WORK/grp.json" r.result.deviceId)" = node-g1 ] || fail "group deviceId: $(cat "$WORK/grp.json")"

# X.509: the device certificate chain as the TLS client certificate, no Authorization
sdk_register node-x1 "x509:$WORK/dev/node-x1.chain.pem:$WORK/dev/node-x1.key.pem" "$WORK/x509.json" ||
        fail "X.509: SDK failed: $(cat "$WORK/x509.json")"
[ "$(field "$WORK/x509.json" r.result.deviceId)" = node-x1-dev ] || fail "X.509 deviceId: $(cat "$WORK/x509.json")"
[ "$(field "$WORK/x509.json" r.result.assignedHub)" = hub-a.example.test ] ||
        [ "$(field "$WORK/x509.json" r.result.assignedHub)" = hub-b.example.test ] || fail "X.509 hub: $(cat "$WORK/x509.json")"
! sdk_register node-x1 "x509:$WORK/dev/rogue-x1.chain.pem:$WORK/dev/rogue-x1.key.pem" "$WORK/rogue.json" ||
        fail "foreign certificate accepted: $(cat "$WORK/rogue.json")"
[ "$(field "$WORK/rogue.json" r.name)" = UnauthorizedError ] || fail "foreign certificate: $(cat "$WORK/rogue.json")"

# errors as the SDK sees them
WRONG=$(new_key)
! sdk_register node-dev1 "$WRONG" "$WORK/wrong.json" || fail "wrong key accepted: $(cat "$WORK/wrong.json")"
[ "$(field "$WORK/wrong.json" r.name)" = UnauthorizedError ] || fail "wrong key: $(cat "$WORK/wrong.json")"
! sdk_register node-off "$KEY" "$WORK/off.json" || fail "disabled enrollment accepted: $(cat "$WORK/off.json")"
grep -q disabled "$WORK/off.json" || fail "disabled: $(cat "$WORK/off.json")"

# the records are in the shared store
"$DPSCTL" --data "$WORK/data.json" --db "$WORK/registrations.db" --json registration show node-g1 > "$WORK/rec.json" ||
        fail "no record for node-g1"
grep -q '"hub-b.example.test"' "$WORK/rec.json" || fail "record: $(cat "$WORK/rec.json")"

EP_STATUS=0
