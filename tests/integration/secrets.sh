#!/bin/bash
# Secrets never reach a log (issue 8): runs after every other test of the same `make check`
# (Makefile.am makes its .log depend on all the others') and reads what tests/integration/lib.sh
# archived for each of them in $EDGEPROV_LOG_ARCHIVE (default <builddir>/tests/logs/<test>/):
# every log the daemons wrote (edgeprovd's stderr, mosquitto's log with the plugin's lines,
# dbus-daemon, swtpm) and the secrets the test used (generated keys, SAS signatures, the lines
# of every key, credential and password file it made).  Fails if any secret, or anything
# shaped like a SAS signature, a TPM-issued authenticationKey or a private key, appears in any
# log, or if a state file or sensor record was not 0600.
set -uo pipefail

BUILD=${EDGEPROV_BUILDDIR:-$(pwd)}
ARCHIVE=${EDGEPROV_LOG_ARCHIVE-$BUILD/tests/logs}
# the minimum number of archived tests for the scan to mean something (the whole suite has ~20)
MIN_TESTS=${SECRETS_MIN_TESTS:-3}

fail() { echo "FAIL: $*" >&2; exit 1; }
[ -n "$ARCHIVE" ] && [ -d "$ARCHIVE" ] || { echo "SKIP: no archived test logs in '$ARCHIVE'" >&2; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/edgeprov-secrets.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cat "$ARCHIVE"/*/secrets 2> /dev/null | sort -u > "$tmp/all-secrets"
tests=$(find "$ARCHIVE" -mindepth 1 -maxdepth 1 -type d ! -name secrets | wc -l)
with_secrets=$(find "$ARCHIVE" -mindepth 2 -maxdepth 2 -name secrets -size +0 | wc -l)
find "$ARCHIVE" -mindepth 2 -name '*.log' -type f ! -path "$ARCHIVE/secrets/*" > "$tmp/logs"
n_logs=$(wc -l < "$tmp/logs")
n_secrets=$(wc -l < "$tmp/all-secrets")
[ "$tests" -ge "$MIN_TESTS" ] || fail "only $tests archived test(s) in $ARCHIVE: the scan would prove nothing"
[ "$n_secrets" -gt 0 ] || fail "no secret was recorded by any test"
[ "$n_logs" -gt 0 ] || fail "no log was archived"

bad=0
# 1. the exact secrets of every test, in every log (a key of one test in another's log counts too)
if tr '\n' '\0' < "$tmp/logs" | xargs -0 -r grep -n -F -f "$tmp/all-secrets" > "$tmp/hits" 2> /dev/null; then
        echo "secrets found in logs (showing where, not what):" >&2
        cut -d: -f1,2 "$tmp/hits" | sort -u | head -n 20 >&2
        bad=1
fi
# 2. anything shaped like a secret: a SAS signature, a TPM-issued key, a PEM private key
patterns=(
        -e 'sig=[A-Za-z0-9%+/]{16,}'
        -e 'SharedAccessSignature sr='
        -e '"authenticationKey" *: *"[A-Za-z0-9+/]{16,}'
        -e '"(primaryKey|secondaryKey)" *: *"[A-Za-z0-9+/]{16,}'
        -e 'PRIVATE KEY-----'
)
if tr '\n' '\0' < "$tmp/logs" | xargs -0 -r grep -n -E "${patterns[@]}" > "$tmp/shape" 2> /dev/null; then
        echo "secret-shaped text in logs:" >&2
        cut -d: -f1,2 "$tmp/shape" | sort -u | head -n 20 >&2
        bad=1
fi
# 3. the state files and sensor records the daemons wrote were 0600
n_files=0
for m in "$ARCHIVE"/*/modes; do
        [ -f "$m" ] || continue
        n_files=$((n_files + $(wc -l < "$m")))
        if awk '$1 != "600"' "$m" | grep -q .; then
                echo "not 0600 ($(basename "$(dirname "$m")")): $(awk '$1 != "600"' "$m" | head -n 5 | tr '\n' ' ')" >&2
                bad=1
        fi
done
[ "$bad" = 0 ] || fail "secrets or loose file modes found (archive: $ARCHIVE)"
echo "PASS: $n_secrets secrets of $with_secrets of $tests tests searched in $n_logs logs: none found; $n_files state files, all 0600"
