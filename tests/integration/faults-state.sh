#!/bin/bash
# The state directory full or read-only (issue 8).  The state directory is a small tmpfs that
# this test mounts inside its own mount namespace (unshare -m: the mount never reaches the host
# and disappears with the test).  The gateway is provisioned, then its key changes to the
# enrollment's secondary key so that it must provision and commit again:
#  - read-only: the new assignment cannot be committed → a clear error naming the file and the
#    cause, the daemon stays up and retries, the last good state.json is byte-for-byte intact;
#    once writable again, the next retry commits;
#  - full (ENOSPC): the same, with "No space left on device"; no partial file is left behind.
if [ -z "${EDGEPROV_IN_MOUNT_NS:-}" ]; then
        [ "$(id -u)" = 0 ] || { echo "SKIP: needs root to mount a tmpfs" >&2; exit 77; }
        command -v unshare > /dev/null || { echo "SKIP: unshare is not installed" >&2; exit 77; }
        unshare -m --propagation private true 2> /dev/null || { echo "SKIP: cannot create a mount namespace" >&2; exit 77; }
        EDGEPROV_IN_MOUNT_NS=1 exec unshare -m --propagation private "$BASH" "$0" "$@"
fi
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"

pki_create "$WORK/pki"
KEY=$(new_key)
KEY2=$(new_key)
service_init "$WORK/data.json" hub-a.example.test
enroll "$WORK/data.json" gw1 "$KEY" --secondary-key "$KEY2" --device-id gw1-device
start_broker "$WORK/data.json"
printf '%s' "$KEY" > "$WORK/dps-key"
chmod 0600 "$WORK/dps-key"

S=$WORK/statefs
mkdir -p "$S"
mount -t tmpfs -o size=256k,mode=0700 tmpfs "$S" || skip "cannot mount a tmpfs"
umount_state() { if mountpoint -q "$S"; then umount "$S"; fi; }
trap 'rc=$?; umount_state || true; (exit $rc); ep_cleanup; exit $rc' EXIT
AGENT_RETRY_MAX=2 write_agent_conf "$WORK/edgeprovd.conf" "$S/state" "$WORK/dps-key"

run_agent() {
        LOG_TARGET=console "$EDGEPROVD" --config "$WORK/edgeprovd.conf" --bus-address=none > "$1" 2>&1 &
        AGENT_PID=$!
        ep_track "$AGENT_PID"
}
committed_by() { [ "$(grep -c "Registration 'gw1' assigned" "$WORK/broker/mosquitto.log")" -ge "$1" ]; }

run_agent "$WORK/agent1.log"
wait_for 20 test -s "$S/state/state.json" || fail "not provisioned"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly"
GOOD=$(sha256sum < "$S/state/state.json")

# ---- read-only
mount -o remount,ro "$S" || fail "remount ro"
printf '%s' "$KEY2" > "$WORK/dps-key"
run_agent "$WORK/agent-ro.log"
wait_for 30 log_has "$WORK/agent-ro.log" "cannot commit the assignment" || fail "no error for a read-only state directory"
grep -q "cannot commit the assignment to '$S/state/state.json': Read-only file system" "$WORK/agent-ro.log" ||
        fail "the error does not name the file and the cause: $(grep 'cannot commit' "$WORK/agent-ro.log" | head -n 1)"
sleep 3
kill -0 "$AGENT_PID" || fail "edgeprovd exited on a read-only state directory"
[ "$GOOD" = "$(sha256sum < "$S/state/state.json")" ] || fail "the last good state changed"
RO_FAILS=$(grep -c 'cannot commit the assignment' "$WORK/agent-ro.log")
mount -o remount,rw "$S" || fail "remount rw"
wait_for 30 log_has "$WORK/agent-ro.log" "Gateway 'gw1' assigned" || fail "not committed after the directory became writable"
[ "$GOOD" != "$(sha256sum < "$S/state/state.json")" ] || fail "state.json not rewritten after recovery"
jq -e '(.gateway // .).deviceId == "gw1-device"' "$S/state/state.json" > /dev/null || fail "state after recovery: $(cat "$S/state/state.json")"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly (ro)"
GOOD=$(sha256sum < "$S/state/state.json")

# ---- full
printf '%s' "$KEY" > "$WORK/dps-key"
dd if=/dev/zero of="$S/filler" bs=4k 2> /dev/null || true # until ENOSPC
run_agent "$WORK/agent-full.log"
wait_for 30 log_has "$WORK/agent-full.log" "cannot commit the assignment" || fail "no error for a full state directory"
grep -q "cannot commit the assignment to '$S/state/state.json': No space left on device" "$WORK/agent-full.log" ||
        fail "the error does not name the cause: $(grep 'cannot commit' "$WORK/agent-full.log" | head -n 1)"
kill -0 "$AGENT_PID" || fail "edgeprovd exited on a full state directory"
[ "$GOOD" = "$(sha256sum < "$S/state/state.json")" ] || fail "the last good state changed on ENOSPC"
ls -A "$S/state" | grep -v -x -e state.json -e devices | grep -q . && fail "partial files left: $(ls -A "$S/state")"
FULL_FAILS=$(grep -c 'cannot commit the assignment' "$WORK/agent-full.log")
rm -f "$S/filler"
wait_for 30 log_has "$WORK/agent-full.log" "Gateway 'gw1' assigned" || fail "not committed after space was freed"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly (full)"
jq -e '(.gateway // .).deviceId == "gw1-device"' "$S/state/state.json" > /dev/null || fail "state after ENOSPC: $(cat "$S/state/state.json")"
umount_state || fail "umount"
echo "PASS: read-only ($RO_FAILS failed commits) and full ($FULL_FAILS) state directory reported with the cause, last good state kept, committed once possible"
