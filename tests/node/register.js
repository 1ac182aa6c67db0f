// SPDX-License-Identifier: MIT
// Registers one device with the official Azure IoT Node.js provisioning SDK, unmodified:
// azure-iot-provisioning-device + azure-iot-provisioning-device-mqtt +
// azure-iot-security-symmetric-key.  Prints one JSON line on stdout:
//   {"ok":true,"result":{...RegistrationResult...}}      exit 0
//   {"ok":false,"name":"...","message":"...","result":…} exit 1
//
// usage: node register.js HOST PORT CA_FILE ID_SCOPE REGISTRATION_ID KEY_B64 [PAYLOAD_JSON]
//
// The SDK has no port option; the transport is subclassed to put the port into its mqtts://
// URI, and the CA goes in through the MqttBase the transport is built on (setOptions({ca})).
'use strict';

const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt } = require('azure-iot-provisioning-device-mqtt');
const { MqttBase } = require('azure-iot-mqtt-base');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');

const [host, port, caFile, idScope, registrationId, key, payload] = process.argv.slice(2);
if (!key) {
        process.stderr.write('usage: node register.js HOST PORT CA_FILE ID_SCOPE REGISTRATION_ID KEY_B64 [PAYLOAD_JSON]\n');
        process.exit(2);
}

class LocalMqtt extends Mqtt {
        _getConnectionUri(request) {
                return 'mqtts://' + request.provisioningHost + ':' + port;
        }
}

function finish(obj, code) {
        process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code));
}

const base = new MqttBase();
base.setOptions({ ca: fs.readFileSync(caFile, 'utf8') });
const transport = new LocalMqtt(base);
const security = new SymmetricKeySecurityClient(registrationId, key);
const client = ProvisioningDeviceClient.create(host, idScope, transport, security);
if (payload)
        client.setProvisioningPayload(JSON.parse(payload));

client.register((err, result) => {
        if (err)
                finish({ ok: false, name: err.name || err.constructor.name, message: err.message,
                         result: err.result || null }, 1);
        else
                finish({ ok: true, result: result }, 0);
});
