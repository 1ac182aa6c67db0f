#!/bin/bash
# SPDX-License-Identifier: MIT
# `edgeprovctl doctor`: a real TLS handshake with the service (verified against the configured
# CA and the endpoint's name/address) and the EK certificate read from the TPM (swtpm with an EK
# certificate from swtpm_setup --create-ek-cert).  Each failure names what is wrong and what to
# do: a foreign CA, a certificate for another name, a port that does not speak TLS, nothing
# listening, the TPM unreachable, the EK certificate removed from NV.
. "$EDGEPROV_SRCDIR/tests/integration/lib.sh"
. "$EDGEPROV_SRCDIR/tests/integration/tpm-lib.sh"

command -v tpm2_nvundefine > /dev/null || skip "tpm2_nvundefine is not installed (tpm2-tools)"
tpm2_nvundefine() { timeout --kill-after=5 30 "$(command -v tpm2_nvundefine)" "$@"; }

swtpm_manufacture
swtpm_start
pki_create "$WORK/pki"
pki_create "$WORK/other-pki"
service_init "$WORK/data.json" hub-a.example.test
start_broker "$WORK/data.json"
write_tpm_conf
mkdir -m 0700 -p "$WORK/state"
# the EK is persisted by edgeprovd on first use; the doctor only reads
"$EDGEPROVD" --config "$WORK/edgeprovd.conf" --print-tpm-identity > /dev/null 2>&1 || fail "--print-tpm-identity"

# doctor_json CONF: runs the doctor (no daemon: that check fails, the others are what we look at)
doctor() { timeout 60 "$EDGEPROVCTL" --config "$1" --bus-address=unix:path=/nonexistent doctor "${@:2}"; }
# field CHECK KEY < json
field() {
        python3 -c 'import json, sys
c = {o["check"]: o for o in json.load(sys.stdin)}[sys.argv[1]]
print(str(c.get(sys.argv[2], "")).lower() if isinstance(c.get(sys.argv[2]), bool) else c.get(sys.argv[2], ""))' "$@"
}
expect() { # JSON CHECK KEY PATTERN
        local got
        got=$(field "$2" "$3" <<< "$1") || fail "no '$2' check in: $1"
        grep -qE -- "$4" <<< "$got" || fail "doctor $2.$3 = '$got', expected /$4/"
}

# 1. all good: TLS verified, TPM answers, EK certificate matches and verifies
out=$(doctor "$WORK/edgeprovd.conf" --json) || true
expect "$out" tls ok true
expect "$out" tls detail "TLSv1\.[23] handshake with 127\.0\.0\.1:$BROKER_PORT, certificate .*CN ?= ?127\.0\.0\.1.* verified against $WORK/pki/ca.pem"
expect "$out" service ok true
expect "$out" tpm ok true
expect "$out" ek-certificate ok true
expect "$out" ek-certificate detail "matches the EK and verifies against the manufacturer CA"
expect "$out" clock ok true
expect "$out" daemon ok false
doctor "$WORK/edgeprovd.conf" > "$WORK/doctor-ok.txt" || true
grep -q "^OK    tls " "$WORK/doctor-ok.txt" || fail "human output: $(cat "$WORK/doctor-ok.txt")"
grep -q "^OK    ek-certificate " "$WORK/doctor-ok.txt" || fail "human output: $(cat "$WORK/doctor-ok.txt")"

# 2. a CA that did not sign the service's certificate
sed "s|$WORK/pki/ca.pem|$WORK/other-pki/ca.pem|" "$WORK/edgeprovd.conf" > "$WORK/foreign-ca.conf"
out=$(doctor "$WORK/foreign-ca.conf" --json) && fail "doctor succeeded with a foreign CA"
expect "$out" tls ok false
expect "$out" tls detail "certificate verification failed: (unable to get local issuer certificate|self-signed certificate in certificate chain)"
expect "$out" tls hint "provisioning.ca_file does not hold the CA"
doctor "$WORK/foreign-ca.conf" > "$WORK/doctor-ca.txt" || true
grep -q "^FAIL  tls " "$WORK/doctor-ca.txt" && grep -q "→ provisioning.ca_file" "$WORK/doctor-ca.txt" ||
        fail "human output: $(cat "$WORK/doctor-ca.txt")"

# 3. a certificate from the right CA, but for another name (openssl s_server as the service)
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=other.example" \
        -keyout "$WORK/wrong.key" -out "$WORK/wrong.csr" 2> /dev/null
printf 'subjectAltName=DNS:other.example\nextendedKeyUsage=serverAuth\n' > "$WORK/wrong.ext"
openssl x509 -req -in "$WORK/wrong.csr" -CA "$WORK/pki/ca.pem" -CAkey "$WORK/pki/ca.key" -CAcreateserial -days 1 \
        -extfile "$WORK/wrong.ext" -out "$WORK/wrong.pem" 2> /dev/null
start_s_server() { # ARGS...: sets S_PORT
        local try
        for try in 1 2 3 4 5 6; do
                S_PORT=$(random_port)
                port_open "$S_PORT" && continue
                "$@" -accept "127.0.0.1:$S_PORT" > "$WORK/s_server.log" 2>&1 < /dev/null &
                S_PID=$!
                ep_track "$S_PID"
                wait_for 10 port_open "$S_PORT" && return 0
                kill "$S_PID" 2> /dev/null || true
        done
        fail "no port for the test TLS server"
}
start_s_server openssl s_server -cert "$WORK/wrong.pem" -key "$WORK/wrong.key" -quiet
sed "s|port = $BROKER_PORT;|port = $S_PORT;|" "$WORK/edgeprovd.conf" > "$WORK/wrong-name.conf"
out=$(doctor "$WORK/wrong-name.conf" --json) && fail "doctor succeeded with a certificate for another name"
expect "$out" tls detail "certificate verification failed: IP address mismatch"
expect "$out" tls hint "not for this name"
kill "$S_PID" 2> /dev/null || true

# 4. a port that accepts TCP but does not speak TLS
python3 -c 'import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept(); c.recv(4096); c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n"); c.close()' > "$WORK/plain.port" &
PLAIN_PID=$!
ep_track "$PLAIN_PID"
wait_for 10 test -s "$WORK/plain.port" || fail "plain TCP server"
sed "s|port = $BROKER_PORT;|port = $(cat "$WORK/plain.port");|" "$WORK/edgeprovd.conf" > "$WORK/plain.conf"
out=$(doctor "$WORK/plain.conf" --json) && fail "doctor succeeded against a plain TCP port"
expect "$out" service ok true
expect "$out" tls detail "TLS handshake failed"
expect "$out" tls hint "TLS listener"

# 5. nothing listening
stop_broker
out=$(doctor "$WORK/edgeprovd.conf" --json) && fail "doctor succeeded with the service down"
expect "$out" service ok false
expect "$out" service detail "unreachable: Connection refused"
expect "$out" service hint "nothing listens there"

# 6. the EK certificate gone from NV: a failure for TPM attestation, a warning otherwise
tpm2_nvundefine -T "$TPM_TCTI" -C p 0x01c00002 > "$WORK/nvundefine.log" 2>&1 || fail "tpm2_nvundefine: $(cat "$WORK/nvundefine.log")"
out=$(doctor "$WORK/edgeprovd.conf" --json) || true
expect "$out" ek-certificate ok false
expect "$out" ek-certificate detail "no EK certificate in the TPM"
expect "$out" ek-certificate hint "swtpm_setup --create-ek-cert"
KEY=$(new_key)
printf '%s\n' "$KEY" > "$WORK/dps-key"
chmod 0600 "$WORK/dps-key"
write_agent_conf "$WORK/sym.conf" "$WORK/state" dps-key
printf 'tpm = {\n        tcti = "%s";\n};\n' "$TPM_TCTI" >> "$WORK/sym.conf"
out=$(doctor "$WORK/sym.conf" --json) || true
expect "$out" ek-certificate ok true
expect "$out" ek-certificate warning true
doctor "$WORK/sym.conf" > "$WORK/doctor-warn.txt" || true
grep -q "^WARN  ek-certificate" "$WORK/doctor-warn.txt" || fail "no WARN line: $(cat "$WORK/doctor-warn.txt")"

# 7. the TPM unreachable (nothing listens on the configured TCTI port)
sed "s|$TPM_TCTI|swtpm:host=127.0.0.1,port=1|" "$WORK/edgeprovd.conf" > "$WORK/no-tpm.conf"
out=$(doctor "$WORK/no-tpm.conf" --json) || true
expect "$out" tpm ok false
expect "$out" tpm detail "cannot open the TPM through \"swtpm:host=127.0.0.1,port=1\""
expect "$out" tpm hint "tpm.tcti"
echo "PASS: doctor: TLS verified / foreign CA / wrong name / not TLS / refused; EK certificate verified / absent; TPM unreachable"
