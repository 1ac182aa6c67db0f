#!/bin/bash
# The process split (issue 5, idle memory; src/agent/worker.h): edgeprovd never loads OpenSSL,
# libmosquitto, libcurl or TSS2; the TLS, TPM and X.509 work runs in edgeprov-worker, started
# when there is such work and stopped when there has been none for a few seconds.
#  1. edgeprovd's ELF needs none of those libraries.
#  2. The helper missing (EDGEPROV_WORKER names a file that is not there): a clear error, the
#     daemon stays up and retries; once the file is there, the gateway is provisioned.
#  3. 150 downstream sensors; the helper is killed (SIGKILL) while registrations are in flight:
#     the daemon says so, starts a new one, and every sensor ends assigned.
#  4. Idle again: no helper process left, and the daemon has none of the libraries mapped.
#  5. A stop while busy, signalled like systemd does (daemon and helper at once): exit 0, the
#     helper gone, no helper death reported.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"

N=150
maps_has() { grep -q -- "$2" "/proc/$1/maps"; }
worker_pid() { pgrep -P "$1" -x edgeprov-worker || true; }
assigned_count() { { grep -l '"state":"assigned"' "$WORK/state/devices/"*.json 2> /dev/null || true; } | wc -l; }
assigned_at_least() { [ "$(assigned_count)" -ge "$1" ]; }
no_worker() { [ -z "$(worker_pid "$AGENT_PID")" ]; }
LIBS='libcrypto\|libssl\|libmosquitto\|libcurl\|libtss2\|libgnutls'

# 1. the daemon's ELF
if command -v readelf > /dev/null; then
        NEEDED=$(readelf -d "$EDGEPROVD" | grep NEEDED || true)
        echo "$NEEDED" | grep -q 'libc\.so' || fail "cannot read edgeprovd's dynamic section: $NEEDED"
        ! echo "$NEEDED" | grep -q "$LIBS" || fail "edgeprovd links a TLS/TPM library: $NEEDED"
        readelf -d "$EDGEPROV_WORKER" | grep NEEDED | grep -q libssl || fail "edgeprov-worker does not link libssl"
else
        ep_log "no readelf: the ELF check is skipped"
fi

# 2. the helper is missing at first
crash_fleet_setup ws "$N" 8
mkdir "$WORK/libexec"
REAL_WORKER=$EDGEPROV_WORKER
EDGEPROV_WORKER=$WORK/libexec/edgeprov-worker LOG_TARGET=console LOG_LEVEL=debug \
        "$EDGEPROVD" --config "$WORK/edgeprovd.conf" --bus-address=none > "$WORK/agent.log" 2>&1 &
AGENT_PID=$!
ep_track "$AGENT_PID"
wait_for 30 log_has "$WORK/agent.log" "cannot run the exchange helper $WORK/libexec/edgeprov-worker: No such file" ||
        fail "no clear error when the helper is missing"
kill -0 "$AGENT_PID" || fail "the daemon exited instead of retrying"
[ ! -e "$WORK/state/state.json" ] || fail "provisioned without the helper"
cp "$REAL_WORKER" "$WORK/libexec/edgeprov-worker"
wait_for 60 test -s "$WORK/state/state.json" || fail "not provisioned once the helper is there"

# 3. kill the helper while sensors register
wait_for 60 assigned_at_least 10 || fail "sensors are not being assigned ($(assigned_count))"
W=$(worker_pid "$AGENT_PID")
[ -n "$W" ] || fail "no helper process while sensors register"
maps_has "$W" libcrypto || fail "the helper has no libcrypto mapped"
BEFORE=$(assigned_count)
kill -KILL "$W"
ep_log "killed the helper (PID $W) with $BEFORE of $N sensors assigned"
wait_for 30 log_has "$WORK/agent.log" "exchange helper (PID $W) was killed by signal" ||
        fail "the daemon did not report the helper's death"
wait_for 180 assigned_at_least "$N" || fail "only $(assigned_count) of $N sensors assigned after the helper died"
kill -0 "$AGENT_PID" || fail "the daemon died with its helper"
W2=$(grep -o 'Started the exchange helper [^ ]* (PID [0-9]*)' "$WORK/agent.log" | tail -n 1)
echo "$W2" | grep -vq "PID $W)" || fail "no new helper was started"

# 4. idle: the helper stops, the daemon maps none of its libraries
wait_for 30 no_worker || fail "the helper is still running while idle"
log_has "$WORK/agent.log" "stopping it" || fail "the helper's idle stop was not logged"
{ maps_has "$AGENT_PID" 'libc\.so' && maps_has "$AGENT_PID" libsystemd; } || fail "cannot read the daemon's maps"
! maps_has "$AGENT_PID" "$LIBS" || fail "the daemon has mapped: $(grep "$LIBS" "/proc/$AGENT_PID/maps" | head -n 3)"
PSS=$(awk '/^Pss:/ { s += $2 } END { print s }' "/proc/$AGENT_PID/smaps_rollup" 2> /dev/null || echo "?")
ep_log "idle daemon with $N sensors: PSS $PSS KiB, no helper"
ep_stop "$AGENT_PID" || fail "edgeprovd exit status $?"

# 5. a stop while busy, as systemd does it (SIGTERM to every process of the unit at once): the
# daemon ends its helper itself, exits 0, and does not report a helper death
sed -i 's/"ws-150"/"ws-150", "ws-late-1", "ws-late-2", "ws-late-3", "ws-late-4", "ws-late-5", "ws-late-6", "ws-late-7", "ws-late-8"/' \
        "$WORK/edgeprovd.conf.d/50-sensors.conf"
grep -q ws-late-8 "$WORK/edgeprovd.conf.d/50-sensors.conf" || fail "cannot add sensors to the inventory"
EDGEPROV_WORKER=$WORK/libexec/edgeprov-worker LOG_TARGET=console LOG_LEVEL=debug \
        "$EDGEPROVD" --config "$WORK/edgeprovd.conf" --bus-address=none > "$WORK/agent2.log" 2>&1 &
AGENT_PID=$!
ep_track "$AGENT_PID"
busy() { [ -n "$(worker_pid "$AGENT_PID")" ]; }
wait_for 30 busy || fail "no helper for the new sensors"
W=$(worker_pid "$AGENT_PID")
kill -TERM "$AGENT_PID" "$W"
rc=0
wait "$AGENT_PID" || rc=$?
[ "$rc" = 0 ] || fail "edgeprovd exit status $rc after a stop while busy"
! kill -0 "$W" 2> /dev/null || fail "the helper outlived the daemon"
! grep -q "exchange helper.*\(exited\|killed\|gone\|did not stop\)" "$WORK/agent2.log" ||
        fail "a stop reported a helper death: $(grep "exchange helper" "$WORK/agent2.log")"
EP_STATUS=0
