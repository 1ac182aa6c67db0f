// SPDX-License-Identifier: MIT
// Registers one device with the official Azure IoT Node.js provisioning SDK over its HTTPS
// transport, unmodified: azure-iot-provisioning-device + azure-iot-provisioning-device-http +
// azure-iot-security-symmetric-key or azure-iot-security-x509.  Prints one JSON line on stdout:
//   {"ok":true,"result":{...RegistrationResult...}}      exit 0
//   {"ok":false,"name":"...","message":"...","result":…} exit 1
//
// usage: node register-http.js HOST PORT CA_FILE ID_SCOPE REGISTRATION_ID KEY_B64 [PAYLOAD_JSON]
//        node register-http.js HOST PORT CA_FILE ID_SCOPE REGISTRATION_ID x509:CERT_PEM:KEY_PEM
//
// The SDK has no port option (Azure DPS is on 443): the port goes in through an https.Agent
// given to the SDK's own azure-iot-http-base Http (setOptions({ca, http: {agent}})).
'use strict';

const fs = require('fs');
const https = require('https');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { registerAndReport } = require('./sdk-common');
const { Http } = require('azure-iot-provisioning-device-http');
const { Http: HttpBase } = require('azure-iot-http-base');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { X509Security } = require('azure-iot-security-x509');

const [host, port, caFile, idScope, registrationId, key, payload] = process.argv.slice(2);
if (!key) {
        process.stderr.write('usage: node register-http.js HOST PORT CA_FILE ID_SCOPE REGISTRATION_ID KEY_B64 [PAYLOAD_JSON]\n');
        process.exit(2);
}

class PortAgent extends https.Agent {
        createConnection(options, callback) {
                return super.createConnection(Object.assign({}, options, { port: Number(port) }), callback);
        }
}

const base = new HttpBase();
base.setOptions({ ca: fs.readFileSync(caFile, 'utf8'), http: { agent: new PortAgent({ keepAlive: false }) } });
const transport = new Http(base);
let security;
if (key.startsWith('x509:')) {
        const [, certFile, keyFile] = key.split(':');
        security = new X509Security(registrationId,
                { cert: fs.readFileSync(certFile, 'utf8'), key: fs.readFileSync(keyFile, 'utf8') });
} else
        security = new SymmetricKeySecurityClient(registrationId, key);
const client = ProvisioningDeviceClient.create(host, idScope, transport, security);
if (payload)
        client.setProvisioningPayload(JSON.parse(payload));

registerAndReport(client);
