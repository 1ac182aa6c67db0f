#!/bin/bash
# SPDX-License-Identifier: MIT
# The HTTPS front (edgeprov-dps-httpd) and the agent's HTTPS transport with symmetric keys:
# provisioning, polling with Retry-After, and bad inputs, each with its status and
# x-ms-error-code: wrong paths and methods, no api-version, oversize bodies (announced and
# chunked), oversize headers, wrong media type, bad and foreign SAS tokens, unknown operations;
# the device registration status lookup (POST …/registrations/{id});
# slow clients (slowloris) holding connections while another gateway provisions, then cut by the
# absolute request deadline, and an idle connection closed by the idle timeout.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/https-lib.sh"

pki_create "$WORK/pki"
service_init "$WORK/data.json" hub-a.example.test
KEY=$(new_key)
enroll "$WORK/data.json" gw1 "$KEY" --device-id gw1-dev
OTHER=$(new_key)
enroll "$WORK/data.json" never "$KEY"
start_httpd "$WORK/data.json" --db "$WORK/registrations.db" --timeout 3 --request-timeout 20 --per-ip-connections 40
P=/$ID_SCOPE/registrations/gw1
AV=api-version=2021-06-01
se=$(($(date +%s) + 3600))
SAS=$(sas_token "$KEY" "$ID_SCOPE/registrations/gw1" "$se")
JSON=(-H 'Content-Type: application/json; charset=utf-8')

# expect WHAT STATUS ERRORCODE -- curl arguments: checks status, x-ms-error-code and that the
# body is ProvisioningServiceErrorDetails
expect() {
        local what=$1 status=$2 code=$3 out
        shift 4
        out=$(dps_curl "$@")
        [ "${out%% *}" = "$status" ] || fail "$what: expected $status, got '$out'"
        if [ -n "$code" ]; then
                grep -qi "^x-ms-error-code: $code" "$WORK/curl.headers" || fail "$what: no x-ms-error-code $code: $(cat "$WORK/curl.headers")"
                grep -q "\"errorCode\":$code" "$WORK/curl.body" || fail "$what: body $(cat "$WORK/curl.body")"
                grep -q '"trackingId"' "$WORK/curl.body" || fail "$what: no trackingId"
        fi
}

# 1. the REST flow by hand: 202 + Location + Retry-After, then 200 assigned
out=$(dps_curl PUT "$P/register?$AV" "${JSON[@]}" -H "Authorization: $SAS" --data '{"registrationId":"gw1"}')
[ "${out%% *}" = 202 ] || fail "register: $out"
grep -qi '^retry-after: 1' "$WORK/curl.headers" || fail "no retry-after: $(cat "$WORK/curl.headers")"
grep -qi "^location: $P/operations/" "$WORK/curl.headers" || fail "no Location: $(cat "$WORK/curl.headers")"
grep -qi '^content-type: application/json' "$WORK/curl.headers" || fail "content type"
opid=$(sed -n 's/.*"operationId":"\([^"]*\)".*/\1/p' "$WORK/curl.body")
[ -n "$opid" ] || fail "no operationId: $out"
for i in $(seq 1 50); do
        out=$(dps_curl GET "$P/operations/$opid?$AV" -H "Authorization: $SAS")
        [ "${out%% *}" = 200 ] && break
        sleep 0.2
done
[ "${out%% *}" = 200 ] || fail "poll: $out"
grep -q '"status":"assigned"' "$WORK/curl.body" || fail "poll body: $out"
grep -q '"deviceId":"gw1-dev"' "$WORK/curl.body" || fail "poll body: $out"
ETAG=$(sed -n 's/.*"etag":"\([^"]*\)".*/\1/p' "$WORK/curl.body")
[ -n "$ETAG" ] || fail "no etag in the result: $out"

# 2. bad inputs
expect "unknown path" 404 404001 -- GET "/nope?$AV"
expect "path with extra segment" 404 404001 -- PUT "$P/register/x?$AV" "${JSON[@]}" --data '{}'
expect "empty segment" 404 404001 -- PUT "/$ID_SCOPE/registrations//register?$AV" "${JSON[@]}" --data '{}'
expect "encoded slash in id" 404 404001 -- PUT "/$ID_SCOPE/registrations/a%2Fb/register?$AV" --data '{}'
expect "GET on register" 405 405001 -- GET "$P/register?$AV"
grep -qi '^allow: PUT' "$WORK/curl.headers" || fail "405 without Allow: PUT"
expect "DELETE on operation" 405 405001 -- DELETE "$P/operations/x?$AV"
# device registration status lookup: the record the poll returned, same etag; SAS required
out=$(dps_curl POST "$P?$AV" "${JSON[@]}" -H "Authorization: $SAS" --data '{"registrationId":"gw1"}')
[ "${out%% *}" = 200 ] || fail "status lookup: $out"
for f in '"registrationId":"gw1"' '"deviceId":"gw1-dev"' '"assignedHub":"hub-a.example.test"' '"status":"assigned"' \
        '"substatus":"initialAssignment"' "\"etag\":\"$ETAG\""; do
        grep -qF "$f" "$WORK/curl.body" || fail "status lookup: no $f in $out"
done
expect "status lookup without SAS" 401 401002 -- POST "$P?$AV" "${JSON[@]}" --data '{}'
expect "status lookup, foreign key" 401 401002 -- POST "$P?$AV" "${JSON[@]}" \
        -H "Authorization: $(sas_token "$OTHER" "$ID_SCOPE/registrations/gw1" "$se")" --data '{}'
expect "status lookup, bad body" 400 400004 -- POST "$P?$AV" "${JSON[@]}" -H "Authorization: $SAS" --data '[1'
expect "status lookup, never registered" 404 404202 -- POST "/$ID_SCOPE/registrations/never?$AV" \
        -H "Authorization: $(sas_token "$KEY" "$ID_SCOPE/registrations/never" "$se")"
expect "no api-version" 400 400004 -- PUT "$P/register" "${JSON[@]}" -H "Authorization: $SAS" --data '{}'
expect "bad id" 400 400004 -- PUT "/$ID_SCOPE/registrations/-bad-/register?$AV" "${JSON[@]}" --data '{}'
expect "wrong media type" 415 415001 -- PUT "$P/register?$AV" -H 'Content-Type: text/plain' -H "Authorization: $SAS" --data '{}'
head -c 200000 /dev/zero | tr '\0' 'a' > "$WORK/big.json"
expect "oversize body" 413 413001 -- PUT "$P/register?$AV" "${JSON[@]}" -H "Authorization: $SAS" --data-binary "@$WORK/big.json"
expect "oversize chunked body" 413 413001 -- PUT "$P/register?$AV" "${JSON[@]}" -H 'Transfer-Encoding: chunked' -H "Authorization: $SAS" --data-binary "@$WORK/big.json"
out=$(dps_curl PUT "$P/register?$AV" "${JSON[@]}" -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' b)" --data '{}')
case "${out%% *}" in 413 | 431) ;; *) fail "oversize header: '$out'" ;; esac
expect "no SAS" 401 401002 -- PUT "$P/register?$AV" "${JSON[@]}" --data '{"registrationId":"gw1"}'
BAD=$(sas_token "$OTHER" "$ID_SCOPE/registrations/gw1" "$se")
expect "bad SAS" 401 401002 -- PUT "$P/register?$AV" "${JSON[@]}" -H "Authorization: $BAD" --data '{"registrationId":"gw1"}'
OLD=$(sas_token "$KEY" "$ID_SCOPE/registrations/gw1" $(($(date +%s) - 10)))
expect "expired SAS" 401 401002 -- PUT "$P/register?$AV" "${JSON[@]}" -H "Authorization: $OLD" --data '{"registrationId":"gw1"}'
expect "garbage SAS" 401 401002 -- PUT "$P/register?$AV" "${JSON[@]}" -H 'Authorization: SharedAccessSignature x' --data '{}'
expect "foreign scope" 401 401002 -- PUT "/0ne00000FFF/registrations/gw1/register?$AV" "${JSON[@]}" -H "Authorization: $SAS" --data '{}'
expect "id mismatch" 400 400003 -- PUT "$P/register?$AV" "${JSON[@]}" -H "Authorization: $SAS" --data '{"registrationId":"gw2"}'
expect "malformed body" 400 400002 -- PUT "$P/register?$AV" "${JSON[@]}" -H "Authorization: $SAS" --data '{"registrationId":'
expect "unknown operation" 404 404203 -- GET "$P/operations/nope?$AV" -H "Authorization: $SAS"
expect "poll without SAS" 401 401002 -- GET "$P/operations/$opid?$AV"
# plain HTTP on the TLS port gets no answer
out=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTPD_PORT$P/register?$AV" 2>&1 || true)
case "$out" in 000* | *"Empty reply"* | *reset* | *"Recv failure"*) ;; *) fail "plain HTTP answered: $out" ;; esac

# 3. slow clients: 30 slowloris connections (a header line a second, never finishing) and one
# idle connection, while the gateway provisions over HTTPS
slow_pgids=()
cleanup_slow() { local g; for g in "${slow_pgids[@]}"; do kill -- -"$g" 2> /dev/null || true; done; }
trap 'cleanup_slow; ep_cleanup' EXIT
for i in $(seq 1 30); do
        setsid bash -c "{ printf 'PUT $P/register?$AV HTTP/1.1\r\nHost: x\r\n'; \
                while sleep 1; do printf 'X-Slow: %s\r\n' \$RANDOM; done; } | \
                openssl s_client -quiet -connect 127.0.0.1:$HTTPD_PORT > $WORK/slow-$i.log 2>&1; \
                echo closed > $WORK/slow-$i.closed" &
        slow_pgids+=($!)
done
# idle: TLS up, then nothing; the front closes it after --timeout 3
setsid bash -c "openssl s_client -quiet -connect 127.0.0.1:$HTTPD_PORT < <(sleep 60) > $WORK/idle.log 2>&1; \
        echo closed > $WORK/idle.closed" &
slow_pgids+=($!)
# all 31 are connected to the front (ESTABLISHED, local port = the front's, in /proc/net/tcp)
established() {
        local hex
        hex=$(printf '%04X' "$HTTPD_PORT")
        [ "$(awk -v p=":$hex" '$2 ~ p"$" && $4 == "01"' /proc/net/tcp | wc -l)" -ge "$1" ]
}
wait_for 30 established 31 || fail "the slow clients did not all connect"

BROKER_PORT=$HTTPD_PORT write_agent_conf "$WORK/edgeprovd.conf" "$WORK/state" "$WORK/gw1.key"
printf '%s' "$KEY" > "$WORK/gw1.key"
chmod 0600 "$WORK/gw1.key"
sed -i "s|^        port = .*|&\n        transport = \"https\";|" "$WORK/edgeprovd.conf"
start=$SECONDS
start_agent "$WORK/edgeprovd.conf" "$WORK/agent.log"
wait_for 30 log_has "$WORK/agent.log" "assigned to hub" || fail "not assigned while slow clients were connected"
ep_log "assigned over HTTPS in $((SECONDS - start)) s with 30 slowloris connections open"
ep_stop "$AGENT_PID" || true
grep -q "over https" "$WORK/agent.log" || fail "agent did not use HTTPS"
[ "$(json_get "$WORK/state/state.json" deviceId)" = gw1-dev ] || fail "state: $(cat "$WORK/state/state.json")"
wait_for 15 test -e "$WORK/idle.closed" || fail "the idle connection was not closed by the timeout"
kill -0 "$HTTPD_PID" || fail "the front died"
# the trickling requests are cut at --request-timeout 20 although they are never idle
all_slow_closed() { [ "$(ls "$WORK"/slow-*.closed 2> /dev/null | wc -l)" -ge 30 ]; }
wait_for 60 all_slow_closed || fail "slowloris connections outlived --request-timeout: $(ls "$WORK"/slow-*.closed 2> /dev/null | wc -l) of 30 closed"
[ "$(grep -c 'request was not complete after 20 s' "$WORK/httpd.log")" -ge 30 ] ||
        fail "the front did not say why it closed the slow connections"
cleanup_slow
out=$(dps_curl GET "$P/operations/$opid?$AV" -H "Authorization: $SAS")
[ "${out%% *}" = 200 ] || fail "front unusable after the slow clients: $out"

# no key or SAS signature in the logs
sig=$(sed -n 's/.*sig=\([^&]*\).*/\1/p' <<< "$SAS")
! grep -rqF -e "$KEY" -e "$sig" "$WORK"/*.log || fail "a secret reached a log"

EP_STATUS=0
