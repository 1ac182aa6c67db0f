# SPDX-License-Identifier: MIT
# Sourced by scripts/check and scripts/demo: installs what edgeprov needs on Debian 12 and
# builds it.

EDGEPROV_BUILD_DEPS=(
        build-essential autoconf automake libtool pkg-config
        libsystemd-dev libtss2-dev libssl-dev libmosquitto-dev mosquitto-dev
        libjson-c-dev libconfig-dev libcmocka-dev libsqlite3-dev
        libcurl4-openssl-dev libmicrohttpd-dev
        systemd groff-base man-db
)
# scripts/package-test only: Debian package build and lint (tests/packaging/ in make check need
# systemd-analyze, journalctl and groff from the list above)
EDGEPROV_PACKAGE_DEPS=(
        debhelper dpkg-dev lintian util-linux iproute2
)
EDGEPROV_RUN_DEPS=(
        mosquitto mosquitto-clients openssl ca-certificates procps socat
        dbus-daemon util-linux
        # TPM attestation (issue 4): the TCTIs are dlopen()ed, so not found by shlibdeps
        swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0 libtss2-tcti-device0 xxd
        # X.509 keys held in the TPM (issue 6): the OpenSSL provider is loaded at run time
        tpm2-openssl
        # reliability (issue 8): record checks in the kill tests (jq), the valgrind pass
        jq valgrind
        # the HTTPS front's tests (issue 9) send hand-made requests
        curl
        # the local service's tests (issue 3): the allocation webhook and probe listeners are
        # python3 scripts, the records are checked with sqlite3, geoLatency runs in a netns (ip)
        python3 sqlite3 iproute2
)
# The tests run the official Azure IoT Node.js provisioning SDK (tests/node/, npm ci).  Debian's
# nodejs + npm only when missing: a nodesource nodejs already brings its own npm.
if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
        EDGEPROV_RUN_DEPS+=(nodejs npm)
fi

as_root() {
        if [ "$(id -u)" = 0 ]; then
                "$@"
        elif command -v sudo > /dev/null; then
                sudo "$@"
        else
                echo "error: need root (or sudo) to run: $*" >&2
                return 1
        fi
}

# ensure_packages PKG...: installs the ones that are missing, quietly
ensure_packages() {
        local missing=() p
        for p in "$@"; do
                dpkg-query -W -f='${Status}\n' "$p" 2> /dev/null | grep -q '^install ok installed$' || missing+=("$p")
        done
        [ ${#missing[@]} -gt 0 ] || return 0
        echo "Installing: ${missing[*]}" >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq > /dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
                > /dev/null
}

# build_tree SRCDIR BUILDDIR [CONFIGURE_ARGS...]
build_tree() {
        local src=$1 build=$2
        shift 2
        if [ ! -x "$src/configure" ] || [ "$src/configure.ac" -nt "$src/configure" ] ||
                [ "$src/Makefile.am" -nt "$src/Makefile.in" ]; then
                (cd "$src" && autoreconf -fi > /dev/null 2>&1) || { (cd "$src" && autoreconf -fi); return 1; }
        fi
        mkdir -p "$build"
        if [ ! -f "$build/Makefile" ] || [ "$src/configure" -nt "$build/config.status" ]; then
                (cd "$build" && "$src/configure" -q "$@") || return 1
        fi
        make -C "$build" -j"$(nproc)" -s > "$build/make.log" 2>&1 || { tail -n 50 "$build/make.log" >&2; return 1; }
}
