#!/bin/bash
# X.509 attestation with the device key held in the TPM (issue 6 part 4, docs/x509.md §4): swtpm
# (no resource manager: 3 transient object slots), keys made in the TPM (a TSS2 PEM key file by
# openssl -provider tpm2; a persistent handle by tpm2 tools), device certificates from the public
# keys (edgeprov-dpsctl cert device --public-key).  edgeprovd provisions over MQTT (group on a
# verified CA) with the TSS2 key and over HTTPS (individual enrollment) with the persistent key;
# no transient object is left in the TPM afterwards; the device key exists nowhere in plaintext;
# a TPM key that does not belong to the certificate is refused by --check-config.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/tpm-lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/https-lib.sh"
for tool in tpm2_createprimary tpm2_create tpm2_load tpm2_evictcontrol tpm2_flushcontext; do
        command -v "$tool" > /dev/null || skip "$tool is not installed (tpm2-tools)"
done
# swtpm waits forever for a second client: every TPM call is bounded
for tool in tpm2_createprimary tpm2_create tpm2_load tpm2_evictcontrol tpm2_flushcontext; do
        eval "$tool() { timeout --kill-after=5 30 $(command -v $tool) \"\$@\"; }"
done
tpm_openssl() { timeout --kill-after=5 30 openssl "$@" -provider tpm2 -provider default; }

mkdir -p "$WORK/tpm/state" "$WORK/broker" "$WORK/dev"
swtpm_start
export TPM2OPENSSL_TCTI=$TPM_TCTI
timeout 30 openssl list -providers -provider tpm2 2> /dev/null | grep -q tpm2 ||
        skip "the OpenSSL provider tpm2 is not installed (tpm2-openssl)"

# 1. the keys, made in the TPM: a TSS2 key file (MQTT) and a persistent key 0x81000010 (HTTPS)
cd "$WORK/dev"
tpm_openssl genpkey -algorithm EC -pkeyopt group:P-256 -out gw-t1.tss2 2> "$WORK/genpkey.log" ||
        fail "openssl genpkey -provider tpm2: $(cat "$WORK/genpkey.log")"
chmod 0600 gw-t1.tss2
grep -q 'BEGIN TSS2 PRIVATE KEY' gw-t1.tss2 || fail "not a TSS2 key file"
openssl pkey -in gw-t1.tss2 -noout 2> /dev/null && fail "the TSS2 key file is usable without the TPM"
tpm_openssl pkey -in gw-t1.tss2 -pubout -out gw-t1.pub.pem 2> /dev/null || fail "public key of gw-t1.tss2"
# (tpm2 tools leave their objects loaded without a resource manager: flushed after each step)
flush() { tpm2_flushcontext -T "$TPM_TCTI" -t > /dev/null 2>&1 || fail "tpm2_flushcontext"; }
tpm2_createprimary -T "$TPM_TCTI" -C o -G ecc -c primary.ctx > /dev/null 2>&1 || fail "tpm2_createprimary"
flush
tpm2_create -T "$TPM_TCTI" -C primary.ctx -G ecc256:ecdsa-sha256 -u h1.pub -r h1.priv > /dev/null 2>&1 ||
        fail "tpm2_create"
flush
tpm2_load -T "$TPM_TCTI" -C primary.ctx -u h1.pub -r h1.priv -c h1.ctx > /dev/null 2>&1 || fail "tpm2_load"
tpm2_evictcontrol -T "$TPM_TCTI" -C o -c h1.ctx 0x81000010 > /dev/null 2>&1 || fail "tpm2_evictcontrol"
flush
tpm_openssl pkey -in handle:0x81000010 -pubout -out gw-h1.pub.pem 2> /dev/null || fail "public key of 0x81000010"
[ "$(tpm_count handles-transient)" = 0 ] || fail "transient objects left after making the keys"

# 2. the device PKI: a root CA, device certificates for the TPM public keys
"$DPSCTL" cert root --out root --cn "Fleet Root CA" > /dev/null 2>&1 || fail "cert root"
"$DPSCTL" cert device gw-t1 --ca root --public-key gw-t1.pub.pem > /dev/null 2>&1 || fail "cert device gw-t1 --public-key"
"$DPSCTL" cert device gw-h1 --ca root --public-key gw-h1.pub.pem > /dev/null 2>&1 || fail "cert device gw-h1 --public-key"
[ -e gw-t1.key.pem ] && fail "cert device --public-key wrote a key file"
cd - > /dev/null

# 3. the service: an X.509 listener; the root CA added and verified; a group on it
pki_create "$WORK/pki"
service_init "$WORK/data.json" hub-t.example.test
ADMIN_PW=$(openssl rand -hex 16)
ep_secret "$ADMIN_PW"
( umask 077; printf '%s\n' "$ADMIN_PW" > "$WORK/broker/admin.pw" )
X509_PORT=$(random_port)
while port_open "$X509_PORT"; do X509_PORT=$(random_port); done
{
        echo "plugin_opt_registrations_db $WORK/broker/registrations.db"
        echo "plugin_opt_admin_username dps-admin"
        echo "plugin_opt_admin_password_file $WORK/broker/admin.pw"
        echo "listener $X509_PORT 127.0.0.1"
        echo "certfile $WORK/broker/server.pem"
        echo "keyfile $WORK/broker/server.key"
        echo "cafile $WORK/dev/root.cert.pem"
        echo "require_certificate true"
        echo "use_identity_as_username false"
} > "$WORK/extra.conf"
start_broker "$WORK/data.json" "$WORK/extra.conf"
wait_for 10 port_open "$X509_PORT" || fail "the X.509 listener is not open"
dpsctl() { "$DPSCTL" --data "$WORK/data.json" --broker "127.0.0.1:$BROKER_PORT" --cafile "$WORK/pki/ca.pem" \
        --admin-password-file "$WORK/broker/admin.pw" "$@"; }
dpsctl ca add fleet-root "$WORK/dev/root.cert.pem" > /dev/null || fail "ca add"
CODE=$(dpsctl ca verification-code fleet-root) || fail "verification-code"
(cd "$WORK/dev" && "$DPSCTL" cert verification "$CODE" --ca root --out verify > /dev/null 2>&1) ||
        fail "cert verification"
dpsctl ca verify fleet-root "$WORK/dev/verify.cert.pem" > /dev/null || fail "ca verify"
"$DPSCTL" --data "$WORK/data.json" group add fleet --ca fleet-root --hub hub-t.example.test || fail "group add --ca"
"$DPSCTL" --data "$WORK/data.json" enrollment add gw-h1 --x509-cert "$WORK/dev/gw-h1.cert.pem" \
        --device-id gw-h1-dev > /dev/null || fail "enrollment add --x509-cert"
sleep 1.1 # the plugin looks at the data file at most once a second

# agent_conf NAME PORT TRANSPORT CERT KEY
agent_conf() {
        cat > "$WORK/$1.conf" << EOC
provisioning = {
        endpoint = "127.0.0.1";
        port = $2;
        transport = "$3";
        id_scope = "$ID_SCOPE";
        ca_file = "$WORK/pki/ca.pem";
        attestation = { method = "x509"; certificate_file = "$4"; key_file = "$5"; };
};
tpm = { tcti = "$TPM_TCTI"; };
agent = { state_directory = "$WORK/state-$1"; retry_initial = 1; retry_max = 2; request_timeout = 20; };
EOC
}

# 4. a TPM key that is not the certificate's: refused before any connection
agent_conf wrong "$X509_PORT" mqtt "$WORK/dev/gw-t1.chain.pem" "handle:0x81000010"
out=$(timeout 60 "$EDGEPROVD" --config "$WORK/wrong.conf" --check-config 2>&1) && fail "--check-config accepted a foreign TPM key"
echo "$out" | grep -q "does not belong" || fail "foreign TPM key message: $out"

# 5. MQTT with the TSS2 key file
agent_conf mqtt "$X509_PORT" mqtt "$WORK/dev/gw-t1.chain.pem" "$WORK/dev/gw-t1.tss2"
timeout 60 "$EDGEPROVD" --config "$WORK/mqtt.conf" --check-config > /dev/null 2>&1 || fail "--check-config refused the TPM key"
start_agent "$WORK/mqtt.conf" "$WORK/agent-mqtt.log"
wait_for 60 test -s "$WORK/state-mqtt/state.json" || fail "no state file after 60 s (MQTT, TPM key)"
ep_stop "$AGENT_PID" || fail "edgeprovd (MQTT) did not stop cleanly"
log_has "$WORK/agent-mqtt.log" "key in the TPM" || fail "the agent did not use the TPM key"
[ "$(json_get "$WORK/state-mqtt/state.json" deviceId)" = gw-t1 ] || fail "state: $(cat "$WORK/state-mqtt/state.json")"
[ "$(json_get "$WORK/state-mqtt/state.json" assignedHub)" = hub-t.example.test ] ||
        fail "state: $(cat "$WORK/state-mqtt/state.json")"
log_has "$WORK/broker/mosquitto.log" "Registration 'gw-t1' assigned to hub 'hub-t.example.test'.*enrollment group 'fleet'" ||
        fail "the service did not log the group assignment"
[ "$(tpm_count handles-transient)" = 0 ] || fail "edgeprovd left transient objects in the TPM (MQTT)"

# 6. HTTPS (libcurl) with the persistent key
start_httpd "$WORK/data.json" --client-ca "$WORK/dev/root.cert.pem"
agent_conf https "$HTTPD_PORT" https "$WORK/dev/gw-h1.chain.pem" "handle:0x81000010"
start_agent "$WORK/https.conf" "$WORK/agent-https.log"
wait_for 60 log_has "$WORK/agent-https.log" "assigned to hub" || fail "edgeprovd (HTTPS, persistent TPM key) not assigned"
ep_stop "$AGENT_PID" || fail "edgeprovd (HTTPS) did not stop cleanly"
grep -q "over https" "$WORK/agent-https.log" || fail "not over HTTPS"
[ "$(json_get "$WORK/state-https/state.json" deviceId)" = gw-h1-dev ] || fail "state: $(cat "$WORK/state-https/state.json")"
[ "$(tpm_count handles-transient)" = 0 ] || fail "edgeprovd left transient objects in the TPM (HTTPS)"
tpm_has_persistent 0x81000010 || fail "the persistent key is gone"

# 7. the device keys exist nowhere in plaintext: no PEM private key in the test directory has
# either device's public key
while IFS= read -r f; do
        pub=$(openssl pkey -in "$f" -pubout 2> /dev/null) || continue
        for d in gw-t1 gw-h1; do
                [ "$pub" = "$(cat "$WORK/dev/$d.pub.pem")" ] && fail "the private key of $d is in plaintext in $f"
        done
done < <(grep -rlE -- '-----BEGIN (EC |RSA |ENCRYPTED )?PRIVATE KEY-----' "$WORK")
grep -q 'PRIVATE KEY' "$WORK"/agent-*.log && fail "a private key reached the agent's log"

EP_STATUS=0
