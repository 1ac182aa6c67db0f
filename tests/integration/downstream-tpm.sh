#!/bin/bash
# SPDX-License-Identifier: MIT
# Downstream sensors with the group key inside the TPM (swtpm): `edgeprovd --import-group-key`
# makes it an HMAC object under the SRK (blob in the state dir, 0600), the key file is deleted,
# and a TPM-attested gateway registers sensors whose device keys the TPM derives, 8 in flight,
# sharing the one swtpm connection with the gateway's own TPM jobs (a reprovisioning of the
# gateway half way).  The group key must then appear nowhere: not in the state directory, not in
# a log, not in edgeprovd's memory.  The TPM vanishing makes sensors wait, not fail.
# Prints the TPM time per sensor and the longest TPM batch (the time the loop was blocked).
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/tpm-lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/bus-lib.sh"

N=${DOWNSTREAM_TPM_N:-120}

swtpm_manufacture
swtpm_start
pki_create "$WORK/pki"
service_init "$WORK/data.json" hub-a.example.test
GKEY=$(new_key)
"$DPSCTL" --data "$WORK/data.json" group add sensors --primary-key "$GKEY" > /dev/null

tpm_enroll_gateway
start_broker "$WORK/data.json"
start_bus bus open
write_tpm_conf
cat >> "$WORK/edgeprovd.conf" << EOC
downstream = {
        group_key_in_tpm = true;
        concurrency = 8;
        rate = 1000000;
};
EOC
"$EDGEPROVD" --config "$WORK/edgeprovd.conf" --check-config > /dev/null || fail "--check-config: group_key_in_tpm"

# 1. import: refused from a file others can read, then done from a 0600 one
printf '%s\n' "$GKEY" > "$WORK/group-key"
chmod 0644 "$WORK/group-key"
"$EDGEPROVD" --config "$WORK/edgeprovd.conf" --import-group-key="$WORK/group-key" > "$WORK/import0.log" 2>&1 &&
        fail "imported a key file readable by others"
[ -e "$WORK/state/downstream-group-key.tpm" ] && fail "blob written although the import was refused"
chmod 0600 "$WORK/group-key"
(cd "$WORK" && timeout 60 "$EDGEPROVD" --config "$WORK/edgeprovd.conf" --import-group-key=group-key) \
        > "$WORK/import.log" 2>&1 || fail "import: $(cat "$WORK/import.log")"
grep -q "Group key imported into the TPM" "$WORK/import.log" || fail "import: $(cat "$WORK/import.log")"
blob=$WORK/state/downstream-group-key.tpm
[ "$(stat -c %a "$blob")" = 600 ] || fail "blob mode $(stat -c %a "$blob")"
[ "$(stat -c %a "$WORK/state")" = 700 ] || fail "state dir mode $(stat -c %a "$WORK/state")"
[ "$(tpm_count handles-transient)" = 0 ] || fail "the import left a transient object in the TPM"
shred -u "$WORK/group-key" 2> /dev/null || rm -f "$WORK/group-key"

# 2. the gateway (TPM attestation) and N sensors whose keys the TPM derives
LOG_LEVEL=debug LOG_TARGET=console "$EDGEPROVD" --config "$WORK/edgeprovd.conf" --bus-address="$BUS_ADDRESS" \
        > "$WORK/agent.log" 2>&1 &
AGENT_PID=$!
ep_track "$AGENT_PID"
wait_for 60 test -s "$WORK/state/state.json" || fail "gateway not provisioned: $(tail -n 20 "$WORK/agent.log")"
grep -q "derived in the TPM" "$WORK/agent.log" || fail "the daemon did not say where keys come from"
seq -f 'tpm-sensor-%04g' 1 "$N" > "$WORK/sensors.csv"
timeout 300 "$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" register --file "$WORK/sensors.csv" --wait \
        > "$WORK/register.out" 2>&1 &
REG_PID=$!
# the gateway's own TPM jobs (a new challenge into slot B) interleave with the sensors'
derived_at_least() { [ "$(grep -c 'TPM: derived' "$WORK/agent.log")" -ge "$1" ]; }
wait_for 60 derived_at_least 3 || fail "no TPM derivation seen"
"$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" reprovision --reason "test: share the TPM" > /dev/null ||
        fail "reprovision refused"
wait "$REG_PID" || fail "register --wait: $(cat "$WORK/register.out")"
grep -q "^$N assigned, 0 failed" "$WORK/register.out" || fail "register: $(cat "$WORK/register.out")"
wait_for 60 test "$(json_get "$WORK/state/state.json" tpmKeySlot)" = 0x81000101 ||
        fail "the gateway's reprovisioning did not complete: $(cat "$WORK/state/state.json")"
# the service verified every sensor's SAS with HMAC(group key, id): the TPM derived the right keys
[ "$(grep -c "Registration 'tpm-sensor-[0-9]*' assigned .*enrollment group 'sensors'" "$WORK/broker/mosquitto.log")" \
        -ge "$N" ] || fail "sensors not registered through the group enrollment"

# 3. the group key is nowhere: state directory, logs, the daemon's memory
python3 - "$GKEY" "$AGENT_PID" "$WORK/state" "$WORK"/*.log "$WORK/broker/mosquitto.log" << 'EOPY' ||
import base64, os, re, sys
b64, pid, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
raw = base64.b64decode(b64)
needles = [raw, b64.encode(), raw.hex().encode(), raw[:24]]
def scan(name, data):
    for n in needles:
        if n in data:
            sys.exit("group key found in %s" % name)
files = 0
for p in paths:
    for root, _, names in os.walk(p) if os.path.isdir(p) else [(os.path.dirname(p), None, [os.path.basename(p)])]:
        for f in names:
            with open(os.path.join(root, f), "rb") as fh:
                scan(os.path.join(root, f), fh.read())
                files += 1
regions = 0
with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
    for line in maps:
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (r)", line)
        if not m or "[vvar]" in line or "[vsyscall]" in line:
            continue
        start, end = int(m.group(1), 16), int(m.group(2), 16)
        # over 1 GiB: an ASan build's shadow memory (terabytes, mostly zero pages), not the heap
        if end - start > (1 << 30):
            continue
        try:
            # in 16 MiB pieces that overlap by a key's length, so a key across a cut is found
            pos, tail = start, b""
            while pos < end:
                mem.seek(pos)
                piece = mem.read(min(16 << 20, end - pos))
                scan("edgeprovd's memory (%s)" % line.split()[-1], tail + piece)
                tail = piece[-128:]
                pos += len(piece)
            regions += 1
        except OSError:
            pass
if regions < 5:
    sys.exit("could not read edgeprovd's memory (%d regions)" % regions)
print("group key absent from %d files and %d memory regions" % (files, regions), file=sys.stderr)
EOPY
        fail "the group key leaked"

# 4. TPM time per sensor, and the longest batch (the loop is blocked for that long)
awk '/TPM: derived [0-9]+ device key/ {
        for (i = 1; i <= NF; i++) if ($i == "derived") n = $(i + 1); else if ($i == "in" && $(i + 2) == "ms") ms = $(i + 1)
        keys += n; total += ms; if (ms > max) max = ms; batches++
} END {
        if (keys == 0) exit 1
        printf "TPM: %d device keys in %d batches, %.2f ms per sensor, longest batch %.1f ms\n", keys, batches, total / keys, max
}' "$WORK/agent.log" > "$WORK/tpm-timing" || fail "no TPM timing in the log"
ep_log "$(cat "$WORK/tpm-timing")"

# 5. the TPM gone: new sensors wait (retrying, the reason named), then register once it is back
swtpm_stop
"$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" register tpm-late-1 > /dev/null || fail "register while the TPM is gone"
late=/io/edgeprov/Gateway1/devices/tpm_2dlate_2d1
late_error_names_tpm() { bget "$BUS_ADDRESS" "$late" io.edgeprov.Device1 LastError | grep -q TPM; }
wait_for 30 late_error_names_tpm ||
        fail "LastError without the TPM: $(bget "$BUS_ADDRESS" "$late" io.edgeprov.Device1 LastError)"
[ "$(bget "$BUS_ADDRESS" "$late" io.edgeprov.Device1 State)" != failed ] || fail "a missing TPM parked the sensor"
swtpm socket --tpm2 --server "type=tcp,port=$SWTPM_PORT,bindaddr=127.0.0.1" \
        --ctrl "type=tcp,port=$SWTPM_CTRL,bindaddr=127.0.0.1" --tpmstate "dir=$WORK/tpm/state" \
        --flags not-need-init,startup-clear --log "file=$WORK/swtpm2.log,level=1" &
SWTPM_PID=$!
ep_track "$SWTPM_PID"
wait_for 10 port_open "$SWTPM_PORT" || fail "swtpm did not come back on port $SWTPM_PORT"
wait_for 60 grep -q '"state":"assigned"' "$WORK/state/devices/tpm-late-1.json" ||
        fail "tpm-late-1 not assigned once the TPM was back"
ep_stop "$AGENT_PID" || fail "edgeprovd did not stop cleanly"
[ "$(tpm_count handles-transient)" = 0 ] || fail "transient objects left in the TPM"
[ "$(tpm_count handles-loaded-session)" = 0 ] || fail "sessions left in the TPM"
grep -qF "$GKEY" "$WORK"/*.log && fail "the group key appears in a log"
echo "PASS: $N sensors + 1 with the group key in the TPM; $(cat "$WORK/tpm-timing")"
