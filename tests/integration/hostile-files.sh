#!/bin/bash
# Hostile files (issue 8; tests/README.md, hostile-input matrix): bad configuration files and
# drop-ins (edgeprovd --check-config: a non-zero exit and an error naming file, line or key),
# bad key files, damaged state files and sensor records (the daemon keeps running, sets the
# bad file aside as *.corrupt and provisions again or loads the rest), and bad bulk sensor
# files (edgeprovctl register --file refuses them before touching the bus).  No service is
# needed: the daemon points at a closed port.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"

pki_create "$WORK/pki"
KEY=$(new_key)
printf '%s' "$KEY" > "$WORK/dps-key"
chmod 0600 "$WORK/dps-key"
BROKER_PORT=$(random_port)
while port_open "$BROKER_PORT"; do BROKER_PORT=$(random_port); done
write_agent_conf "$WORK/good.conf" "$WORK/state" "$WORK/dps-key"
"$EDGEPROVD" --config "$WORK/good.conf" --check-config > /dev/null 2>&1 || fail "the good configuration is refused"

rows=0
failures=0
pass() { echo "ok $rows - $1" >> "$WORK/rows.txt"; }
bad() { ep_log "row '$1': $2"; failures=$((failures + 1)); }

# crow NAME PATTERN: the configuration in $WORK/c.conf (+ $WORK/c.conf.d/) is refused with PATTERN
crow() {
        local name=$1 pattern=$2 rc=0
        rows=$((rows + 1))
        "$EDGEPROVD" --config "$WORK/c.conf" --check-config > "$WORK/crow.out" 2>&1 || rc=$?
        if [ "$rc" = 0 ]; then
                bad "$name" "accepted"
        elif ! grep -qE -- "$pattern" "$WORK/crow.out"; then
                bad "$name" "no '$pattern' in: $(head -c 300 "$WORK/crow.out")"
        else
                pass "config: $name → refused ($pattern)"
        fi
        rm -rf "$WORK/c.conf.d"
}
conf_with() { # replace a line of the good config: conf_with SED_EXPRESSION
        sed "$1" "$WORK/good.conf" > "$WORK/c.conf"
}
conf_with 's/port = .*/port = 70000;/'
crow "port 70000" "port"
conf_with 's/port = .*/port = "8883";/'
crow "port as a string" "port"
conf_with 's/id_scope = .*/id_scope = "0ne\/..\/x";/'
crow "ID scope with a slash" "id_scope"
conf_with 's/registration_id = .*/registration_id = "gw 1";/'
crow "registration id with a space" "registration_id"
conf_with 's/registration_id = .*/registration_id = "'"$(head -c 300 /dev/zero | tr '\0' r)"'";/'
crow "registration id of 300 characters" "registration_id"
conf_with 's/endpoint = .*/endpoint = "";/'
crow "empty endpoint" "endpoint"
conf_with 's/retry_initial = .*/retry_initial = -5;/'
crow "negative retry_initial" "retry_initial"
conf_with 's/retry_max = .*/retry_max = 99999999999;/'
crow "retry_max beyond 64 bits of sense" "retry_max"
conf_with 's/^agent = {/agent = {\n        no_such_key = 1;/'
crow "unknown key" "no_such_key"
conf_with 's/^agent = {/agent = {\n        state_directory = "\/a";/'
crow "a key given twice" "state_directory|duplicate|twice"
conf_with 's/port = /port == /'
crow "syntax error (==)" "c.conf:[0-9]+"
printf 'provisioning = { endpoint = "\xff\xfe"; };\n' > "$WORK/c.conf"
crow "invalid UTF-8 in a string" "c.conf|endpoint"
{ cat "$WORK/good.conf"; head -c 2000000 /dev/zero | tr '\0' '#'; } > "$WORK/c.conf"
crow "configuration file of 2 MB" "too large|large|size|big"
{ printf 'x = '; for i in $(seq 1 300); do printf '{ a = '; done; printf '1'; for i in $(seq 1 300); do printf ' }'; done; printf ';\n'; } > "$WORK/c.conf"
crow "groups nested 300 deep" "c.conf"
cp "$WORK/good.conf" "$WORK/c.conf"
mkdir -p "$WORK/c.conf.d"
printf 'agent = { retry_max = "x"; };\n' > "$WORK/c.conf.d/50-bad.conf"
crow "drop-in with a wrong type (named)" "50-bad.conf"
cp "$WORK/good.conf" "$WORK/c.conf"
mkdir -p "$WORK/c.conf.d"
printf 'agent = {\n' > "$WORK/c.conf.d/60-broken.conf"
crow "drop-in with a syntax error (named)" "60-broken.conf"
conf_with "s|@include.*||"
printf '@include "/etc/passwd"\n' >> "$WORK/c.conf"
crow "@include of /etc/passwd" "c.conf|include"

# key files: the daemon refuses to start, naming the problem
krow() {
        local name=$1 pattern=$2 rc=0
        rows=$((rows + 1))
        write_agent_conf "$WORK/k.conf" "$WORK/kstate" "$WORK/k.key"
        timeout 20 "$EDGEPROVD" --config "$WORK/k.conf" --bus-address=none > "$WORK/krow.out" 2>&1 || rc=$?
        if [ "$rc" = 0 ] || [ "$rc" = 124 ]; then
                bad "$name" "exit $rc"
        elif ! grep -qE -- "$pattern" "$WORK/krow.out"; then
                bad "$name" "no '$pattern' in: $(head -c 300 "$WORK/krow.out")"
        else
                pass "key file: $name → refused at start ($pattern)"
        fi
        rm -rf "$WORK/k.key"
}
krow "missing" "k.key"
printf '%s' "$KEY" > "$WORK/k.key"; chmod 0644 "$WORK/k.key"
krow "readable by others" "accessible to other users"
: > "$WORK/k.key"; chmod 0600 "$WORK/k.key"
krow "empty" "k.key|empty|key"
printf 'not base64 at all!' > "$WORK/k.key"; chmod 0600 "$WORK/k.key"
krow "not base64" "base64|key"
head -c 100000 /dev/urandom | base64 -w0 > "$WORK/k.key"; chmod 0600 "$WORK/k.key"
krow "of 130 KB" "k.key|large|long|key"
mkdir "$WORK/k.key"
krow "a directory" "k.key"
rmdir "$WORK/k.key" 2> /dev/null || true

# state files: the daemon stays up, keeps the bad file as *.corrupt and provisions again
srow() {
        local name=$1 rc=0
        rows=$((rows + 1))
        write_agent_conf "$WORK/s.conf" "$WORK/sstate" "$WORK/dps-key"
        rm -f "$WORK/srow.out" # the background start truncates it only later
        LOG_TARGET=console "$EDGEPROVD" --config "$WORK/s.conf" --bus-address=none > "$WORK/srow.out" 2>&1 &
        local pid=$!
        ep_track "$pid"
        if ! wait_for 10 log_has "$WORK/srow.out" "Provisioning 'gw1' at"; then
                bad "$name" "did not go on to provision: $(head -c 300 "$WORK/srow.out")"
        elif ! kill -0 "$pid" 2> /dev/null; then
                bad "$name" "exited"
        elif [ ! -e "$WORK/sstate/state.json.corrupt" ]; then
                bad "$name" "the bad state file was not kept as state.json.corrupt: $(ls -A "$WORK/sstate")"
        else
                pass "state file: $name → kept as state.json.corrupt, provisioning again"
        fi
        ep_stop "$pid" > /dev/null 2>&1 || true
        rm -rf "$WORK/sstate"
}
mkdir -p -m 0700 "$WORK/sstate"
srow_file() { mkdir -p -m 0700 "$WORK/sstate"; printf "$1" > "$WORK/sstate/state.json"; chmod 0600 "$WORK/sstate/state.json"; }
srow_file 'garbage'
srow "garbage"
srow_file '{"version":1,"gateway":{"registrationId":"gw1","deviceId":"x"'
srow "truncated JSON"
srow_file '{"version":99,"gateway":{"registrationId":"gw1","deviceId":"d","assignedHub":"h"}}'
srow "unknown version 99"
srow_file '{"version":1,"gateway":{"registrationId":7,"deviceId":[],"assignedHub":{}}}'
srow "wrong member types"
srow_file ''
srow "empty file"
mkdir -p -m 0700 "$WORK/sstate"
{ printf '{"version":1,"gateway":{"registrationId":"gw1","x":"'; head -c 3000000 /dev/zero | tr '\0' a; printf '"}}'; } > "$WORK/sstate/state.json"
srow "3 MB"
mkdir -p -m 0700 "$WORK/sstate"
{ printf '{"version":1,"gateway":'; for i in $(seq 1 5000); do printf '['; done; for i in $(seq 1 5000); do printf ']'; done; printf '}'; } > "$WORK/sstate/state.json"
srow "nested 5,000 deep"

# sensor records: a damaged one is set aside, the others load
rows=$((rows + 1))
mkdir -p -m 0700 "$WORK/dstate/devices"
for i in 1 2 3; do
        printf '{"version":1,"registrationId":"s%d","state":"assigned","deviceId":"s%d","assignedHub":"h","attempts":1,"provisionedAt":1700000000}' \
                "$i" "$i" > "$WORK/dstate/devices/s$i.json"
done
printf '{"version":1,"registrationId":"other","state":"assigned"}' > "$WORK/dstate/devices/s4.json"
printf 'garbage' > "$WORK/dstate/devices/s5.json"
printf '{"version":1,"registrationId":"s6","state":"assigned","options":%s}' "$(for i in $(seq 1 100); do printf '{"a":'; done; printf 1; for i in $(seq 1 100); do printf '}'; done)" > "$WORK/dstate/devices/s6.json"
printf 'x' > "$WORK/dstate/devices/.#s7.json.AbCdEf"
chmod 0600 "$WORK/dstate/devices/"*
GKEY=$(new_key)
printf '%s' "$GKEY" > "$WORK/group-key"
chmod 0600 "$WORK/group-key"
write_agent_conf "$WORK/d.conf" "$WORK/dstate" "$WORK/dps-key" "};
downstream = {
        group_key_file = \"$WORK/group-key\";"
LOG_TARGET=console "$EDGEPROVD" --config "$WORK/d.conf" --bus-address=none > "$WORK/drow.out" 2>&1 &
DPID=$!
ep_track "$DPID"
if ! wait_for 10 log_has "$WORK/drow.out" "Loaded 3 sensor record(s)"; then
        bad "sensor records" "$(grep -i "record\|sensor" "$WORK/drow.out" | head -n 5)"
elif [ ! -e "$WORK/dstate/devices/s4.json.corrupt" ] || [ ! -e "$WORK/dstate/devices/s5.json.corrupt" ] ||
        [ ! -e "$WORK/dstate/devices/s6.json.corrupt" ] || [ -e "$WORK/dstate/devices/.#s7.json.AbCdEf" ]; then
        bad "sensor records" "not set aside / temp file left: $(ls -A "$WORK/dstate/devices")"
else
        pass "sensor records: a foreign id, garbage and 100-deep options → *.corrupt, a stale temp file removed, 3 good ones loaded"
fi
kill -0 "$DPID" || bad "sensor records" "edgeprovd exited"
ep_stop "$DPID" > /dev/null 2>&1 || true

# bulk sensor files: edgeprovctl refuses them before it contacts the daemon
brow() {
        local name=$1 pattern=$2 rc=0
        rows=$((rows + 1))
        "$EDGEPROVCTL" --bus-address=unix:path=/nonexistent register --file "$WORK/bulk" > "$WORK/brow.out" 2>&1 || rc=$?
        if [ "$rc" != 2 ]; then
                bad "$name" "exit $rc (expected 2, refused before the bus): $(head -c 300 "$WORK/brow.out")"
        elif ! grep -qiE -- "$pattern" "$WORK/brow.out"; then
                bad "$name" "no '$pattern' in: $(head -c 300 "$WORK/brow.out")"
        else
                pass "bulk file: $name → refused ($pattern)"
        fi
}
printf '{"sensors": []}' > "$WORK/bulk"
brow "JSON object instead of an array" "array"
printf '[1, 2]' > "$WORK/bulk"
brow "JSON array of numbers" "bulk|entry|id|string"
printf '[{"id": "x", "options": [1]}]' > "$WORK/bulk"
brow "options not an object" "option"
printf '[{"id": "x", "options": {"k": {"deep": 1}}}]' > "$WORK/bulk"
brow "nested option value" "option"
printf 'x,novalue\n' > "$WORK/bulk"
brow "CSV option without =" "option|="
{ printf 'id\n'; head -c 20000 /dev/zero | tr '\0' a; printf '\n'; } > "$WORK/bulk"
brow "CSV line of 20 KB" "long|line|id"
seq -f 'bulk-%06g' 1 100001 > "$WORK/bulk"
brow "100,001 entries" "100000|many|entries"
{ printf '['; for i in $(seq 1 2000); do printf '['; done; for i in $(seq 1 2000); do printf ']'; done; printf ']'; } > "$WORK/bulk"
brow "JSON nested 2,000 deep" "bulk|deep|nest|JSON|array"

cat "$WORK/rows.txt"
[ "$failures" = 0 ] || fail "$failures of $rows rows failed"
echo "PASS: $rows hostile file rows as expected"
