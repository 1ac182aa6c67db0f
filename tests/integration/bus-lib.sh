# SPDX-License-Identifier: MIT
# Private dbus-daemons for the D-Bus tests (sourced after lib.sh).
command -v dbus-daemon > /dev/null || skip "dbus-daemon is not installed"
command -v busctl > /dev/null || skip "busctl is not installed"

# start_bus NAME KIND [POLICY_FILE]: KIND "system" is configured like the system bus (default
# deny, our policy <include>d: a broken policy file makes the daemon fail, unlike <includedir>);
# KIND "open" lets everyone do everything (to reach the daemon's own authorization check).
# Sets BUS_ADDRESS and BUS_PID.
start_bus() {
        local name=$1 kind=$2 policy=${3:-} d="$WORK/$1"
        mkdir -p "$d"
        chmod 0755 "$d"
        {
                echo '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"'
                echo ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">'
                echo '<busconfig>'
                echo "  <type>$([ "$kind" = system ] && echo system || echo session)</type>"
                echo "  <listen>unix:path=$d/socket</listen>"
                echo '  <auth>EXTERNAL</auth>'
                if [ "$kind" = system ]; then
                        cat << 'EOP'
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
EOP
                        echo "  <include>$policy</include>"
                else
                        cat << 'EOP'
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
EOP
                fi
                echo '</busconfig>'
        } > "$d/bus.conf"
        dbus-daemon --config-file="$d/bus.conf" --nofork --print-address=3 3> "$d/address" > "$d/bus.log" 2>&1 &
        BUS_PID=$!
        ep_track "$BUS_PID"
        wait_for 10 test -s "$d/address" || { cat "$d/bus.log" >&2; fail "dbus-daemon ($kind) did not start"; }
        BUS_ADDRESS=$(head -n 1 "$d/address")
}

# bget ADDRESS PATH IFACE PROP: the value of a property, as busctl prints it without the type
bget() {
        busctl --address="$1" get-property io.edgeprov.Gateway1 "$2" "$3" "$4" | sed -e 's/^[a-z]* //' -e 's/^"//' -e 's/"$//'
}

# as_nobody [GROUP]: prefix that runs a command as nobody (optionally with a supplementary group)
as_nobody() {
        if [ -n "${1:-}" ]; then
                echo "setpriv --reuid=nobody --regid=nogroup --groups=$(getent group "$1" | cut -d: -f3)"
        else
                echo "setpriv --reuid=nobody --regid=nogroup --clear-groups"
        fi
}

# bus_need_callers: skips unless callers can run as nobody (root, setpriv, group users, user nobody)
bus_need_callers() {
        command -v setpriv > /dev/null || skip "setpriv is not installed"
        [ "$(id -u)" = 0 ] || skip "needs root (runs callers as nobody with setpriv)"
        getent group users > /dev/null || skip "group 'users' missing"
        id nobody > /dev/null 2>&1 || skip "user 'nobody' missing"
}

# start_bus_agent CONF LOG: edgeprovd with CONF on the bus $BUS_ADDRESS, its output in LOG; sets AGENT_PID
start_bus_agent() {
        LOG_TARGET=console "$EDGEPROVD" --config "$1" --bus-address="$BUS_ADDRESS" > "$2" 2>&1 &
        AGENT_PID=$!
        ep_track "$AGENT_PID"
}
