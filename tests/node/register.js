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

const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { mqttTransport, registerAndReport } = require('./sdk-common');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');

const [host, port, caFile, idScope, registrationId, key, payload] = process.argv.slice(2);
if (!key) {
        process.stderr.write('usage: node register.js HOST PORT CA_FILE ID_SCOPE REGISTRATION_ID KEY_B64 [PAYLOAD_JSON]\n');
        process.exit(2);
}

const transport = mqttTransport(port, caFile);
const security = new SymmetricKeySecurityClient(registrationId, key);
const client = ProvisioningDeviceClient.create(host, idScope, transport, security);
if (payload)
        client.setProvisioningPayload(JSON.parse(payload));

registerAndReport(client);
