# SPDX-License-Identifier: MIT
# Shared by the integration tests (sourced) and by scripts/demo.
# Starts real components on loopback with random ports, remembers their PIDs and stops
# them on exit.  Keeps the work directory (and prints the logs) when a test fails.

set -euo pipefail

EDGEPROV_BUILDDIR=${EDGEPROV_BUILDDIR:-$(pwd)}
EDGEPROV_SRCDIR=${EDGEPROV_SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
EDGEPROVD=${EDGEPROVD:-$EDGEPROV_BUILDDIR/edgeprovd}
# the daemon's helper process (src/agent/worker.h); installed in /usr/libexec/edgeprov
export EDGEPROV_WORKER=${EDGEPROV_WORKER:-$EDGEPROV_BUILDDIR/edgeprov-worker}
EDGEPROVCTL=${EDGEPROVCTL:-$EDGEPROV_BUILDDIR/edgeprovctl}
DPSCTL=${DPSCTL:-$EDGEPROV_BUILDDIR/edgeprov-dpsctl}
DPS_PLUGIN=${DPS_PLUGIN:-$EDGEPROV_BUILDDIR/.libs/edgeprov_dps.so}
ID_SCOPE=${ID_SCOPE:-0ne00000A0A}

declare -a EP_PIDS=()
EP_STATUS=1

ep_log() { printf '%s\n' "$*" >&2; }
fail() { ep_log "FAIL: $*"; exit 1; }
skip() { ep_log "SKIP: $*"; exit 77; }

# scripts/check's `make distcheck` proves that the tarball builds, installs and passes the unit
# and fuzz-replay tests; the integration tests ran on the same sources in the plain and the
# ASan+UBSan passes already, and a third run would cost CI ten minutes
[ -z "${EDGEPROV_DISTCHECK:-}" ] || skip "integration tests run in scripts/check's plain and sanitizer passes"

for tool in mosquitto openssl; do
        command -v "$tool" > /dev/null || skip "$tool is not installed"
done
[ -x "$EDGEPROVD" ] || fail "edgeprovd not built ($EDGEPROVD)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgeprov-test.XXXXXX")
chmod 0755 "$WORK"

# Reliability (issue 8): every test's logs, the secrets it used and the modes of the state
# files are kept in $EDGEPROV_LOG_ARCHIVE/<test>/ (default <builddir>/tests/logs; empty: off)
# for tests/integration/secrets.sh, which fails if a secret appears in any log.
EDGEPROV_LOG_ARCHIVE=${EDGEPROV_LOG_ARCHIVE-$EDGEPROV_BUILDDIR/tests/logs}
# ep_secret VALUE: remember a secret this test uses (keys, SAS signatures, passwords)
ep_secret() { [ -z "$1" ] || printf '%s\n' "$1" >> "$WORK/.secrets"; }
ep_archive() {
        [ -n "$EDGEPROV_LOG_ARCHIVE" ] || return 0
        local dest
        dest=$EDGEPROV_LOG_ARCHIVE/$(basename "$0" .sh)
        rm -rf "$dest"
        mkdir -p -m 0700 "$dest" 2> /dev/null || return 0
        (cd "$WORK" && find . -name '*.log' -type f -size -64M -print0 | xargs -0 -r cp --parents -t "$dest") \
                2> /dev/null || true
        # the recorded secrets and every line of the key and credential files the test made (a
        # log is what is searched, never a key file, whatever its name: genpkey.log)
        {
                cat "$WORK/.secrets" 2> /dev/null || true
                find "$WORK" -type f -size -16k ! -name '*.log' \( -name '*key*' -o -path '*/creds/*' \
                        -o -path '*/credentials/*' -o -name '*password*' \) -print0 | xargs -0 -r grep -h -I -v -e '^-----' -e '^$' 2> /dev/null || true
        } | awk 'length >= 16' | sort -u > "$dest/secrets"
        chmod 0600 "$dest/secrets"
        # the modes of the files the daemons wrote: state and sensor records
        find "$WORK" -type f \( -name 'state.json' -o -path '*/devices/*.json' \) -printf '%m %P\n' \
                > "$dest/modes" 2> /dev/null || true
}

ep_cleanup() {
        local rc=$?
        local pid
        for pid in "${EP_PIDS[@]}"; do
                kill "$pid" 2> /dev/null || true
        done
        for pid in "${EP_PIDS[@]}"; do
                wait "$pid" 2> /dev/null || true
        done
        ep_archive
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
                ep_log "---- test failed (rc=$rc); logs in $WORK ----"
                for f in "$WORK"/*.log "$WORK"/broker/*.log; do
                        [ -f "$f" ] || continue
                        ep_log "==== $f"
                        tail -n 60 "$f" >&2 || true
                done
        elif [ -z "${EDGEPROV_KEEP_WORK:-}" ]; then
                rm -rf "$WORK"
        fi
}
trap ep_cleanup EXIT
# make check runs every test under timeout(1): on SIGTERM, exit so that the EXIT trap stops
# what the test started
trap 'exit 124' TERM INT

ep_track() { EP_PIDS+=("$1"); }

# ep_stop PID: SIGTERM, wait, return the exit status
ep_stop() {
        local pid=$1 rc=0
        kill -TERM "$pid" 2> /dev/null || true
        wait "$pid" || rc=$?
        return $rc
}

# wait_for TIMEOUT_SECONDS COMMAND...: polls COMMAND every 0.1 s
# (EDGEPROV_TIMEOUT_SCALE multiplies every timeout: scripts/check's valgrind pass)
wait_for() {
        local timeout=$(($1 * ${EDGEPROV_TIMEOUT_SCALE:-1}))
        shift
        local deadline=$((SECONDS + timeout))
        until "$@" > /dev/null 2>&1; do
                [ $SECONDS -lt $deadline ] || return 1
                sleep 0.1
        done
}

log_has() { grep -q -- "$2" "$1"; }

random_port() { echo $((20000 + (RANDOM * 32768 + RANDOM) % 40000)); }

port_open() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

# pki_create DIR: a throw-away CA (EC P-256) and a TLS server certificate for 127.0.0.1
pki_create() {
        local d=$1
        mkdir -p "$d"
        openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 2 \
                -subj "/CN=edgeprov throw-away test CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
                -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
                2> /dev/null
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
                -subj "/CN=127.0.0.1" -keyout "$d/server.key" -out "$d/server.csr" 2> /dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
                > "$d/server.ext"
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
                -sha256 -extfile "$d/server.ext" -out "$d/server.pem" 2> /dev/null
        rm -f "$d/server.csr" "$d/server.ext"
        chmod 0600 "$d/ca.key" "$d/server.key"
}

new_key() {
        local k
        k=$(openssl rand -base64 64 | tr -d '\n')
        ep_secret "$k"
        printf '%s' "$k"
}

# mosquitto drops root privileges to user "mosquitto" before it reads its files
broker_chown() {
        if [ "$(id -u)" = 0 ] && id mosquitto > /dev/null 2>&1; then
                chown -R mosquitto: "$@"
        fi
}

# start_broker DATAFILE [EXTRA_CONFIG_FILE]: mosquitto + edgeprov_dps.so on a random
# loopback TLS port.  Sets BROKER_PORT and BROKER_PID.
start_broker() {
        local data=$1 extra=${2:-}
        local b="$WORK/broker" attempt
        mkdir -p "$b"
        cp "$WORK/pki/ca.pem" "$WORK/pki/server.pem" "$WORK/pki/server.key" "$b/"
        # mosquitto reads the plugin after dropping root: the build tree may not be
        # reachable for user mosquitto (a checkout under /root), so load a copy
        cp "$DPS_PLUGIN" "$b/edgeprov_dps.so"
        for attempt in 1 2 3 4 5 6 7 8; do
                BROKER_PORT=$(random_port)
                port_open "$BROKER_PORT" && continue
                {
                        echo "per_listener_settings false"
                        echo "allow_anonymous ${BROKER_ANONYMOUS:-false}"
                        echo "persistence false"
                        echo "log_dest file $b/mosquitto.log"
                        echo "log_type error"
                        echo "log_type warning"
                        echo "log_type notice"
                        echo "log_type information"
                        echo "log_type subscribe"
                        echo "log_timestamp_format %H:%M:%S"
                        echo "set_tcp_nodelay true"
                        if [ -n "$data" ]; then
                                echo "plugin $b/edgeprov_dps.so"
                                echo "plugin_opt_data_file $data"
                                echo "plugin_opt_retry_after ${DPS_RETRY_AFTER:-1}"
                        fi
                        [ -z "$extra" ] || cat "$extra"
                        echo "listener $BROKER_PORT 127.0.0.1"
                        echo "certfile $b/server.pem"
                        echo "keyfile $b/server.key"
                } > "$b/mosquitto.conf"
                : > "$b/mosquitto.log"
                broker_chown "$b"
                [ -z "$data" ] || broker_chown "$data"
                mosquitto -c "$b/mosquitto.conf" > "$b/stdout.log" 2>&1 &
                BROKER_PID=$!
                ep_track "$BROKER_PID"
                if wait_for 10 port_open "$BROKER_PORT"; then
                        return 0
                fi
                kill "$BROKER_PID" 2> /dev/null || true
                wait "$BROKER_PID" 2> /dev/null || true
                grep -q "Address already in use" "$b/mosquitto.log" "$b/stdout.log" || {
                        cat "$b/mosquitto.log" "$b/stdout.log" >&2
                        fail "mosquitto did not start"
                }
        done
        fail "no free port for mosquitto"
}

stop_broker() {
        ep_stop "$BROKER_PID" || true
}

# write_agent_conf FILE STATE_DIR KEYFILE [EXTRA_AGENT_LINES]
write_agent_conf() {
        local conf=$1 state=$2 key=$3 extra=${4:-}
        cat > "$conf" << EOC
provisioning = {
        endpoint = "127.0.0.1";
        port = $BROKER_PORT;
        id_scope = "$ID_SCOPE";
        registration_id = "${REGISTRATION_ID:-gw1}";
        ca_file = "$WORK/pki/ca.pem";
        attestation = {
                method = "symmetric_key";
                key_file = "$key";
        };
};
agent = {
        state_directory = "$state";
        retry_initial = 1;
        retry_max = ${AGENT_RETRY_MAX:-5};
        request_timeout = 10;
$extra
};
EOC
}

# start_agent CONF LOG: sets AGENT_PID
start_agent() {
        # emptied here, not by the redirection in the background child: a caller polling the log
        # right away must not find the previous run's lines (it would then signal a child that is
        # not yet edgeprovd, and bash's trap handler in that child swallows a SIGTERM)
        : > "$2"
        LOG_TARGET=console "$EDGEPROVD" --config "$1" > "$2" 2>&1 &
        AGENT_PID=$!
        ep_track "$AGENT_PID"
}

# sas_token KEY_B64 RESOURCE EXPIRY: an independent implementation with openssl (lowercase %2f)
sas_token() {
        local key=$1 resource=$2 se=$3 sr sig hexkey
        sr=$(printf '%s' "$resource" | sed 's|/|%2f|g')
        hexkey=$(printf '%s' "$key" | base64 -d | od -An -tx1 -v | tr -d ' \n')
        sig=$(printf '%s\n%s' "$sr" "$se" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | base64)
        ep_secret "$sig"
        sig=$(printf '%s' "$sig" | sed -e 's|+|%2B|g' -e 's|/|%2F|g' -e 's|=|%3D|g')
        ep_secret "$sig"
        printf 'SharedAccessSignature sr=%s&sig=%s&se=%s&skn=registration' "$sr" "$sig" "$se"
}

# json_get FILE KEY: a string member of a flat JSON document (good enough for our state file)
json_get() {
        sed -n "s/.*\"$2\": *\"\\([^\"]*\\)\".*/\\1/p" "$1" | head -n 1
}

# service_init DATAFILE HUB...: a data file with the scope and linked hubs
service_init() {
        local data=$1
        shift
        "$DPSCTL" --data "$data" init --id-scope "$ID_SCOPE" > /dev/null
        local hub
        for hub in "$@"; do
                "$DPSCTL" --data "$data" hub add "$hub" > /dev/null
        done
}

# enroll DATAFILE REGID KEY [dpsctl options...]: an individual symmetric-key enrollment
enroll() {
        local data=$1 regid=$2 key=$3
        shift 3
        "$DPSCTL" --data "$data" enrollment add "$regid" --primary-key "$key" "$@" > /dev/null
}

# gateway_group_init HUB...: $WORK/pki, new keys KEY (gateway) and GKEY (group), and
# $WORK/data.json linking the hubs with the enrollment gw1 (device gw1-device) and the group
# "sensors"
gateway_group_init() {
        pki_create "$WORK/pki"
        KEY=$(new_key)
        GKEY=$(new_key)
        service_init "$WORK/data.json" "$@"
        enroll "$WORK/data.json" gw1 "$KEY" --device-id gw1-device
        "$DPSCTL" --data "$WORK/data.json" group add sensors --primary-key "$GKEY" > /dev/null
}

# gateway_group_creds: $KEY and $GKEY as the credentials dps-key and group-key (0600) in
# CREDENTIALS_DIRECTORY=$WORK/creds
gateway_group_creds() {
        mkdir -m 0700 "$WORK/creds"
        printf '%s\n' "$KEY" > "$WORK/creds/dps-key"
        printf '%s\n' "$GKEY" > "$WORK/creds/group-key"
        chmod 0600 "$WORK/creds/dps-key" "$WORK/creds/group-key"
        export CREDENTIALS_DIRECTORY="$WORK/creds"
}

# crash_fleet_setup PREFIX N CONCURRENCY (kill-loop.sh, broker-kill.sh): the gateway gw1 and
# the group "sensors" in $WORK/data.json, mosquitto + plugin with its record store $DB, the
# keys in $CREDENTIALS_DIRECTORY, $WORK/edgeprovd.conf and a drop-in listing N downstream
# sensors PREFIX-001...  Sets KEY, GKEY, DB.
crash_fleet_setup() {
        local prefix=$1 n=$2 concurrency=$3 i
        gateway_group_init hub-a.example.test hub-b.example.test
        DB=$WORK/broker/registrations.db
        mkdir -p "$WORK/broker"
        echo "plugin_opt_registrations_db $DB" > "$WORK/extra.conf"
        start_broker "$WORK/data.json" "$WORK/extra.conf"
        gateway_group_creds
        AGENT_RETRY_MAX=2 write_agent_conf "$WORK/edgeprovd.conf" "$WORK/state" dps-key "};
downstream = {
        group_key_file = \"group-key\";
        concurrency = $concurrency;
        rate = 1000000;"
        mkdir -p "$WORK/edgeprovd.conf.d"
        {
                printf 'downstream = {\n        sensors = (\n'
                for i in $(seq 1 "$n"); do
                        printf '                "%s-%03d"%s\n' "$prefix" "$i" "$([ "$i" -lt "$n" ] && echo ,)"
                done
                printf '        );\n};\n'
        } > "$WORK/edgeprovd.conf.d/50-sensors.conf"
}

# dps_rr REGID REQUEST_TOPIC RESPONSE_TOPIC BODY: one MQTT request/response of device REGID (a SAS
# token of $KEY expiring at $later), waiting up to 10 s; prints the response payload
dps_rr() {
        mosquitto_rr -h 127.0.0.1 -p "$BROKER_PORT" --cafile "$WORK/pki/ca.pem" -V mqttv311 -q 1 \
                -i "$1" -u "$ID_SCOPE/registrations/$1/api-version=2019-03-31" \
                -P "$(sas_token "$KEY" "$ID_SCOPE/registrations/$1" "$later")" -t "$2" -e "$3" -m "$4" -W 10
}

# dps_register_op REGID [BODY]: a register request (by default {"registrationId": REGID});
# prints the operation id of the 202
dps_register_op() {
        local body=${2:-}
        [ -n "$body" ] || body="{\"registrationId\":\"$1\"}"
        dps_rr "$1" '$dps/registrations/PUT/iotdps-register/?$rid=1' '$dps/registrations/res/202/?$rid=1&retry-after=1' \
                "$body" | sed -n 's/.*"operationId":"\([^"]*\)".*/\1/p'
}
