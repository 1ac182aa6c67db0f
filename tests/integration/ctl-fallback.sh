#!/bin/bash
# `edgeprovctl register --file` against an edgeprovd from before RegisterDevices (issue 5): the
# first RegisterDevices call gets UnknownMethod, and edgeprovctl falls back to RegisterDevice
# per sensor (pipelined).  The old daemon is tests/helpers/old-gateway, a fake: the real
# daemon has the method, so this path cannot be produced with it.  Checks: every valid line is
# registered exactly once with its options, the invalid ones are reported and make the exit
# status 1, and the object paths come back in the file's order.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/bus-lib.sh"
OLD=$EDGEPROV_BUILDDIR/tests/helpers/old-gateway
[ -x "$OLD" ] || fail "tests/helpers/old-gateway not built"

start_bus bus open
"$OLD" "$BUS_ADDRESS" > "$WORK/old.out" 2> "$WORK/old.log" &
OLD_PID=$!
ep_track "$OLD_PID"
wait_for 10 log_has "$WORK/old.log" "ready" || fail "the fake old daemon did not start"

N=300
{
        echo "# a sensor file with one line the (old) daemon refuses"
        for i in $(seq 1 "$N"); do printf 'fb-%03d,room=r%d\n' "$i" $((i % 7)); done
        echo 'bad id,room=r1'
} > "$WORK/sensors.csv"
rc=0
"$EDGEPROVCTL" --bus-address="$BUS_ADDRESS" --json register --file "$WORK/sensors.csv" > "$WORK/ctl.out" 2> "$WORK/ctl.err" ||
        rc=$?
[ "$rc" = 1 ] || fail "exit status $rc (1 expected: one invalid line): $(cat "$WORK/ctl.err")"
grep -q "bad id" "$WORK/ctl.err" || fail "the invalid line was not reported: $(cat "$WORK/ctl.err")"
ep_stop "$OLD_PID" || fail "old-gateway exit status $?"
grep -q "$N RegisterDevice calls" "$WORK/old.log" || fail "the fake counted: $(tail -n 1 "$WORK/old.log")"
# each valid sensor once, with its option
[ "$(sort "$WORK/old.out" | uniq -d | wc -l)" = 0 ] || fail "a sensor was registered twice"
for i in 1 150 300; do
        grep -qx "$(printf 'fb-%03d room=r%d' "$i" $((i % 7)))" "$WORK/old.out" || fail "fb-$i missing or without its option"
done
[ "$(wc -l < "$WORK/old.out")" = "$N" ] || fail "$(wc -l < "$WORK/old.out") registrations for $N sensors"
ep_log "fallback: $N sensors through RegisterDevice, one refused"
EP_STATUS=0
