#!/bin/bash
# SPDX-License-Identifier: MIT
# The journal catalog: every MESSAGE_ID in include/edgeprov/messages.h has exactly one entry in
# data/edgeprov.catalog, every entry belongs to a defined id, and journalctl accepts the file
# (--update-catalog into a throw-away root, then --list-catalog).
set -euo pipefail
SRC=${EDGEPROV_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
catalog=$SRC/data/edgeprov.catalog
header=$SRC/include/edgeprov/messages.h

fail() { echo "FAIL: $*" >&2; exit 1; }

ids=$(sed -n 's/^#define EDGEPROV_MESSAGE_\([A-Z0-9_]*\)_STR "\([0-9a-f]*\)".*/\2 \1/p' "$header")
[ -n "$ids" ] || fail "no MESSAGE_IDs found in $header"
n=0
while read -r id name; do
        [[ $id =~ ^[0-9a-f]{32}$ ]] || fail "$name: '$id' is not a 128-bit id in hex"
        count=$(grep -c "^-- $id\$" "$catalog" || true)
        [ "$count" = 1 ] || fail "$name ($id) has $count entries in data/edgeprov.catalog (want 1)"
        n=$((n + 1))
done <<< "$ids"
# no entry for an id that is not defined, no id defined twice
while read -r id; do
        grep -q "\"$id\"" "$header" || fail "catalog entry $id has no EDGEPROV_MESSAGE_* in messages.h"
done < <(sed -n 's/^-- \([0-9a-f]*\)$/\1/p' "$catalog")
dups=$(awk '{print $1}' <<< "$ids" | sort | uniq -d)
[ -z "$dups" ] || fail "ids defined twice in messages.h: $dups"

command -v journalctl > /dev/null || { echo "SKIP: no journalctl"; exit 77; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/lib/systemd/catalog"
cp "$catalog" "$root/usr/lib/systemd/catalog/"
journalctl --root="$root" --update-catalog 2> "$root/err" || { cat "$root/err" >&2; fail "journalctl rejects the catalog"; }
[ ! -s "$root/err" ] || { cat "$root/err" >&2; fail "journalctl warns about the catalog"; }
listed=$(journalctl --root="$root" --list-catalog | awk '{print $1}' | sort)
expected=$(awk '{print $1}' <<< "$ids" | sort)
[ "$listed" = "$expected" ] || fail "journalctl lists other ids than messages.h defines: $listed"
# every entry has a subject that journalctl shows
while read -r id; do
        journalctl --root="$root" --list-catalog "$id" | grep -q "edgeprov: ." || fail "$id has no Subject"
done <<< "$expected"
echo "catalog: $n ids, all with entries"
