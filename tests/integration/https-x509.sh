#!/bin/bash
# X.509 attestation over HTTPS: edgeprov-dps-httpd requests TLS client certificates
# (--client-ca); a device certificate of an individual X.509 enrollment registers and polls
# without an Authorization header (curl, then edgeprovd with transport "https", whose
# certificate and key reach libcurl from the identity's SSL_CTX); a certificate of another CA
# and a missing certificate are refused with 401/401002.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/https-lib.sh"

pki_create "$WORK/pki"
service_init "$WORK/data.json" hub-x.example.test
mkdir -p "$WORK/dev"
cd "$WORK/dev"
"$DPSCTL" cert root --out root --cn "Fleet Root CA" > /dev/null 2>&1 || fail "cert root"
"$DPSCTL" cert root --out rogue --cn "Rogue Root CA" > /dev/null 2>&1 || fail "cert root (rogue)"
"$DPSCTL" cert device gw-x1 --ca root > /dev/null 2>&1 || fail "cert device"
"$DPSCTL" cert device gw-x9 --ca rogue --out gw-x9-rogue > /dev/null 2>&1 || fail "cert device (rogue)"
cd - > /dev/null
"$DPSCTL" --data "$WORK/data.json" enrollment add gw-x1 --x509-cert "$WORK/dev/gw-x1.cert.pem" --device-id gw-x1-dev \
        > /dev/null || fail "enrollment add --x509-cert"
cat "$WORK/dev/root.cert.pem" "$WORK/dev/rogue.cert.pem" > "$WORK/client-ca.pem"
start_httpd "$WORK/data.json" --client-ca "$WORK/client-ca.pem"
P=/$ID_SCOPE/registrations/gw-x1
AV=api-version=2021-06-01
CERT=(--cert "$WORK/dev/gw-x1.chain.pem" --key "$WORK/dev/gw-x1.key.pem")

out=$(dps_curl PUT "$P/register?$AV" "${CERT[@]}" -H 'Content-Type: application/json' --data '{"registrationId":"gw-x1"}')
[ "${out%% *}" = 202 ] || fail "X.509 register: $out"
opid=$(sed -n 's/.*"operationId":"\([^"]*\)".*/\1/p' "$WORK/curl.body")
for i in $(seq 1 50); do
        out=$(dps_curl GET "$P/operations/$opid?$AV" "${CERT[@]}")
        [ "${out%% *}" = 200 ] && break
        sleep 0.2
done
grep -q '"deviceId":"gw-x1-dev"' "$WORK/curl.body" || fail "X.509 poll: $out"

out=$(dps_curl PUT "$P/register?$AV" -H 'Content-Type: application/json' --data '{"registrationId":"gw-x1"}')
[ "${out%% *}" = 401 ] || fail "no certificate: $out"
out=$(dps_curl PUT "$P/register?$AV" --cert "$WORK/dev/gw-x9-rogue.chain.pem" --key "$WORK/dev/gw-x9-rogue.key.pem" \
        -H 'Content-Type: application/json' --data '{"registrationId":"gw-x1"}')
[ "${out%% *}" = 401 ] || fail "foreign certificate: $out"
grep -q '"errorCode":401002' "$WORK/curl.body" || fail "foreign certificate body: $out"

# edgeprovd with the X.509 identity over HTTPS
cat > "$WORK/edgeprovd.conf" << EOC
provisioning = {
        endpoint = "127.0.0.1";
        port = $HTTPD_PORT;
        transport = "https";
        id_scope = "$ID_SCOPE";
        registration_id = "gw-x1";
        ca_file = "$WORK/pki/ca.pem";
        attestation = {
                method = "x509";
                certificate_file = "$WORK/dev/gw-x1.chain.pem";
                key_file = "$WORK/dev/gw-x1.key.pem";
        };
};
agent = { state_directory = "$WORK/state"; retry_initial = 1; retry_max = 2; request_timeout = 10; };
EOC
start_agent "$WORK/edgeprovd.conf" "$WORK/agent.log"
wait_for 30 log_has "$WORK/agent.log" "assigned to hub" || fail "edgeprovd (X.509, HTTPS) not assigned"
ep_stop "$AGENT_PID" || true
grep -q "over https" "$WORK/agent.log" || fail "not over HTTPS"
[ "$(json_get "$WORK/state/state.json" deviceId)" = gw-x1-dev ] || fail "state: $(cat "$WORK/state/state.json")"
[ "$(json_get "$WORK/state/state.json" attestation)" = x509 ] || fail "state: $(cat "$WORK/state/state.json")"

EP_STATUS=0
