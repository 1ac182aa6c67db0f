#!/bin/bash
# SPDX-License-Identifier: MIT
# The man pages render without a single groff/man warning, and edgeprovd.conf(5) documents
# every key of the configuration schema (the table in src/agent/conf.c).
set -euo pipefail
SRC=${EDGEPROV_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${EDGEPROV_BUILDDIR:-$SRC}

fail() { echo "FAIL: $*" >&2; exit 1; }
command -v groff > /dev/null || { echo "SKIP: no groff"; exit 77; }

pages=(
        "$SRC/man/edgeprovd.8" "$SRC/man/edgeprovd.conf.5" "$SRC/man/edgeprovctl.1"
        "$SRC/man/edgeprov-dpsctl.1" "$BUILD/man/edgeprov-dps.8"
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for p in "${pages[@]}"; do
        [ -f "$p" ] || fail "$p is missing"
        grep -q '@[A-Za-z_]*@' "$p" && fail "$p: unsubstituted @variables@"
        grep -q '^\.SH NAME' "$p" || fail "$p has no NAME section"
        # -ww: all warnings; render at 80 columns as man(1) would
        LC_ALL=C.UTF-8 groff -Tutf8 -man -ww -z -rLL=78n "$p" > /dev/null 2> "$work/err" || true
        if [ -s "$work/err" ]; then
                cat "$work/err" >&2
                fail "groff warns about $p"
        fi
        if command -v man > /dev/null; then
                LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$p" > "$work/out" 2> "$work/err" ||
                        { cat "$work/err" >&2; fail "man cannot render $p"; }
                [ ! -s "$work/err" ] || { cat "$work/err" >&2; fail "man warns about $p"; }
                [ -s "$work/out" ] || fail "man renders $p as nothing"
        fi
done

# every schema key is documented, by its full dotted name, in edgeprovd.conf(5)
keys=$(awk '/^static const ConfItem schema\[\] = \{/ { on = 1; next } on && /^\};/ { on = 0 } on' \
        "$SRC/src/agent/conf.c" | sed -n 's/^[^"]*"\([a-z0-9_.]*\)".*/\1/p')
[ "$(wc -l <<< "$keys")" -ge 10 ] || fail "could not read the schema table of src/agent/conf.c"
missing=()
for k in $keys; do
        grep -qF "$k" "$SRC/man/edgeprovd.conf.5" || missing+=("$k")
done
[ ${#missing[@]} -eq 0 ] || fail "edgeprovd.conf(5) does not document: ${missing[*]}"
echo "man: ${#pages[@]} pages render cleanly; $(wc -l <<< "$keys") schema keys documented"
