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
const { mqttTransport, registerAndReport } = require('./sdk-common');
const { X509Security } = require('azure-iot-security-x509');

const [host, port, caFile, idScope, registrationId, certFile, keyFile] = process.argv.slice(2);
if (!keyFile) {
        process.stderr.write('usage: node register-x509.js HOST PORT CA_FILE ID_SCOPE REGISTRATION_ID CHAIN_PEM KEY_PEM\n');
        process.exit(2);
}

const transport = mqttTransport(port, caFile);
const security = new X509Security(registrationId, {
        cert: fs.readFileSync(certFile, 'utf8'),
        key: fs.readFileSync(keyFile, 'utf8'),
});
const client = ProvisioningDeviceClient.create(host, idScope, transport, security);

registerAndReport(client);
