#!/bin/bash
# SPDX-License-Identifier: MIT
# The generated systemd units: no key systemd does not know, exposure of edgeprovd.service at
# most 2.0 (systemd-analyze security --offline, whose --threshold is on a x10 scale),
# systemd-analyze verify clean, the D-Bus activation file and the sysusers file consistent with
# the unit.
set -euo pipefail
SRC=${EDGEPROV_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${EDGEPROV_BUILDDIR:-$SRC}
MAX_EXPOSURE=20 # x10

fail() { echo "FAIL: $*" >&2; exit 1; }
command -v systemd-analyze > /dev/null || { echo "SKIP: no systemd-analyze"; exit 77; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# systemd-analyze only warns about unknown keys and bad values; make every warning fatal
check_stderr() {
        if grep -E "Unknown|ignoring|Invalid|Failed|[Ff]ailed to|not executable|Missing" "$work/err" >&2; then
                fail "$1: systemd-analyze complains (above)"
        fi
}

for unit in edgeprovd.service edgeprov-swtpm.service edgeprov-dps-httpd.service; do
        f=$BUILD/units/$unit
        [ -f "$f" ] || fail "$f was not generated"
        grep -q '@[a-z_]*@' "$f" && fail "$unit: unsubstituted @variables@"
        cp "$f" "$work/$unit"
        systemd-analyze security --offline=true --no-pager "$work/$unit" > "$work/out" 2> "$work/err" ||
                { cat "$work/out" "$work/err" >&2; fail "$unit: systemd-analyze security failed"; }
        check_stderr "$unit"
        grep "Overall exposure level" "$work/out"
done

# the threshold: edgeprovd must stay at or below 2.0
if ! systemd-analyze security --offline=true --threshold=$MAX_EXPOSURE --no-pager "$work/edgeprovd.service" \
        > "$work/out" 2> "$work/err"; then
        grep -E "✗|Overall" "$work/out" >&2 || true
        fail "edgeprovd.service exposure is above $((MAX_EXPOSURE / 10)).$((MAX_EXPOSURE % 10))"
fi
exposure=$(sed -n 's/.*Overall exposure level for edgeprovd.service: \([0-9.]*\).*/\1/p' "$work/out")
[ -n "$exposure" ] || fail "no exposure figure"
awk -v e="$exposure" -v m=$MAX_EXPOSURE 'BEGIN { exit !(e * 10 <= m) }' || fail "exposure $exposure > 2.0"
echo "edgeprovd.service exposure: $exposure"

# the settings the issue requires (a regression here would not change the score much)
u=$work/edgeprovd.service
for want in '^Type=notify$' '^BusName=io\.edgeprov\.Gateway1$' '^WatchdogSec=[1-9]' '^User=edgeprov$' \
        '^Group=edgeprov$' '^SupplementaryGroups=tss$' '^DevicePolicy=closed$' '^DeviceAllow=/dev/tpmrm0 rw$' \
        '^StateDirectory=edgeprov$' '^ConfigurationDirectory=edgeprov$' '^LoadCredential=dps-key:/' \
        '^CapabilityBoundingSet=$' '^ProtectSystem=strict$' '^NoNewPrivileges=yes$' \
        '^Alias=dbus-io\.edgeprov\.Gateway1\.service$'; do
        grep -Eq "$want" "$u" || fail "edgeprovd.service lacks $want"
done
grep -Eq '^(PrivateDevices=yes|DynamicUser=)' "$u" && fail "PrivateDevices=/DynamicUser= would hide the TPM or the sysusers user"

# verify: needs the ExecStart binaries to exist, so point them at the build tree
mkdir -p "$work/verify"
sed -e "s|^ExecStart=.*/edgeprovd|ExecStart=$BUILD/edgeprovd|" "$u" > "$work/verify/edgeprovd.service"
units=("$work/verify/edgeprovd.service")
if command -v swtpm > /dev/null && command -v swtpm_setup > /dev/null; then
        cp "$work/edgeprov-swtpm.service" "$work/verify/"
        units+=("$work/verify/edgeprov-swtpm.service")
fi
systemd-analyze verify --man=no "${units[@]}" > "$work/out" 2> "$work/err" ||
        { cat "$work/out" "$work/err" >&2; fail "systemd-analyze verify failed"; }
check_stderr "verify"

# D-Bus activation: the bus name and the systemd alias must match the unit
act=$SRC/dbus/io.edgeprov.Gateway1.service
grep -qx 'Name=io.edgeprov.Gateway1' "$act" || fail "activation file: wrong Name="
grep -qx 'SystemdService=dbus-io.edgeprov.Gateway1.service' "$act" || fail "activation file: wrong SystemdService="

# sysusers: creates the user the unit runs as
if command -v systemd-sysusers > /dev/null; then
        mkdir -p "$work/root/etc"
        systemd-sysusers --root="$work/root" --dry-run "$SRC/units/edgeprov.sysusers" > "$work/out" 2>&1 ||
                { cat "$work/out" >&2; fail "systemd-sysusers rejects units/edgeprov.sysusers"; }
        grep -q "Creating user 'edgeprov'" "$work/out" || { cat "$work/out" >&2; fail "sysusers creates no user edgeprov"; }
        grep -qi "ignoring\|invalid" "$work/out" && { cat "$work/out" >&2; fail "sysusers warns"; }
fi
echo "units: OK"
