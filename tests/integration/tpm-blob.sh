#!/bin/bash
# SPDX-License-Identifier: MIT
# The service's software-built authenticationKey (src/lib/tpm-blob.c) against a real TPM
# (swtpm) through the agent's ESYS code (src/agent/tpm.c): the key activated in the TPM
# computes the same HMAC as the software; tampered fields are refused without harming the key
# in the slot; 20 activations leave no transient object or session behind; the EK
# certificate matches the EK and verifies against the manufacturer CA.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tpm-lib.sh"
RT=$EDGEPROV_BUILDDIR/tests/helpers/tpm-roundtrip

swtpm_manufacture
swtpm_start

out=$("$RT" "$TPM_TCTI" identity) || fail "identity"
read -r regid ekb64 <<< "$out"
[[ $regid =~ ^[a-z2-7]{52}$ ]] || fail "registration id $regid"
# §6.3 by hand: base32(sha256(TPM2B_PUBLIC))
want=$(printf '%s' "$ekb64" | base64 -d | sha256sum | cut -d' ' -f1 | xxd -r -p | base32 | tr -d '=' | tr A-Z a-z)
[ "$regid" = "$want" ] || fail "registration id $regid != $want"
# the EK read through ESYS is the one tpm2-tools reads
tpm2_readpublic -T "$TPM_TCTI" -c 0x81010001 -o "$WORK/ek.pub" > /dev/null
[ "$(base64 -w0 < "$WORK/ek.pub")" = "$ekb64" ] || fail "EK differs from tpm2_readpublic"

"$RT" "$TPM_TCTI" ekcert "$EK_CA_FILE" | grep -q '^1 EK certificate matches the EK and verifies' || fail "EK cert"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/o.key" -subj /CN=other -out "$WORK/other.pem" \
        -days 1 2> /dev/null
if "$RT" "$TPM_TCTI" ekcert "$WORK/other.pem" > "$WORK/ekcert.out"; then fail "EK cert verified by a foreign CA"; fi
grep -q 'does not verify' "$WORK/ekcert.out" || fail "no clear message: $(cat "$WORK/ekcert.out")"

"$RT" "$TPM_TCTI" roundtrip 20 0x81000100 > "$WORK/rt.log" 2>&1 || fail "round trips: $(cat "$WORK/rt.log")"
# fields 1, 3, 5 (integrity HMAC, encIdentity, outer HMAC, dupSensitive, the public area)
"$RT" "$TPM_TCTI" tamper 0x81000100 10 40 320 400 760 780 > "$WORK/tamper.log" 2>&1 ||
        fail "tamper: $(cat "$WORK/tamper.log")"
grep -q 'ActivateCredential failed: tpm:parameter(1):integrity check failed' "$WORK/tamper.log" ||
        fail "no decoded TPM error in the log"

[ "$(tpm_count handles-transient)" = 0 ] || fail "transient objects left: $(tpm2_getcap -T "$TPM_TCTI" handles-transient)"
[ "$(tpm_count handles-loaded-session)" = 0 ] || fail "sessions left"
tpm_has_persistent 0x81000100 || fail "key slot missing"
tpm_has_persistent 0x81010001 || fail "EK missing"
tpm_has_persistent 0x81000001 || fail "SRK missing"
echo "PASS: TPM blob activated in swtpm, tamper refused, no handles left"
