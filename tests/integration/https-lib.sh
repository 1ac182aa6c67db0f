# SPDX-License-Identifier: MIT
# The HTTPS front for the tests (sourced after lib.sh): edgeprov-dps-httpd on a port the
# kernel picks (--port 0, printed on stdout), with the throw-away PKI of pki_create.

DPS_HTTPD=${DPS_HTTPD:-$EDGEPROV_BUILDDIR/edgeprov-dps-httpd}
[ -x "$DPS_HTTPD" ] || fail "edgeprov-dps-httpd not built ($DPS_HTTPD)"
command -v curl > /dev/null || skip "curl is not installed"

# start_httpd DATAFILE [EXTRA OPTIONS...]: sets HTTPD_PORT, HTTPD_PID; log in $WORK/httpd.log
start_httpd() {
        local data=$1
        shift
        : > "$WORK/httpd.port"
        LOG_TARGET=console LOG_LEVEL=${HTTPD_LOG_LEVEL:-debug} "$DPS_HTTPD" --data "$data" --address 127.0.0.1 \
                --port 0 --cert "$WORK/pki/server.pem" --key "$WORK/pki/server.key" \
                --retry-after "${DPS_RETRY_AFTER:-1}" "$@" > "$WORK/httpd.port" 2>> "$WORK/httpd.log" &
        HTTPD_PID=$!
        ep_track "$HTTPD_PID"
        wait_for 15 grep -q '^[0-9]' "$WORK/httpd.port" || fail "edgeprov-dps-httpd did not start"
        HTTPD_PORT=$(head -n 1 "$WORK/httpd.port")
}

# dps_curl METHOD PATH [curl options...]: prints "STATUS BODY"; headers in $WORK/curl.headers
dps_curl() {
        local method=$1 path=$2
        shift 2
        rm -f "$WORK/curl.body" "$WORK/curl.headers"
        curl -sS --max-time 20 --cacert "$WORK/pki/ca.pem" -X "$method" -D "$WORK/curl.headers" \
                -o "$WORK/curl.body" -w '%{http_code}' "$@" "https://127.0.0.1:$HTTPD_PORT$path" || true
        printf ' '
        cat "$WORK/curl.body" 2> /dev/null || true
}
