#!/bin/bash
# SPDX-License-Identifier: MIT
# Idle memory (issue 5): the agent's helper process edgeprov-worker (src/agent/worker.h; the
# daemon itself maps none of these, see worker.sh) loads libcurl with dlopen() only when the
# HTTPS transport is used (src/agent/curl-dl.c), the TSS2 libraries only when a TPM is opened
# (tss2-dl.c).  An agent provisioned over MQTT with a symmetric key loads neither libcurl (nor
# GnuTLS, which only libcurl pulls in) nor libtss2-*; one configured for HTTPS loads it and is
# assigned.  The helper's log lines go to the daemon's stderr, so they are in the same log.  The error
# path "libcurl missing" cannot happen for real here (libcurl4 is installed), so it is produced
# by putting a broken libcurl.so.4 first in LD_LIBRARY_PATH (a file that is not a library:
# dlopen fails; then a library without curl's symbols: dlsym fails): the agent stays up, says
# which package to install and retries; once the broken file is gone it loads the real libcurl
# at its next attempt, without a restart.  Likewise a broken libtss2-esys.so.0 for a TPM-attested
# agent: a clear error naming the package.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/https-lib.sh"

pki_create "$WORK/pki"
service_init "$WORK/data.json" hub-a.example.test
for gw in gw1 gw2; do
        key=$(new_key)
        enroll "$WORK/data.json" "$gw" "$key" --device-id "$gw-dev"
        printf '%s' "$key" > "$WORK/$gw.key"
        chmod 0600 "$WORK/$gw.key"
done
start_broker "$WORK/data.json"
HTTPD_LOG_LEVEL=info start_httpd "$WORK/data.json"

# maps_has PID PATTERN
maps_has() { grep -q -- "$2" "/proc/$1/maps"; }

# 1. MQTT: provisioned without libcurl
REGISTRATION_ID=gw1 write_agent_conf "$WORK/mqtt.conf" "$WORK/state-mqtt" "$WORK/gw1.key"
LOG_TARGET=console LOG_LEVEL=debug "$EDGEPROVD" --config "$WORK/mqtt.conf" --bus-address=none > "$WORK/agent-mqtt.log" 2>&1 &
MQTT_PID=$!
ep_track "$MQTT_PID"
wait_for 30 log_has "$WORK/agent-mqtt.log" "assigned to hub" || fail "MQTT agent not assigned"
{ maps_has "$MQTT_PID" libc.so && maps_has "$MQTT_PID" libsystemd; } || fail "cannot read the agent's maps"
log_has "$WORK/agent-mqtt.log" "Started the exchange helper" || fail "the helper did not run"
! maps_has "$MQTT_PID" libcurl || fail "libcurl mapped by an MQTT agent: $(grep libcurl "/proc/$MQTT_PID/maps")"
! maps_has "$MQTT_PID" libgnutls || fail "GnuTLS mapped by an MQTT agent"
# nor the TSS2 libraries: they are loaded at the first use of a TPM (src/agent/tss2-dl.c)
! maps_has "$MQTT_PID" libtss2 || fail "TSS2 mapped by a symmetric-key agent: $(grep libtss2 "/proc/$MQTT_PID/maps")"
! log_has "$WORK/agent-mqtt.log" "Loaded libcurl" || fail "an MQTT agent loaded libcurl"
ep_stop "$MQTT_PID" || fail "MQTT agent exit status $?"

# 2. HTTPS with a broken libcurl.so.4 found first: clear error, the agent stays up and retries
REGISTRATION_ID=gw2 BROKER_PORT=$HTTPD_PORT write_agent_conf "$WORK/https.conf" "$WORK/state-https" "$WORK/gw2.key"
sed -i "s|^        port = .*|&\n        transport = \"https\";|" "$WORK/https.conf"
mkdir "$WORK/nocurl"
printf 'not a library\n' > "$WORK/nocurl/libcurl.so.4"
LD_LIBRARY_PATH=$WORK/nocurl LOG_TARGET=console LOG_LEVEL=debug "$EDGEPROVD" --config "$WORK/https.conf" \
        --bus-address=none > "$WORK/agent-https.log" 2>&1 &
HTTPS_PID=$!
ep_track "$HTTPS_PID"
wait_for 30 log_has "$WORK/agent-https.log" \
        "needs libcurl (libcurl.so.4): $WORK/nocurl/libcurl.so.4: .*; install the libcurl4 package" ||
        fail "no clear error for a libcurl that cannot be loaded"
kill -0 "$HTTPS_PID" || fail "the agent exited instead of retrying"
[ ! -e "$WORK/state-https/state.json" ] || fail "state written without a registration"
! maps_has "$HTTPS_PID" "$WORK/nocurl" || fail "the broken library stayed mapped"

# a library named libcurl.so.4 without curl's symbols (needs a C compiler)
if command -v "${CC:-cc}" > /dev/null; then
        echo 'int edgeprov_not_curl;' > "$WORK/stub.c"
        "${CC:-cc}" -shared -fPIC -Wl,-soname,libcurl.so.4 -o "$WORK/nocurl/libcurl.so.4.new" "$WORK/stub.c" ||
                fail "cannot build the stub library"
        mv "$WORK/nocurl/libcurl.so.4.new" "$WORK/nocurl/libcurl.so.4"
        wait_for 30 log_has "$WORK/agent-https.log" "needs libcurl (libcurl.so.4): symbol curl_global_init missing" ||
                fail "no clear error for a libcurl without its symbols"
        kill -0 "$HTTPS_PID" || fail "the agent exited instead of retrying"
else
        ep_log "no C compiler: the missing-symbol case is not tested"
fi

# 3. "installing the package": the next attempt loads the real libcurl and is assigned
rm "$WORK/nocurl/libcurl.so.4"
wait_for 60 log_has "$WORK/agent-https.log" "assigned to hub" || fail "HTTPS agent not assigned once libcurl loads"
grep -q "over https" "$WORK/agent-https.log" || fail "the agent did not use HTTPS"
[ "$(json_get "$WORK/state-https/state.json" deviceId)" = gw2-dev ] || fail "state: $(cat "$WORK/state-https/state.json")"
log_has "$WORK/agent-https.log" "Loaded libcurl.so.4" || fail "the HTTPS agent's helper did not load libcurl"
! maps_has "$HTTPS_PID" "libcurl" || fail "libcurl mapped by the daemon itself"
! maps_has "$HTTPS_PID" "$WORK/nocurl" || fail "the stub library stayed mapped"
ep_stop "$HTTPS_PID" || fail "HTTPS agent exit status $?"

# 4. TPM attestation with a broken libtss2-esys.so.0 found first (no TPM needed: the libraries
# are loaded before the TPM is opened): a clear error naming the package, exit status 1
mkdir "$WORK/notss2"
printf 'not a library\n' > "$WORK/notss2/libtss2-esys.so.0"
cat > "$WORK/tpm.conf" << EOC
provisioning = {
        endpoint = "127.0.0.1";
        id_scope = "$ID_SCOPE";
        ca_file = "$WORK/pki/ca.pem";
        attestation = { method = "tpm"; };
};
tpm = { tcti = "swtpm:host=127.0.0.1,port=9"; };
agent = { state_directory = "$WORK/state-tpm"; };
EOC
rc=0
LD_LIBRARY_PATH=$WORK/notss2 LOG_TARGET=console "$EDGEPROVD" --config "$WORK/tpm.conf" --print-tpm-identity \
        > "$WORK/tpm-identity.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "--print-tpm-identity without TSS2: exit status $rc"
grep -q "TPM support needs libtss2-esys.so.0: $WORK/notss2/libtss2-esys.so.0: .*; install the libtss2-esys-3.0.2-0 package" \
        "$WORK/tpm-identity.log" || fail "no clear error without TSS2: $(cat "$WORK/tpm-identity.log")"
EP_STATUS=0
