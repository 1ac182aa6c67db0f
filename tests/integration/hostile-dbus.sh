#!/bin/bash
# Hostile input over D-Bus (issue 8; tests/README.md, hostile-input matrix): edgeprovd on a
# private bus that lets everyone call (so every call reaches the daemon's own checks), callers
# as root and as nobody.  Table-driven: each row makes one bad call and names the D-Bus error
# it must get (checked on a bus monitor, since busctl prints only the message).  After the
# table: the daemon is alive and answers, no record file was created outside devices/, and a
# flood of calls is served.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/bus-lib.sh"
bus_need_callers

GW=/io/edgeprov/Gateway1
IF=io.edgeprov.Gateway1
NOBODY=$(as_nobody)
gateway_group_init hub-a.example.test
start_broker "$WORK/data.json"
start_bus bus open

gateway_group_creds
write_agent_conf "$WORK/edgeprovd.conf" "$WORK/state" dps-key "        admin_group = \"users\";
};
downstream = {
        group_key_file = \"group-key\";"
start_bus_agent "$WORK/edgeprovd.conf" "$WORK/agent.log"
assigned() { [ "$(bget "$BUS_ADDRESS" "$GW" $IF State)" = assigned ]; }
wait_for 20 assigned || fail "gateway not assigned"
busctl --address="$BUS_ADDRESS" monitor --json=short > "$WORK/monitor.out" 2> /dev/null &
ep_track $!
sleep 0.5

rows=0
failures=0
# drow NAME ERROR COMMAND...: the call fails with D-Bus error ERROR
drow() {
        local name=$1 err=$2 out before
        shift 2
        rows=$((rows + 1))
        before=$(grep -c "\"error_name\":\"$err\"" "$WORK/monitor.out" || true)
        if out=$("$@" 2>&1); then
                ep_log "row '$name': succeeded, expected $err: ${out:0:200}"
                failures=$((failures + 1))
                return
        fi
        above() { [ "$(grep -c "\"error_name\":\"$err\"" "$WORK/monitor.out" || true)" -gt "$before" ]; }
        if ! wait_for 5 above; then
                ep_log "row '$name': no $err on the bus: ${out:0:300}"
                failures=$((failures + 1))
                return
        fi
        echo "ok $rows - $name → $err" >> "$WORK/rows.txt"
}
call() { busctl --address="$BUS_ADDRESS" call io.edgeprov.Gateway1 "$@"; }
E=io.edgeprov.Error
long() { head -c "$1" /dev/zero | tr '\0' "${2:-a}"; }

drow "registration id of 300 characters" $E.InvalidId call $GW $IF RegisterDevice 'sa{sv}' "$(long 300)" 0
drow "empty registration id" $E.InvalidId call $GW $IF RegisterDevice 'sa{sv}' "" 0
drow "path traversal in the id (../../etc/x)" $E.InvalidId call $GW $IF RegisterDevice 'sa{sv}' "../../etc/x" 0
drow "newline in the id" $E.InvalidId call $GW $IF RegisterDevice 'sa{sv}' "$(printf 'a\nb')" 0
drow "non-ASCII id (sensör)" $E.InvalidId call $GW $IF RegisterDevice 'sa{sv}' "sensör" 0
drow "BLE MAC with a bad byte (ble:zz:...)" $E.InvalidId call $GW $IF RegisterDevice 'sa{sv}' "ble:zz:00:00:00:00:01" 0
drow "Modbus unit 256 (0..255)" $E.InvalidId call $GW $IF RegisterDevice 'sa{sv}' "256@/dev/ttyS0" 0
drow "33 options (at most 32)" $E.InvalidOption call $GW $IF RegisterDevice 'sa{sv}' s1 33 $(for i in $(seq 1 33); do printf 'k%d s v ' "$i"; done)
drow "option value of 2 KB" $E.InvalidOption call $GW $IF RegisterDevice 'sa{sv}' s1 1 room s "$(long 2048)"
drow "option name of 65 characters" $E.InvalidOption call $GW $IF RegisterDevice 'sa{sv}' s1 1 "$(long 65 k)" s v
drow "empty option name" $E.InvalidOption call $GW $IF RegisterDevice 'sa{sv}' s1 1 "" s v
drow "option of type array" $E.InvalidOption call $GW $IF RegisterDevice 'sa{sv}' s1 1 x as 2 a b
drow "option of type dict (nested a{sv})" $E.InvalidOption call $GW $IF RegisterDevice 'sa{sv}' s1 1 x 'a{sv}' 1 y s z
drow "option gatewayId (forged parent)" $E.InvalidOption call $GW $IF RegisterDevice 'sa{sv}' s1 1 gatewayId s gw-evil
drow "Reprovision reason of 10 KB" $E.InvalidValue call $GW $IF Reprovision s "$(long 10240)"
drow "Reprovision reason with an escape sequence" $E.InvalidValue call $GW $IF Reprovision s "$(printf 'x\033[2Jy')"
drow "RemoveDevice of ../state" $E.InvalidId call $GW $IF RemoveDevice s "../state"
drow "RemoveDevice of an unknown id" $E.NoSuchDevice call $GW $IF RemoveDevice s "never-registered"
drow "wrong signature (RegisterDevice with s only)" org.freedesktop.DBus.Error.InvalidArgs call $GW $IF RegisterDevice s s1
drow "unknown method" org.freedesktop.DBus.Error.UnknownMethod call $GW $IF Explode s now
drow "unknown object path" org.freedesktop.DBus.Error.UnknownObject call /io/edgeprov/Gateway1/devices/nope io.edgeprov.Device1 Nope
drow "set a read-only property (DeviceCount)" org.freedesktop.DBus.Error.PropertyReadOnly busctl --address="$BUS_ADDRESS" \
        set-property io.edgeprov.Gateway1 $GW $IF DeviceCount u 0
drow "LogLevel set to a bogus level" org.freedesktop.DBus.Error.InvalidArgs busctl --address="$BUS_ADDRESS" \
        set-property io.edgeprov.Gateway1 /org/freedesktop/LogControl1 org.freedesktop.LogControl1 LogLevel s bogus
drow "nobody registers a device" $E.PermissionDenied $NOBODY busctl --address="$BUS_ADDRESS" call io.edgeprov.Gateway1 \
        $GW $IF RegisterDevice 'sa{sv}' s-nobody 0
drow "nobody with a 1,000-character option" $E.PermissionDenied $NOBODY busctl --address="$BUS_ADDRESS" \
        call io.edgeprov.Gateway1 $GW $IF RegisterDevice 'sa{sv}' s-nobody 1 room s "$(long 1000)"
drow "nobody sets LogTarget" $E.PermissionDenied $NOBODY busctl --address="$BUS_ADDRESS" set-property \
        io.edgeprov.Gateway1 /org/freedesktop/LogControl1 org.freedesktop.LogControl1 LogTarget s console

# the daemon is alive, nothing was registered, no file escaped devices/
kill -0 "$AGENT_PID" || fail "edgeprovd died during the hostile rows"
[ "$(bget "$BUS_ADDRESS" $GW $IF DeviceCount)" = 0 ] || fail "a refused call registered something: DeviceCount $(bget "$BUS_ADDRESS" $GW $IF DeviceCount)"
find "$WORK" -path "$WORK/state/devices" -prune -o -name '*.json' -newer "$WORK/edgeprovd.conf" -print |
        grep -v -e "^$WORK/state/state.json$" -e "^$WORK/data.json$" | grep -q . &&
        fail "files created outside the records: $(find "$WORK" -path "$WORK/state/devices" -prune -o -name '*.json' -newer "$WORK/edgeprovd.conf" -print)"
[ ! -e "$WORK/etc" ] || fail "a path traversal created $WORK/etc"

# a flood: 200 property reads and 100 registrations from 4 parallel callers, all answered
rows=$((rows + 1))
T=$SECONDS
for p in 1 2 3 4; do
        (
                for i in $(seq 1 50); do busctl --address="$BUS_ADDRESS" get-property io.edgeprov.Gateway1 $GW $IF State > /dev/null || exit 1; done
                for i in $(seq 1 25); do call $GW $IF RegisterDevice 'sa{sv}' "flood-$p-$i" 0 > /dev/null || exit 1; done
        ) &
        FLOOD[$p]=$!
done
ok=1
for p in 1 2 3 4; do wait "${FLOOD[$p]}" || ok=0; done
if [ "$ok" = 1 ] && [ "$(bget "$BUS_ADDRESS" $GW $IF DeviceCount)" = 100 ]; then
        echo "ok $rows - flood of 200 reads and 100 registrations from 4 callers → all answered ($((SECONDS - T)) s)" >> "$WORK/rows.txt"
else
        ep_log "row 'flood': failed calls or DeviceCount $(bget "$BUS_ADDRESS" $GW $IF DeviceCount)"
        failures=$((failures + 1))
fi
kill -0 "$AGENT_PID" || fail "edgeprovd died during the flood"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly"
cat "$WORK/rows.txt"
[ "$failures" = 0 ] || fail "$failures of $rows rows failed"
echo "PASS: $rows hostile D-Bus rows as expected; daemon alive, nothing registered by refused calls"
