// SPDX-License-Identifier: MIT
// Registers one device with X.509 attestation through the official Azure IoT Node.js
// provisioning SDK, unmodified: azure-iot-provisioning-device + azure-iot-provisioning-device-mqtt
// + azure-iot-security-x509 (issue 6).  The certificate chain (leaf first) and the key are PEM
// files as edgeprov-dpsctl cert device writes them.  Prints one JSON line on stdout:
//   {"ok":true,"result":{...RegistrationResult...}}      exit 0
//   {"ok":false,"name":"...","message":"...","result":…} exit 1
//
// usage: node register-x509.js HOST PORT CA_FILE ID_SCOPE REGISTRATION_ID CHAIN_PEM KEY_PEM
//
// As in register.js, the transport is subclassed only to put the port into its mqtts:// URI and
// the service's CA goes in through the MqttBase (setOptions({ca})).
'use strict';

const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt } = require('azure-iot-provisioning-device-mqtt');
const { MqttBase } = require('azure-iot-mqtt-base');
const { X509Security } = require('azure-iot-security-x509');

const [host, port, caFile, idScope, registrationId, certFile, keyFile] = process.argv.slice(2);
if (!keyFile) {
        process.stderr.write('usage: node register-x509.js HOST PORT CA_FILE ID_SCOPE REGISTRATION_ID CHAIN_PEM KEY_PEM\n');
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
const security = new X509Security(registrationId, {
        cert: fs.readFileSync(certFile, 'utf8'),
        key: fs.readFileSync(keyFile, 'utf8'),
});
const client = ProvisioningDeviceClient.create(host, idScope, transport, security);

client.register((err, result) => {
        if (err)
                finish({ ok: false, name: err.name || err.constructor.name, message: err.message,
                         result: err.result || null }, 1);
        else
                finish({ ok: true, result: result }, 0);
});
