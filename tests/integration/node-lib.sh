# SPDX-License-Identifier: MIT
# The official Azure IoT Node.js SDK for the Node tests (sourced after lib.sh).

# node_sdk_install DIR MODULE...: npm ci of tests/node/package-lock.json into
# $EDGEPROV_BUILDDIR/tests/DIR unless that lock file is installed there with every MODULE
# (a directory in node_modules); then the scripts of tests/node/ are copied there.  Sets
# NODE_DIR.  Returns 1 when npm ci fails (its output is in $WORK/npm.log).
node_sdk_install() {
        local m missing=
        NODE_DIR=$EDGEPROV_BUILDDIR/tests/$1
        shift
        mkdir -p "$NODE_DIR"
        for m in "$@"; do
                [ -d "$NODE_DIR/node_modules/$m" ] || missing=1
        done
        if ! cmp -s "$EDGEPROV_SRCDIR/tests/node/package-lock.json" "$NODE_DIR/package-lock.json" ||
                [ -n "$missing" ]; then
                rm -rf "$NODE_DIR/node_modules"
                cp "$EDGEPROV_SRCDIR/tests/node/package.json" "$EDGEPROV_SRCDIR/tests/node/package-lock.json" "$NODE_DIR/"
                chmod u+w "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json"
                if ! (cd "$NODE_DIR" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) > "$WORK/npm.log" 2>&1; then
                        rm -f "$NODE_DIR/package-lock.json"
                        return 1
                fi
        fi
        cp "$EDGEPROV_SRCDIR"/tests/node/*.js "$NODE_DIR/"
        chmod u+w "$NODE_DIR"/*.js
}

# node_sdk_enrollments: $WORK/pki, keys KEY and GROUP_KEY, and $WORK/data.json with the
# individual enrollments node-dev1 (hub-a) and node-off (disabled) and the group node-group (hub-b)
node_sdk_enrollments() {
        pki_create "$WORK/pki"
        KEY=$(new_key)
        GROUP_KEY=$(new_key)
        service_init "$WORK/data.json" hub-a.example.test hub-b.example.test
        enroll "$WORK/data.json" node-dev1 "$KEY" --device-id node-dev1-device --hub hub-a.example.test
        enroll "$WORK/data.json" node-off "$KEY" --disabled
        "$DPSCTL" --data "$WORK/data.json" group add node-group --primary-key "$GROUP_KEY" --hub hub-b.example.test > /dev/null
}

# field FILE JS_EXPRESSION_ON_r: evaluates against the SDK's JSON line
field() { node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(eval(process.argv[2]))' "$1" "$2"; }
