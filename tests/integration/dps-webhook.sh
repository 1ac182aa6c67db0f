#!/bin/bash
# Custom allocation (issue 3, dps-protocol.md §7.3) against a real local webhook
# (webhook-server.py): the AllocationRequest it receives (enrollment without keys,
# deviceRuntimeContext, linkedHubs), the hub / initialTwin / payload of its answer, the
# registration staying "assigning" (202) while a slow webhook runs without blocking the broker
# for other devices, and each failure as a "failed" registration with its errorCode:
# timeout 504001, HTTP 500 and unreachable 502001, garbage 502002, a hub not offered 400208.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
command -v mosquitto_rr > /dev/null || skip "mosquitto-clients not installed"
command -v python3 > /dev/null || skip "python3 not installed"

pki_create "$WORK/pki"
KEY=$(new_key)
A=hub-a.example.test
B=hub-b.example.test
B_DIR=$WORK/broker
DATA=$B_DIR/data.json
mkdir -p "$B_DIR"
service_init "$DATA" "$A" "$B"
enroll "$DATA" fast1 "$KEY"

# the webhook: a kernel-chosen port, its slow mode sleeps 6 s (the service waits 2 s)
python3 "$EDGEPROV_SRCDIR/tests/integration/webhook-server.py" "$WORK/webhook.port" "$WORK/webhook.log" 6 \
        > "$WORK/webhook.out" 2>&1 &
ep_track $!
wait_for 20 test -s "$WORK/webhook.port" || fail "the webhook server did not start: $(cat "$WORK/webhook.out")"
HOOK=http://127.0.0.1:$(cat "$WORK/webhook.port")
DEAD_PORT=$(random_port)
while port_open "$DEAD_PORT"; do DEAD_PORT=$(random_port); done

# custom enrollments written with the offline tool's generic path (JSON), one per webhook mode
python3 - "$DATA" "$KEY" "$HOOK" "$DEAD_PORT" << 'EOF'
import json, sys
path, key, hook, dead = sys.argv[1:5]
d = json.load(open(path))
for name, url in [("wh-ok", hook + "/ok"), ("wh-slow", hook + "/slow"), ("wh-garbage", hook + "/garbage"),
                  ("wh-500", hook + "/500"), ("wh-unlinked", hook + "/unlinked"),
                  ("wh-dead", "http://127.0.0.1:%s/ok" % dead)]:
    d["individualEnrollments"].append({
        "registrationId": name,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": url, "apiVersion": "2021-10-01"},
        "initialTwin": {"tags": {"allocatedBy": "enrollment"}},
    })
json.dump(d, open(path, "w"), indent=2)
EOF
{
        echo "plugin_opt_registrations_db $B_DIR/registrations.db"
        echo "plugin_opt_webhook_timeout 2"
} > "$WORK/extra.conf"
start_broker "$DATA" "$WORK/extra.conf"
later=$(( $(date +%s) + 3600 ))

# poll REGID OPID TOPIC_TAIL: TOPIC_TAIL is "200/?$rid=2" or "202/?$rid=2&retry-after=1"
poll() {
        dps_rr "$1" "\$dps/registrations/GET/iotdps-get-operationstatus/?\$rid=2&operationId=$2" \
                "\$dps/registrations/res/$3" ' '
}
# result REGID OPID: waits for the outcome in the log, then polls the 200
result() {
        wait_for 20 grep -q "Registration '$1' \(assigned\|failed\)" "$B_DIR/mosquitto.log" ||
                fail "$1: no outcome logged"
        poll "$1" "$2" '200/?$rid=2' || fail "$1: no 200"
}
jfield() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" | head -n 1; }

# --- a slow webhook: assigning while it runs, other devices are served meanwhile ---------------
slow_op=$(dps_register_op wh-slow)
[ -n "$slow_op" ] || fail "wh-slow: no 202"
out=$(poll wh-slow "$slow_op" '202/?$rid=2&retry-after=1') || fail "wh-slow: poll while the webhook runs is not 202"
echo "$out" | grep -q '"status":"assigning"' || fail "wh-slow: $out"
t0=$(date +%s%N)
fop=$(dps_register_op fast1)
out=$(poll fast1 "$fop" '200/?$rid=2') || fail "fast1 not answered while a webhook runs"
t1=$(date +%s%N)
echo "$out" | grep -q '"status":"assigned"' || fail "fast1: $out"
echo "fast1 registered in $(( (t1 - t0) / 1000000 )) ms while the slow webhook ran"
[ $(( (t1 - t0) / 1000000 )) -lt 5000 ] || fail "the broker was blocked by the webhook"
out=$(result wh-slow "$slow_op")
echo "$out" | grep -q '"status":"failed"' || fail "wh-slow: $out"
echo "$out" | grep -q '"errorCode":504001' || fail "wh-slow errorCode: $out"
echo "$out" | grep -q '"errorMessage":"The custom allocation webhook did not answer within 2000 ms"' ||
        fail "wh-slow errorMessage: $out"

# --- ok: hub, initial twin and payload from the webhook --------------------------------------
op=$(dps_register_op wh-ok '{"registrationId":"wh-ok","payload":{"model":"m7"}}')
[ -n "$op" ] || fail "wh-ok: no 202"
out=$(result wh-ok "$op")
[ "$(echo "$out" | jfield assignedHub)" = "$B" ] || fail "wh-ok: not on the webhook's hub: $out"
echo "$out" | grep -q '"substatus":"initialAssignment"' || fail "wh-ok substatus: $out"
echo "$out" | grep -q '"payload":{"plant":"north","echo":{"model":"m7"}}' || fail "wh-ok payload: $out"
"$DPSCTL" --data "$DATA" --db "$B_DIR/registrations.db" --json registration show wh-ok > "$WORK/rec.json" ||
        fail "no record for wh-ok"
grep -q '"allocatedBy": "webhook"' "$WORK/rec.json" || fail "the webhook's initialTwin was not stored: $(cat "$WORK/rec.json")"
grep -q "custom allocation webhook in [0-9]* ms" "$B_DIR/mosquitto.log" || fail "no webhook timing logged"
grep "by the custom allocation webhook in" "$B_DIR/mosquitto.log" | sed 's/.*webhook in \([0-9]*\) ms.*/webhook round trip: \1 ms/'

# the AllocationRequest as the webhook saw it
python3 - "$WORK/webhook.log" "$KEY" "$A" "$B" << 'EOF' || fail "AllocationRequest: see above"
import json, sys
log, key, a, b = sys.argv[1:5]
reqs = [json.loads(l) for l in open(log)]
ok = [r for r in reqs if r["path"] == "/ok"]
assert ok, "no request on /ok"
r = ok[0]
assert r["contentType"] == "application/json", r["contentType"]
body = r["body"]
assert body["individualEnrollment"]["registrationId"] == "wh-ok", body
assert body["individualEnrollment"]["allocationPolicy"] == "custom", body
ctx = body["deviceRuntimeContext"]
assert ctx["registrationId"] == "wh-ok", ctx
assert ctx["payload"] == {"model": "m7"}, ctx
assert ctx["symmetricKey"] == {}, ctx
assert "currentIotHubHostName" not in ctx, ctx
assert body["linkedHubs"] == [a, b], body["linkedHubs"]
assert key not in open(log).read(), "a symmetric key reached the webhook"
assert "primaryKey" not in json.dumps(reqs), "a key field reached the webhook"
EOF

# a second registration: the webhook sees the current assignment
op=$(dps_register_op wh-ok)
result wh-ok "$op" > /dev/null
python3 - "$WORK/webhook.log" "$B" << 'EOF' || fail "second AllocationRequest: see above"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1]) if '"/ok"' in l]
ctx = reqs[-1]["body"]["deviceRuntimeContext"]
assert ctx.get("currentIotHubHostName") == sys.argv[2], ctx
assert ctx.get("currentDeviceId") == "wh-ok", ctx
EOF

# --- bad answers --------------------------------------------------------------------------------
check_failed() {
        local id=$1 code=$2 text=$3 op out
        op=$(dps_register_op "$id")
        [ -n "$op" ] || fail "$id: no 202"
        out=$(result "$id" "$op")
        echo "$out" | grep -q '"status":"failed"' || fail "$id: $out"
        echo "$out" | grep -q "\"errorCode\":$code" || fail "$id: expected errorCode $code: $out"
        echo "$out" | grep -q "\"errorMessage\":\"$text" || fail "$id: expected message '$text': $out"
}
check_failed wh-garbage 502002 "The custom allocation webhook's answer is not a JSON object"
check_failed wh-500 502001 "The custom allocation webhook answered HTTP 500"
check_failed wh-unlinked 400208 "The custom allocation webhook chose hub 'not-linked.example.test', which is not one of the linked hubs offered"
check_failed wh-dead 502001 "The custom allocation webhook could not be reached"

# a failed custom allocation is recorded like any other
"$DPSCTL" --data "$DATA" --db "$B_DIR/registrations.db" --json registration show wh-500 | grep -q '"errorCode": 502001' ||
        fail "wh-500 record"
grep -qF "$KEY" "$B_DIR/mosquitto.log" "$WORK/webhook.log" && fail "the key leaked"
kill -0 "$BROKER_PID" || fail "mosquitto died"
echo "PASS: custom allocation webhook"
