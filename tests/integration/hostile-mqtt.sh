#!/bin/bash
# Hostile input over MQTT against the service (issue 8; tests/README.md, hostile-input matrix):
# real mosquitto + edgeprov_dps.so, requests from mosquitto_rr/mosquitto_pub.  Table-driven:
# each row sends one bad request and states the expected answer (an HTTP-style status on the
# response topic, and its errorCode), "none" (dropped, nobody gets anything) or "refused"
# (the CONNECT is not accepted).  After the table: the broker is still up, a good
# registration still works, and an eavesdropper subscribed to every response topic received
# nothing meant for others.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
command -v mosquitto_rr > /dev/null || skip "mosquitto-clients not installed"

pki_create "$WORK/pki"
KEY1=$(new_key)
KEY2=$(new_key)
GKEY=$(new_key)
service_init "$WORK/data.json" hub-a.example.test
enroll "$WORK/data.json" gw1 "$KEY1"
enroll "$WORK/data.json" gw2 "$KEY2"
"$DPSCTL" --data "$WORK/data.json" group add sensors --primary-key "$GKEY" > /dev/null
start_broker "$WORK/data.json"

later=$(($(date +%s) + 3600))
user() { printf '%s/registrations/%s/api-version=2019-03-31' "$ID_SCOPE" "$1"; }
tok() { sas_token "$1" "$ID_SCOPE/registrations/$2" "${3:-$later}"; }
# the device key of a group member: HMAC-SHA256(group key, registration id), base64
derived_key() {
        local hexkey
        hexkey=$(printf '%s' "$1" | base64 -d | od -An -tx1 -v | tr -d ' \n')
        printf '%s' "$2" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | base64
}
REG='$dps/registrations/PUT/iotdps-register/?$rid='
POLL='$dps/registrations/GET/iotdps-get-operationstatus/?$rid='

# an eavesdropper: gw2, authenticated, subscribed to every response topic
mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -i gw2 -u "$(user gw2)" \
        -P "$(tok "$KEY2" gw2)" -t '$dps/registrations/res/#' -v > "$WORK/eavesdropper.out" 2> "$WORK/eavesdropper.err" &
ep_track $!
wait_for 10 log_has "$WORK/broker/mosquitto.log" 'gw2 [01] \$dps/registrations/res/#' || fail "eavesdropper did not subscribe"

# one good registration of gw1, so that its operation id exists
out=$(mosquitto_rr -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 -i gw1 -u "$(user gw1)" \
        -P "$(tok "$KEY1" gw1)" -t "${REG}ok" -e '$dps/registrations/res/202/?$rid=ok&retry-after=1' \
        -m '{"registrationId":"gw1"}' -W 10) || fail "the good registration failed"
OP_GW1=$(echo "$out" | sed -n 's/.*"operationId":"\([^"]*\)".*/\1/p')
[ -n "$OP_GW1" ] || fail "no operationId: $out"

# row NAME CLIENT USERNAME PASSWORD TOPIC BODY_FILE EXPECT [ERRORCODE]
# EXPECT: a status (the reply to the client on $dps/registrations/res/<status>/?$rid=...),
# "none" (nothing comes back) or "refused" (no connection).
rows=0
failures=0
row() {
        local name=$1 client=$2 username=$3 password=$4 topic=$5 body=$6 expect=$7 code=${8:-} rid out rc=0 resp
        rows=$((rows + 1))
        # the reply goes to res/<status>/?$rid=<the request's rid> (empty when the topic is unusable)
        rid=${RID-$(printf '%s' "$topic" | sed -n 's/.*[?&]\$rid=\([^&]*\).*/\1/p')}
        resp="\$dps/registrations/res/$expect/?\$rid=$rid"
        [ "$expect" != 202 ] || resp="$resp&retry-after=1"
        [ "$expect" != none ] && [ "$expect" != refused ] || resp='$dps/registrations/res/000/?$rid=none'
        mosquitto_rr -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 -i "$client" \
                -u "$username" -P "$password" -t "$topic" -e "$resp" -m "$(cat "$body")" -W "${WAIT:-5}" -v \
                > "$WORK/row.out" 2> "$WORK/row.err" || rc=$?
        out=$(head -c 2000 "$WORK/row.out")
        case $expect in
        none)
                # nothing may come back on any topic: the broker log shows no reply to this client
                [ "$rc" != 0 ] && grep -qi "timed out" "$WORK/row.err" ||
                        { ep_log "row '$name': expected no answer, rc=$rc: $out $(cat "$WORK/row.err")"; failures=$((failures + 1)); return; }
                ;;
        refused)
                # mosquitto_rr: "Connection error: ..." and exit status 5 for a CONNACK refusal
                [ "$rc" = 5 ] && grep -qi "Connection error\|refused\|not authori" "$WORK/row.err" ||
                        { ep_log "row '$name': expected a refused CONNECT, got rc=$rc: $out $(cat "$WORK/row.err")"; failures=$((failures + 1)); return; }
                ;;
        *)
                # the plugin sends the reply to the client id whatever it subscribed to: compare the topic
                [ "$rc" = 0 ] && [ "${out%% *}" = "$resp" ] ||
                        { ep_log "row '$name': expected a reply on $resp, got (rc=$rc): ${out:0:300} $(cat "$WORK/row.err")"; failures=$((failures + 1)); return; }
                if [ -n "$code" ] && ! printf '%s' "$out" | grep -q "\"errorCode\":$code"; then
                        ep_log "row '$name': expected errorCode $code: $out"
                        failures=$((failures + 1))
                        return
                fi
                ;;
        esac
        echo "ok $rows - $name → $expect${code:+ $code}" >> "$WORK/rows.txt"
}
B=$WORK/bodies
mkdir -p "$B"
body() { printf '%s' "$2" > "$B/$1"; }
body good '{"registrationId":"gw1"}'
body empty ''
body array '[]'
body null 'null'
body string '"gw1"'
body number '42'
body rid-number '{"registrationId":42}'
body rid-null '{"registrationId":null}'
body garbage 'this is not json'
body truncated '{"registrationId":"gw1","payload":{"a":'
body trailing '{"registrationId":"gw1"} {}'
body dup-rid '{"registrationId":"gw1","registrationId":"gw2"}'
python_free_nest() { local n=$1 i s=''; for ((i = 0; i < n; i++)); do s="$s["; done; for ((i = 0; i < n; i++)); do s="$s]"; done; printf '%s' "$s"; }
printf '{"registrationId":"gw1","payload":%s}' "$(python_free_nest 200)" > "$B/deep200"
printf '{"registrationId":"gw1","payload":%s}' "$(python_free_nest 20000)" > "$B/deep20000"
printf '{"registrationId":"gw1","payload":"%s"}' "$(head -c 120000 /dev/zero | tr '\0' 'a')" > "$B/huge"
printf '{"registrationId":"gw1","payload":{"k":"\xff\xfe"}}' > "$B/bad-utf8"
printf '{"registrationId":"gw1\\u0000x"}' > "$B/nul"
printf '{"registrationId":"gw1","payload":"\\ud800"}' > "$B/lone-surrogate"
printf '{"registrationId":"%s"}' "$(head -c 5000 /dev/zero | tr '\0' 'g')" > "$B/long-rid"
printf '{"registrationId":"gw1","tpm":{"endorsementKey":"%s","storageRootKey":"AAAA"}}' "$(head -c 3000 /dev/urandom | base64 -w0)" > "$B/tpm-garbage"

U1=$(user gw1)
P1=$(tok "$KEY1" gw1)
# request bodies
row "register body empty (.NET sends none: accepted)" gw1 "$U1" "$P1" "${REG}e1" "$B/empty" 202
row "register body a JSON array" gw1 "$U1" "$P1" "${REG}e2" "$B/array" 400
row "register body null (counts as empty)" gw1 "$U1" "$P1" "${REG}e3" "$B/null" 202
row "register body a JSON string" gw1 "$U1" "$P1" "${REG}e4" "$B/string" 400
row "register body a number" gw1 "$U1" "$P1" "${REG}e5" "$B/number" 400
row "registrationId a number" gw1 "$U1" "$P1" "${REG}e6" "$B/rid-number" 400
row "registrationId null (absent: the username decides)" gw1 "$U1" "$P1" "${REG}e7" "$B/rid-null" 202
row "garbage instead of JSON" gw1 "$U1" "$P1" "${REG}e8" "$B/garbage" 400 400002
row "truncated JSON" gw1 "$U1" "$P1" "${REG}e9" "$B/truncated" 400 400002
row "JSON followed by more JSON" gw1 "$U1" "$P1" "${REG}e10" "$B/trailing" 400
row "payload nested 200 deep" gw1 "$U1" "$P1" "${REG}e11" "$B/deep200" 400
row "payload nested 20,000 deep" gw1 "$U1" "$P1" "${REG}e12" "$B/deep20000" 400 400002
row "body of 120 KB" gw1 "$U1" "$P1" "${REG}e13" "$B/huge" 413 413001
row "invalid UTF-8 in the payload" gw1 "$U1" "$P1" "${REG}e14" "$B/bad-utf8" 400
row "escaped NUL inside the registrationId" gw1 "$U1" "$P1" "${REG}e15" "$B/nul" 400
row "registrationId of 5,000 characters" gw1 "$U1" "$P1" "${REG}e16" "$B/long-rid" 400
row "TPM fields for a symmetric-key enrollment (ignored)" gw1 "$U1" "$P1" "${REG}e17" "$B/tpm-garbage" 202
# topics
row "unknown request type" gw1 "$U1" "$P1" '$dps/registrations/PUT/iotdps-unknown/?$rid=t1' "$B/good" 400
RID= row "register without \$rid" gw1 "$U1" "$P1" '$dps/registrations/PUT/iotdps-register/' "$B/good" 400
RID=t3 row "register with two \$rid (the first is answered)" gw1 "$U1" "$P1" '$dps/registrations/PUT/iotdps-register/?$rid=t3&$rid=t4' "$B/good" 400
row "poll without operationId" gw1 "$U1" "$P1" "${POLL}t5" "$B/empty" 400
row "poll with a 2,000-character operationId" gw1 "$U1" "$P1" "${POLL}t6&operationId=$(head -c 2000 /dev/zero | tr '\0' 'o')" "$B/empty" 400
row "poll with a bad %-escape in operationId" gw1 "$U1" "$P1" "${POLL}t7&operationId=%zz" "$B/empty" 400
row "poll of an unknown operation" gw1 "$U1" "$P1" "${POLL}t8&operationId=4.0000000000000000.00000000-0000-0000-0000-000000000000" "$B/empty" 404 404203
row "poll of another client's operation" gw2 "$(user gw2)" "$(tok "$KEY2" gw2)" "${POLL}t9&operationId=$OP_GW1" "$B/empty" 404 404203
WAIT=3 row "publish outside \$dps/registrations/" gw1 "$U1" "$P1" '$dps/other/?$rid=t10' "$B/good" none
WAIT=3 row "forged reply published to a response topic" gw1 "$U1" "$P1" '$dps/registrations/res/200/?$rid=t11' "$B/good" none
WAIT=3 row "a topic outside \$dps" gw1 "$U1" "$P1" 'devices/gw2/messages/events/?$rid=t12' "$B/good" none
# credentials
row "SAS of gw2 presented by gw1" gw1 "$U1" "$(tok "$KEY2" gw2)" "${REG}c1" "$B/good" 401 401002
row "SAS for gw1's resource signed with gw2's key" gw1 "$U1" "$(tok "$KEY2" gw1)" "${REG}c2" "$B/good" 401 401002
row "SAS expired a second ago" gw1 "$U1" "$(tok "$KEY1" gw1 $(($(date +%s) - 1)))" "${REG}c3" "$B/good" 401 401002
row "SAS without sig" gw1 "$U1" "SharedAccessSignature sr=$ID_SCOPE%2fregistrations%2fgw1&se=$later&skn=registration" "${REG}c4" "$B/good" 401 401002
row "password of 16 KB of garbage" gw1 "$U1" "$(head -c 12000 /dev/urandom | base64 -w0)" "${REG}c5" "$B/good" 401 401002
row "no password" gw1 "$U1" "" "${REG}c6" "$B/good" 401 401002
row "group member with a key derived from another key" s-1 "$(user s-1)" "$(tok "$(derived_key "$KEY1" s-1)" s-1)" "${REG}c7" "$B/empty" 401 401002
row "client id not the registration id" gw2 "$U1" "$P1" "${REG}c8" "$B/good" refused
row "another ID scope" gw1 "0ne99999999/registrations/gw1/api-version=2019-03-31" "$P1" "${REG}c9" "$B/good" refused
row "username without api-version (not ours: the broker's own auth)" gw1 "$ID_SCOPE/registrations/gw1" "$P1" "${REG}c10" "$B/good" refused

# the group member with the right derived key works (the row above is not refused for another reason)
row "group member with the right derived key" s-2 "$(user s-2)" "$(tok "$(derived_key "$GKEY" s-2)" s-2)" "${REG}c11" "$B/empty" 202

# a flood: 150 register requests on one connection as fast as they go: each is handled (the
# service keeps only the newest operations per registration), the broker stays up
before=$(grep -c "Registration 'gw1' assigned" "$WORK/broker/mosquitto.log" || true)
seq -f '{"registrationId":"gw1","payload":{"n":%g}}' 1 150 > "$B/flood-lines"
rows=$((rows + 1))
flooded() { [ $(($(grep -c "Registration 'gw1' assigned" "$WORK/broker/mosquitto.log") - before)) -ge 150 ]; }
if mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 -i gw1 -u "$U1" -P "$P1" \
        -t "${REG}flood" -l < "$B/flood-lines" 2> "$WORK/flood.err" && wait_for 60 flooded; then
        echo "ok $rows - flood of 150 register requests on one connection → all handled, broker up" >> "$WORK/rows.txt"
else
        ep_log "row 'flood': $(($(grep -c "Registration 'gw1' assigned" "$WORK/broker/mosquitto.log") - before)) of 150 handled: $(cat "$WORK/flood.err")"
        failures=$((failures + 1))
fi

kill -0 "$BROKER_PID" || fail "mosquitto died during the hostile rows"
# a good registration still works
out=$(mosquitto_rr -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 -i gw1 -u "$U1" -P "$P1" \
        -t "${REG}final" -e '$dps/registrations/res/202/?$rid=final&retry-after=1' -m '{"registrationId":"gw1"}' -W 10) ||
        fail "a good registration failed after the hostile rows"
# the eavesdropper got nothing (no reply is ever routed to another client)
[ ! -s "$WORK/eavesdropper.out" ] || fail "another client received replies: $(head -c 300 "$WORK/eavesdropper.out")"
cat "$WORK/rows.txt"
[ "$failures" = 0 ] || fail "$failures of $rows rows failed"
echo "PASS: $rows hostile MQTT rows as expected; broker up, good registration works, nothing leaked to an eavesdropper"
