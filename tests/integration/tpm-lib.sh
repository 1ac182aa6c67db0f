# SPDX-License-Identifier: MIT
# swtpm for the TPM tests (sourced after lib.sh): a private, manufactured TPM per test
# (platform-notes.md A.1/A.2), on random loopback ports, stopped by PID on exit.

for tool in swtpm swtpm_setup swtpm_ioctl tpm2_getcap; do
        command -v "$tool" > /dev/null || skip "$tool is not installed (swtpm, swtpm-tools, tpm2-tools)"
done

# swtpm serves one client at a time and makes a second one wait forever: bound every
# tool call so that a test can fail but never hang
for tool in tpm2_getcap tpm2_readpublic swtpm_ioctl; do
        eval "$tool() { timeout --kill-after=5 30 $(command -v $tool) \"\$@\"; }"
done

# swtpm_manufacture: EK (persisted at 0x81010001) + EK certificate (NV 0x01c00002) in $WORK/tpm
swtpm_manufacture() {
        local d=$WORK/tpm
        mkdir -p "$d/state" "$d/localca" "$d/conf"
        cat > "$d/conf/swtpm_setup.conf" <<EOC
create_certs_tool= /usr/bin/swtpm_localca
create_certs_tool_config = $d/conf/swtpm-localca.conf
create_certs_tool_options = $d/conf/swtpm-localca.options
active_pcr_banks = sha256
EOC
        cat > "$d/conf/swtpm-localca.conf" <<EOC
statedir = $d/localca
signingkey = $d/localca/signkey.pem
issuercert = $d/localca/issuercert.pem
certserial = $d/localca/certserial
EOC
        printf -- '--platform-manufacturer Edgeprov\n--platform-version 2.1\n--platform-model Gateway\n' \
                > "$d/conf/swtpm-localca.options"
        swtpm_setup --tpm2 --tpmstate "$d/state" --config "$d/conf/swtpm_setup.conf" --create-ek-cert \
                --overwrite > "$WORK/swtpm-setup.log" 2>&1 || fail "swtpm_setup failed"
        cat "$d/localca/swtpm-localca-rootca-cert.pem" "$d/localca/issuercert.pem" > "$d/ek-ca.pem"
        EK_CA_FILE=$d/ek-ca.pem
}

# swtpm_start: starts swtpm on two random ports; sets SWTPM_PID, SWTPM_PORT, SWTPM_CTRL, TPM_TCTI
swtpm_start() {
        local d=$WORK/tpm try
        for try in 1 2 3 4 5 6 7 8; do
                SWTPM_PORT=$(random_port)
                SWTPM_CTRL=$((SWTPM_PORT + 1))
                port_open "$SWTPM_PORT" && continue
                port_open "$SWTPM_CTRL" && continue
                swtpm socket --tpm2 --server "type=tcp,port=$SWTPM_PORT,bindaddr=127.0.0.1" \
                        --ctrl "type=tcp,port=$SWTPM_CTRL,bindaddr=127.0.0.1" --tpmstate "dir=$d/state" \
                        --flags not-need-init,startup-clear --log "file=$WORK/swtpm.log,level=1" &
                SWTPM_PID=$!
                if wait_for 10 port_open "$SWTPM_PORT"; then
                        ep_track "$SWTPM_PID"
                        TPM_TCTI="swtpm:host=127.0.0.1,port=$SWTPM_PORT"
                        return 0
                fi
                kill "$SWTPM_PID" 2> /dev/null || true
                wait "$SWTPM_PID" 2> /dev/null || true
                grep -q "Address already in use" "$WORK/swtpm.log" || fail "swtpm did not start"
                : > "$WORK/swtpm.log"
        done
        fail "no free port for swtpm"
}

# swtpm_stop: saves state and stops it (SIGTERM)
swtpm_stop() {
        kill -TERM "$SWTPM_PID" 2> /dev/null || true
        wait "$SWTPM_PID" 2> /dev/null || true
}

# tpm_count CAP: number of handles of a kind (handles-transient, handles-loaded-session, handles-persistent)
tpm_count() { tpm2_getcap -T "$TPM_TCTI" "$1" | grep -c '^- ' || true; }
tpm_has_persistent() {
        local out
        out=$(tpm2_getcap -T "$TPM_TCTI" handles-persistent 2>&1) || ep_log "tpm2_getcap failed: $out"
        grep -qi -- "- $1\$" <<< "$out"
}

# tpm_enroll_gateway: the individual enrollment of this TPM's EK (from edgeprovd
# --print-tpm-identity, written to $WORK/ident.log) in $WORK/data.json as device gw-tpm; sets
# REGID and EK.  Leaves a $WORK/edgeprovd.conf for port 1: call write_tpm_conf once the broker runs.
tpm_enroll_gateway() {
        local ident
        BROKER_PORT=1 write_tpm_conf
        ident=$("$EDGEPROVD" --config "$WORK/edgeprovd.conf" --print-tpm-identity 2> "$WORK/ident.log") ||
                fail "--print-tpm-identity: $(cat "$WORK/ident.log")"
        REGID=$(sed -n 's/^registrationId: //p' <<< "$ident")
        EK=$(sed -n 's/^endorsementKey: //p' <<< "$ident")
        "$DPSCTL" --data "$WORK/data.json" enrollment add "$REGID" --tpm-ek "$EK" --device-id gw-tpm > /dev/null
}

# write_tpm_conf: $WORK/edgeprovd.conf for TPM attestation against $BROKER_PORT
write_tpm_conf() {
        cat > "$WORK/edgeprovd.conf" << EOC
provisioning = {
        endpoint = "127.0.0.1";
        port = $BROKER_PORT;
        id_scope = "$ID_SCOPE";
        ca_file = "$WORK/pki/ca.pem";
        attestation = { method = "tpm"; };
};
tpm = {
        tcti = "$TPM_TCTI";
        ek_ca_file = "$EK_CA_FILE";
};
agent = {
        state_directory = "$WORK/state";
        retry_initial = 1;
        retry_max = 2;
        request_timeout = 10;
};
EOC
}
