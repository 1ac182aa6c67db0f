// SPDX-License-Identifier: MIT
// What register.js, register-x509.js and register-http.js share: the SDK's MQTT transport on a
// port of ours, and the registration with its one JSON line on stdout:
//   {"ok":true,"result":{...RegistrationResult...}}      exit 0
//   {"ok":false,"name":"...","message":"...","result":…} exit 1
'use strict';

const fs = require('fs');

// The SDK has no port option; the transport is subclassed to put the port into its mqtts://
// URI, and the CA goes in through the MqttBase the transport is built on (setOptions({ca})).
function mqttTransport(port, caFile) {
        const { Mqtt } = require('azure-iot-provisioning-device-mqtt');
        const { MqttBase } = require('azure-iot-mqtt-base');
        class LocalMqtt extends Mqtt {
                _getConnectionUri(request) {
                        return 'mqtts://' + request.provisioningHost + ':' + port;
                }
        }
        const base = new MqttBase();
        base.setOptions({ ca: fs.readFileSync(caFile, 'utf8') });
        return new LocalMqtt(base);
}

function finish(obj, code) {
        process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code));
}

// client.register(), reported as above
function registerAndReport(client) {
        client.register((err, result) => {
                if (err)
                        finish({ ok: false, name: err.name || err.constructor.name, message: err.message,
                                 result: err.result || null }, 1);
                else
                        finish({ ok: true, result: result }, 0);
        });
}

module.exports = { mqttTransport, registerAndReport };
