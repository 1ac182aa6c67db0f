#!/bin/bash
# SPDX-License-Identifier: MIT
# Custom allocation through the HTTPS front (edgeprov-dps-httpd): the webhook runs while the
# device polls (202 assigning), its hub and initial twin reach the 200; and the front does not
# wake up while it has nothing to do (its webhook/latency tick runs only while there is work):
# counted as context switches of the idle process, before and after the registration.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/https-lib.sh"
command -v python3 > /dev/null || skip "python3 not installed"

pki_create "$WORK/pki"
service_init "$WORK/data.json" hub-a.example.test hub-b.example.test
KEY=$(new_key)
python3 "$EDGEPROV_SRCDIR/tests/integration/webhook-server.py" "$WORK/webhook.port" "$WORK/webhook.log" 2 \
        > "$WORK/webhook.out" 2>&1 &
ep_track $!
wait_for 20 test -s "$WORK/webhook.port" || fail "the webhook server did not start: $(cat "$WORK/webhook.out")"
HOOK=http://127.0.0.1:$(cat "$WORK/webhook.port")
python3 - "$WORK/data.json" "$KEY" "$HOOK/slow" << 'PY'
import json, sys
path, key, url = sys.argv[1:4]
d = json.load(open(path))
d["individualEnrollments"].append({
    "registrationId": "hooked",
    "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}},
    "allocationPolicy": "custom",
    "customAllocationDefinition": {"webhookUrl": url, "apiVersion": "2021-10-01"},
})
json.dump(d, open(path, "w"), indent=2)
PY
HTTPD_LOG_LEVEL=info start_httpd "$WORK/data.json"

# wakeups PID SECONDS: voluntary + involuntary context switches of every thread over SECONDS
wakeups() {
        local a b
        a=$(cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ { n += $2 } END { print n }')
        sleep "$2"
        b=$(cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ { n += $2 } END { print n }')
        echo $((b - a))
}
sleep 1
idle=$(wakeups "$HTTPD_PID" 3)
echo "idle front: $idle context switches in 3 s"
[ "$idle" -le 5 ] || fail "the idle front woke up $idle times in 3 s"

P=/$ID_SCOPE/registrations/hooked
AV=api-version=2021-06-01
SAS=$(sas_token "$KEY" "$ID_SCOPE/registrations/hooked" $(($(date +%s) + 3600)))
out=$(dps_curl PUT "$P/register?$AV" -H 'Content-Type: application/json' -H "Authorization: $SAS" \
        --data '{"registrationId":"hooked"}')
[ "${out%% *}" = 202 ] || fail "register: $out"
opid=$(sed -n 's/.*"operationId":"\([^"]*\)".*/\1/p' "$WORK/curl.body")
[ -n "$opid" ] || fail "no operationId: $out"
out=$(dps_curl GET "$P/operations/$opid?$AV" -H "Authorization: $SAS")
[ "${out%% *}" = 202 ] && echo "$out" | grep -q '"status":"assigning"' || fail "poll while the webhook runs: $out"
for i in $(seq 1 60); do
        out=$(dps_curl GET "$P/operations/$opid?$AV" -H "Authorization: $SAS")
        [ "${out%% *}" = 202 ] || break
        sleep 0.25
done
[ "${out%% *}" = 200 ] || fail "poll: $out"
grep -q '"status":"assigned"' "$WORK/curl.body" || fail "not assigned: $out"
grep -q '"assignedHub":"hub-b.example.test"' "$WORK/curl.body" || fail "not the webhook's hub: $out"
grep -q '"plant":"north"' "$WORK/curl.body" || fail "no payload from the webhook: $out"
grep -q '"registrationId": *"hooked"' "$WORK/webhook.log" || fail "the webhook was not asked: $(cat "$WORK/webhook.log")"

sleep 1
idle=$(wakeups "$HTTPD_PID" 3)
echo "idle front after the webhook: $idle context switches in 3 s"
[ "$idle" -le 5 ] || fail "the front keeps waking up after the webhook: $idle in 3 s"
echo "ok"
