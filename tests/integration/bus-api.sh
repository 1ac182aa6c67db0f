#!/bin/bash
# The D-Bus API on a private dbus-daemon configured like the system bus with our policy:
# every method, property change and error, the authorization split (bus policy and the
# daemon's own check), LogControl1, edgeprovctl over D-Bus, and the introspection XML.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/bus-lib.sh"
bus_need_callers

GW=/io/edgeprov/Gateway1
IF=io.edgeprov.Gateway1
DIF=io.edgeprov.Device1
CTL() { "$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" "$@"; }
call() { busctl --address="$BUS_ADDRESS" call io.edgeprov.Gateway1 "$@"; }
# expect_error NAME COMMAND...: the command fails with D-Bus error NAME
expect_error() {
        local name=$1 out before
        shift
        before=$(grep -c "\"error_name\":\"$name\"" "$WORK/monitor.json" || true)
        if out=$("$@" 2>&1); then
                fail "'$*' succeeded, expected $name: $out"
        fi
        # busctl prints only the message: the error's name is checked on the bus monitor
        printf '%s\n' "$out" > "$WORK/last-error"
        error_count_above() { [ "$(grep -c "\"error_name\":\"$1\"" "$WORK/monitor.json" || true)" -gt "$2" ]; }
        wait_for 5 error_count_above "$name" "$before" || fail "no $name on the bus after '$*': $out"
}

gateway_group_init hub-a.example.test
DKEY=$("$DPSCTL" compute-key --group-key "$GKEY" s-disabled)
enroll "$WORK/data.json" s-disabled "$DKEY" --disabled
start_broker "$WORK/data.json"

# the policy under test, with the admin group mapped to an existing one; <include> makes the bus
# fail on a broken policy file, so starting it lints the policy
sed 's/group="edgeprov"/group="users"/' "$EDGEPROV_SRCDIR/dbus/io.edgeprov.Gateway1.conf" > "$WORK/policy.conf"
start_bus sysbus system "$WORK/policy.conf"
SYS_BUS=$BUS_ADDRESS
# a throw-away config that includes a broken policy must fail (the lint has teeth)
sed 's|</busconfig>|<allow own="x"/></busconfig>|' "$WORK/policy.conf" > "$WORK/broken.conf"
sed "s|$WORK/policy.conf|$WORK/broken.conf|; s|$WORK/sysbus/socket|$WORK/sysbus/socket2|" "$WORK/sysbus/bus.conf" > "$WORK/lint.conf"
timeout 5 dbus-daemon --config-file="$WORK/lint.conf" --nofork > "$WORK/lint.log" 2>&1 && fail "a broken policy was accepted"
[ $? -ne 124 ] || fail "dbus-daemon started with a broken policy"

busctl --address="$BUS_ADDRESS" monitor --json=short > "$WORK/monitor.json" 2> "$WORK/monitor.err" &
ep_track $!
sleep 0.5

gateway_group_creds
write_agent_conf "$WORK/edgeprovd.conf" "$WORK/state" dps-key "        admin_group = \"users\";
};
downstream = {
        group_key_file = \"group-key\";"
start_bus_agent "$WORK/edgeprovd.conf" "$WORK/agent.log"

assigned() { [ "$(bget "$BUS_ADDRESS" "$GW" $IF State)" = assigned ]; }
wait_for 20 assigned || fail "gateway not assigned over D-Bus: $(bget "$BUS_ADDRESS" "$GW" $IF State)"

# --- introspection equals dbus/io.edgeprov.Gateway1.xml
blocks() { sed -n -e '/<interface name="io.edgeprov.Gateway1">/,/<\/interface>/p' -e '/<interface name="io.edgeprov.Device1">/,/<\/interface>/p'; }
call $GW $IF RegisterDevice 'sa{sv}' AA:BB:CC:DD:EE:FF 3 room s kitchen floor i 2 mains b true > "$WORK/reg.out"
grep -qx 'o "/io/edgeprov/Gateway1/devices/ble_2daabbccddeeff"' "$WORK/reg.out" || fail "RegisterDevice: $(cat "$WORK/reg.out")"
DEV=/io/edgeprov/Gateway1/devices/ble_2daabbccddeeff
{ busctl --address="$BUS_ADDRESS" introspect --xml-interface io.edgeprov.Gateway1 $GW
  busctl --address="$BUS_ADDRESS" introspect --xml-interface io.edgeprov.Gateway1 $DEV; } | blocks > "$WORK/live.xml"
blocks < "$EDGEPROV_SRCDIR/dbus/io.edgeprov.Gateway1.xml" > "$WORK/committed.xml"
diff -u "$WORK/committed.xml" "$WORK/live.xml" || fail "dbus/io.edgeprov.Gateway1.xml differs from what edgeprovd exports"
[ -s "$WORK/live.xml" ] || fail "no interfaces introspected"

# --- Gateway1 properties
[ "$(bget "$BUS_ADDRESS" $GW $IF RegistrationId)" = gw1 ] || fail RegistrationId
[ "$(bget "$BUS_ADDRESS" $GW $IF DeviceId)" = gw1-device ] || fail DeviceId
[ "$(bget "$BUS_ADDRESS" $GW $IF AssignedHub)" = hub-a.example.test ] || fail AssignedHub
[ "$(bget "$BUS_ADDRESS" $GW $IF Attestation)" = symmetric_key ] || fail Attestation
[ "$(bget "$BUS_ADDRESS" $GW $IF Substatus)" = initialAssignment ] || fail Substatus
[ -z "$(bget "$BUS_ADDRESS" $GW $IF LastError)" ] || fail LastError
[ "$(bget "$BUS_ADDRESS" $GW $IF NextRetry)" = 0 ] || fail NextRetry
[ "$(bget "$BUS_ADDRESS" $GW $IF ProvisionedAt)" -gt 1700000000000000 ] || fail ProvisionedAt
grep '"member":"PropertiesChanged"' "$WORK/monitor.json" | grep -F "$GW\"" | grep -q '"assigned"' ||
        fail "no PropertiesChanged(State=assigned) for the gateway"

# --- a sensor: object appears, properties change, it gets assigned with its own identity
dev_state() { bget "$BUS_ADDRESS" "$1" $DIF State; }
dev_is() { [ "$(dev_state "$1")" = "$2" ]; }
wait_for 15 dev_is $DEV assigned || fail "sensor not assigned: $(dev_state $DEV)"
[ "$(bget "$BUS_ADDRESS" $DEV $DIF RegistrationId)" = ble-aabbccddeeff ] || fail "sensor RegistrationId"
[ "$(bget "$BUS_ADDRESS" $DEV $DIF DeviceId)" = ble-aabbccddeeff ] || fail "sensor DeviceId"
[ "$(bget "$BUS_ADDRESS" $DEV $DIF AssignedHub)" = hub-a.example.test ] || fail "sensor AssignedHub"
[ "$(bget "$BUS_ADDRESS" $DEV $DIF Attempts)" = 1 ] || fail "sensor Attempts"
[ -z "$(bget "$BUS_ADDRESS" $DEV $DIF LastError)" ] || fail "sensor LastError"
[ "$(bget "$BUS_ADDRESS" $DEV $DIF ProvisionedAt)" -gt 1700000000000000 ] || fail "sensor ProvisionedAt"
[ "$(bget "$BUS_ADDRESS" $GW $IF DeviceCount)" = 1 ] || fail DeviceCount
grep '"member":"InterfacesAdded"' "$WORK/monitor.json" | grep -qF "$DEV" || fail "no InterfacesAdded for the sensor"
for st in registering assigned; do
        grep '"member":"PropertiesChanged"' "$WORK/monitor.json" | grep -F "\"path\":\"$DEV\"" | grep -q "\"$st\"" ||
                fail "no PropertiesChanged(State=$st) for the sensor"
done
grep -q "enrollment group 'sensors'" "$WORK/broker/mosquitto.log" || fail "the sensor did not use the group enrollment"
grep -q '"room":"kitchen"' "$WORK/state/devices/ble-aabbccddeeff.json" || fail "options not recorded"
# registering again is idempotent
call $GW $IF RegisterDevice 'sa{sv}' ble-aabbccddeeff 0 | grep -qF "$DEV" || fail "second RegisterDevice"
[ "$(bget "$BUS_ADDRESS" $GW $IF DeviceCount)" = 1 ] || fail "DeviceCount after a repeated RegisterDevice"

# --- errors
expect_error io.edgeprov.Error.InvalidId call $GW $IF RegisterDevice 'sa{sv}' 'bad id!' 0
expect_error io.edgeprov.Error.InvalidOption call $GW $IF RegisterDevice 'sa{sv}' s9 1 x as 1 a
expect_error io.edgeprov.Error.InvalidOption call $GW $IF RegisterDevice 'sa{sv}' s9 1 gatewayId s forged
expect_error io.edgeprov.Error.NoSuchDevice call $GW $IF RemoveDevice s nope
expect_error io.edgeprov.Error.InvalidValue call $GW $IF Reprovision s "$(printf 'a\tb')"
expect_error org.freedesktop.DBus.Error.PropertyReadOnly busctl --address="$BUS_ADDRESS" set-property \
        io.edgeprov.Gateway1 $GW $IF State s x

# --- a permanent error is parked with the reason, not retried
call $GW $IF RegisterDevice 'sa{sv}' s-disabled 0 > /dev/null
BAD=/io/edgeprov/Gateway1/devices/s_2ddisabled
wait_for 15 dev_is $BAD failed || fail "disabled sensor: $(dev_state $BAD)"
[ -n "$(bget "$BUS_ADDRESS" $BAD $DIF LastError)" ] || fail "no LastError for the disabled sensor"
sleep 3
[ "$(bget "$BUS_ADDRESS" $BAD $DIF Attempts)" = 1 ] || fail "a parked sensor was retried"
grep -q '"state":"failed"' "$WORK/state/devices/s-disabled.json" || fail "failure not persisted"

# --- RemoveDevice
call $GW $IF RemoveDevice s s-disabled
[ ! -e "$WORK/state/devices/s-disabled.json" ] || fail "record left after RemoveDevice"
[ "$(bget "$BUS_ADDRESS" $GW $IF DeviceCount)" = 1 ] || fail "DeviceCount after RemoveDevice"
wait_for 5 grep -q "\"member\":\"InterfacesRemoved\".*$BAD" "$WORK/monitor.json" || fail "no InterfacesRemoved"

# --- Reprovision: a new provisioning through the manager, a second call while busy
call $GW $IF Reprovision s operator-test
expect_error io.edgeprov.Error.Busy call $GW $IF Reprovision s again
wait_for 5 log_has "$WORK/agent.log" "Provisioning again on request (operator-test)" || fail "Reprovision not logged"
grep '"member":"PropertiesChanged"' "$WORK/monitor.json" | grep -F "$GW\"" | grep -q '"provisioning"' ||
        fail "no PropertiesChanged(State=provisioning)"
wait_for 20 assigned || fail "not assigned again after Reprovision"
[ "$(grep -c "Registration 'gw1' assigned" "$WORK/broker/mosquitto.log")" = 2 ] || fail "Reprovision did not register again"

# --- LogControl1
busctl --address="$BUS_ADDRESS" set-property io.edgeprov.Gateway1 /org/freedesktop/LogControl1 \
        org.freedesktop.LogControl1 LogLevel s debug
[ "$(bget "$BUS_ADDRESS" /org/freedesktop/LogControl1 org.freedesktop.LogControl1 LogLevel)" = debug ] || fail LogLevel
wait_for 5 grep -q '"path":"/org/freedesktop/LogControl1".*"member":"PropertiesChanged"' "$WORK/monitor.json" ||
        wait_for 1 grep -q '"member":"PropertiesChanged".*"path":"/org/freedesktop/LogControl1"' "$WORK/monitor.json" ||
        fail "no PropertiesChanged for LogLevel"
busctl --address="$BUS_ADDRESS" set-property io.edgeprov.Gateway1 /org/freedesktop/LogControl1 \
        org.freedesktop.LogControl1 LogTarget s console
[ "$(bget "$BUS_ADDRESS" /org/freedesktop/LogControl1 org.freedesktop.LogControl1 LogTarget)" = console ] || fail LogTarget
[ "$(bget "$BUS_ADDRESS" /org/freedesktop/LogControl1 org.freedesktop.LogControl1 SyslogIdentifier)" = edgeprovd ] ||
        fail SyslogIdentifier
expect_error org.freedesktop.DBus.Error.InvalidArgs busctl --address="$BUS_ADDRESS" set-property io.edgeprov.Gateway1 \
        /org/freedesktop/LogControl1 org.freedesktop.LogControl1 LogLevel s loud

# --- authorization on the system-like bus: reads for everyone, changes for root and the group
NOBODY=$(as_nobody)
ADMIN=$(as_nobody users)
[ "$($NOBODY busctl --address="$BUS_ADDRESS" get-property io.edgeprov.Gateway1 $GW $IF State)" = 's "assigned"' ] ||
        fail "nobody cannot read"
$NOBODY busctl --address="$BUS_ADDRESS" call io.edgeprov.Gateway1 $GW org.freedesktop.DBus.ObjectManager \
        GetManagedObjects > /dev/null || fail "nobody cannot list the devices"
rc=0
$NOBODY "$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" register s5 > "$WORK/denied.out" 2>&1 || rc=$?
[ $rc = 5 ] || fail "register as nobody: exit $rc, expected 5"
grep -q "Rejected send message" "$WORK/denied.out" || fail "nobody was not refused by the policy: $(cat "$WORK/denied.out")"
$ADMIN busctl --address="$BUS_ADDRESS" call io.edgeprov.Gateway1 $GW $IF RegisterDevice 'sa{sv}' s5 0 > /dev/null ||
        fail "a member of the admin group could not register"

# --- edgeprovctl over D-Bus
CTL status > "$WORK/ctl-status" || fail "edgeprovctl status: $?"
grep -q "Assigned hub: hub-a.example.test" "$WORK/ctl-status" || fail "status: $(cat "$WORK/ctl-status")"
CTL --json status | grep -q '"DeviceId": "gw1-device"' || fail "status --json"
CTL register zigbee:00:12:4B:00:01:02:03:04 --option room=hall --wait > "$WORK/ctl-reg" || fail "register --wait"
grep -q zigbee_2d00124b0001020304 "$WORK/ctl-reg" || fail "register: $(cat "$WORK/ctl-reg")"
CTL devices > "$WORK/ctl-devices" || fail "devices"
grep -q '^zigbee-00124b0001020304 *assigned' "$WORK/ctl-devices" || fail "devices: $(cat "$WORK/ctl-devices")"
CTL --json devices | grep -q '"RegistrationId": "ble-aabbccddeeff"' || fail "devices --json"
CTL device AA:BB:CC:DD:EE:FF | grep -q "State: assigned" || fail "device"
rc=0; CTL device nope > /dev/null 2>&1 || rc=$?; [ $rc = 4 ] || fail "device nope: exit $rc, expected 4"
CTL remove zigbee:0012:4b00:0102:0304 > /dev/null 2>&1 && fail "remove accepted a malformed EUI-64"
CTL remove 00124b0001020304 || fail "remove"
rc=0; CTL remove 00124b0001020304 2> /dev/null || rc=$?; [ $rc = 4 ] || fail "remove twice: exit $rc, expected 4"
rc=0; $NOBODY "$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" register s6 2> /dev/null || rc=$?
[ $rc = 5 ] || fail "register as nobody: exit $rc, expected 5"
rc=0; CTL register 'bad id!' 2> /dev/null || rc=$?; [ $rc = 1 ] || fail "register bad id: exit $rc"
rc=0; "$EDGEPROVCTL" --bus-address=unix:path=/nonexistent devices 2> /dev/null || rc=$?
[ $rc = 6 ] || fail "devices without a bus: exit $rc, expected 6"
CTL reprovision --reason ctl-test > /dev/null || fail "reprovision"
wait_for 5 log_has "$WORK/agent.log" "(ctl-test)" || fail "reprovision reason not logged"
wait_for 20 assigned || fail "not assigned after edgeprovctl reprovision"

# doctor: everything is fine; then a service that cannot be reached is reported with a hint
CTL --config "$WORK/edgeprovd.conf" doctor > "$WORK/doctor.out" || fail "doctor: $(cat "$WORK/doctor.out")"
for c in config key clock service tls state daemon; do
        grep -q "^OK *$c " "$WORK/doctor.out" || fail "doctor $c: $(cat "$WORK/doctor.out")"
done
CTL --json --config "$WORK/edgeprovd.conf" doctor | grep -q '"check": "service"' || fail "doctor --json"

# --- restart on a bus without policy, no group key, no network: the daemon's own check, the
# sensors served from state, NotConfigured
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly"
stop_broker
start_bus openbus open
write_agent_conf "$WORK/edgeprovd2.conf" "$WORK/state" dps-key "        admin_group = \"users\";"
start_bus_agent "$WORK/edgeprovd2.conf" "$WORK/agent2.log"
wait_for 10 assigned || fail "not served from state on the second bus"
[ "$(dev_state $DEV)" = assigned ] || fail "sensor not served from state"
[ "$(bget "$BUS_ADDRESS" $DEV $DIF DeviceId)" = ble-aabbccddeeff ] || fail "sensor DeviceId after restart"
[ "$(bget "$BUS_ADDRESS" $GW $IF DeviceCount)" = 2 ] || fail "DeviceCount after restart"
busctl --address="$BUS_ADDRESS" monitor --json=short > "$WORK/monitor.json" 2> /dev/null &
ep_track $!
sleep 0.5
expect_error io.edgeprov.Error.PermissionDenied $NOBODY busctl --address="$BUS_ADDRESS" call io.edgeprov.Gateway1 \
        $GW $IF RegisterDevice 'sa{sv}' s7 0
grep -q "needs root or membership of the group 'users'" "$WORK/last-error" || fail "unclear refusal: $(cat "$WORK/last-error")"
expect_error io.edgeprov.Error.PermissionDenied $NOBODY busctl --address="$BUS_ADDRESS" call io.edgeprov.Gateway1 \
        $GW $IF Reprovision s x
expect_error io.edgeprov.Error.PermissionDenied $NOBODY busctl --address="$BUS_ADDRESS" call io.edgeprov.Gateway1 \
        $GW $IF RemoveDevice s ble-aabbccddeeff
expect_error io.edgeprov.Error.PermissionDenied $NOBODY busctl --address="$BUS_ADDRESS" set-property \
        io.edgeprov.Gateway1 /org/freedesktop/LogControl1 org.freedesktop.LogControl1 LogLevel s debug
# the group member passes the daemon's check and learns that downstream is not configured
expect_error io.edgeprov.Error.NotConfigured $ADMIN busctl --address="$BUS_ADDRESS" call io.edgeprov.Gateway1 \
        $GW $IF RegisterDevice 'sa{sv}' s7 0
[ "$(dev_state $DEV)" = assigned ] || fail "a refused call changed something"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly (2)"

rc=0
"$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" --config "$WORK/edgeprovd.conf" doctor > "$WORK/doctor2.out" || rc=$?
[ $rc = 1 ] || fail "doctor with the service and the daemon down: exit $rc"
grep -q "^FAIL *service" "$WORK/doctor2.out" || fail "doctor did not report the service: $(cat "$WORK/doctor2.out")"
grep -q "^FAIL *daemon" "$WORK/doctor2.out" || fail "doctor did not report the daemon"
grep -q "→ systemctl start edgeprovd" "$WORK/doctor2.out" || fail "doctor gives no hint"

# status works without the daemon, from the state file
"$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" --config "$WORK/edgeprovd.conf" status > "$WORK/ctl-status2" ||
        fail "status without the daemon"
grep -q "Assigned hub: hub-a.example.test" "$WORK/ctl-status2" || fail "status from file: $(cat "$WORK/ctl-status2")"

# secrets never reach the logs
for k in "$KEY" "$GKEY" "$DKEY"; do
        grep -qF "$k" "$WORK"/*.log "$WORK/broker/mosquitto.log" "$WORK"/monitor.json && fail "a key appears in a log"
done
grep -q "sig=" "$WORK"/agent*.log && fail "a SAS signature appears in a log"
echo "PASS: D-Bus API, authorization, LogControl1, edgeprovctl"
