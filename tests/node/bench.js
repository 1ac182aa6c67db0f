// SPDX-License-Identifier: MIT
// Load generator for bench/dps-throughput.  Registers N devices of one symmetric-key
// enrollment group (device key = HMAC-SHA256(group key, registration id)) with C concurrent
// clients, each device on its own TLS connection as real devices do, and prints one JSON line:
//   {"client":..., "n":N, "ok":..., "failed":..., "seconds":..., "regsPerSec":..., "p50Ms":..., "p99Ms":...}
//
// usage: node bench.js raw|sdk HOST PORT CA_FILE ID_SCOPE GROUP_KEY_B64 N C [PREFIX]
//
//   raw  mqtt.js speaking the DPS protocol directly; polls as soon as the 202 arrives (it
//        measures the service, not the retry-after pacing)
//   sdk  the official Azure IoT Node.js provisioning SDK, unmodified (honours retry-after)
'use strict';

const crypto = require('crypto');
const fs = require('fs');

const [mode, host, port, caFile, idScope, groupKey, nArg, cArg, prefixArg] = process.argv.slice(2);
if (!nArg || !['raw', 'sdk'].includes(mode)) {
        process.stderr.write('usage: node bench.js raw|sdk HOST PORT CA_FILE ID_SCOPE GROUP_KEY_B64 N C [PREFIX]\n');
        process.exit(2);
}
const N = parseInt(nArg, 10), C = parseInt(cArg, 10), prefix = prefixArg || 'bench-' + mode + '-';
const ca = fs.readFileSync(caFile, 'utf8');

function deviceKey(regId) {
        return crypto.createHmac('sha256', Buffer.from(groupKey, 'base64')).update(regId).digest('base64');
}

function sasToken(regId, key) {
        const sr = encodeURIComponent(idScope + '/registrations/' + regId); // signed as sent
        const se = Math.floor(Date.now() / 1000) + 3600;
        const sig = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(sr + '\n' + se).digest('base64');
        return 'SharedAccessSignature sr=' + sr + '&sig=' + encodeURIComponent(sig) + '&se=' + se +
                '&skn=registration';
}

function registerRaw(regId) {
        const mqtt = require('mqtt');
        return new Promise((resolve, reject) => {
                const client = mqtt.connect('mqtts://' + host + ':' + port, {
                        protocolVersion: 4, clean: true, clientId: regId, reconnectPeriod: 0, ca,
                        username: idScope + '/registrations/' + regId + '/api-version=2019-03-31',
                        password: sasToken(regId, deviceKey(regId)), connectTimeout: 30000,
                });
                const timer = setTimeout(() => { client.end(true); reject(new Error('timeout')); }, 60000);
                const done = (err, res) => { clearTimeout(timer); client.end(true); err ? reject(err) : resolve(res); };
                client.on('error', done);
                client.on('connect', () => {
                        client.subscribe('$dps/registrations/res/#', { qos: 1 }, (err) => {
                                if (err) return done(err);
                                client.publish('$dps/registrations/PUT/iotdps-register/?$rid=1',
                                               JSON.stringify({ registrationId: regId }), { qos: 1 });
                        });
                });
                client.on('message', (topic, payload) => {
                        const m = /^\$dps\/registrations\/res\/(\d+)\/\?\$rid=([^&]*)/.exec(topic);
                        if (!m) return done(new Error('bad topic ' + topic));
                        let body;
                        try { body = JSON.parse(payload.toString()); } catch (e) { return done(e); }
                        if (m[1] === '202')
                                client.publish('$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=' +
                                               body.operationId, ' ', { qos: 1 });
                        else if (m[1] === '200' && body.status === 'assigned')
                                done(null, body.registrationState);
                        else
                                done(new Error(m[1] + ' ' + payload.toString()));
                });
        });
}

function registerSdk(regId) {
        const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
        const { Mqtt } = require('azure-iot-provisioning-device-mqtt');
        const { MqttBase } = require('azure-iot-mqtt-base');
        const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
        class LocalMqtt extends Mqtt {
                _getConnectionUri(request) { return 'mqtts://' + request.provisioningHost + ':' + port; }
        }
        const base = new MqttBase();
        base.setOptions({ ca });
        const client = ProvisioningDeviceClient.create(host, idScope, new LocalMqtt(base),
                                                       new SymmetricKeySecurityClient(regId, deviceKey(regId)));
        return new Promise((resolve, reject) => client.register((err, res) => err ? reject(err) : resolve(res)));
}

async function main() {
        const register = mode === 'raw' ? registerRaw : registerSdk;
        const latencies = [];
        let next = 0, failed = 0, firstError = null;
        const t0 = process.hrtime.bigint();
        async function worker() {
                while (next < N) {
                        const i = next++;
                        const regId = prefix + String(i).padStart(6, '0');
                        const s = process.hrtime.bigint();
                        try {
                                await register(regId);
                                latencies.push(Number(process.hrtime.bigint() - s) / 1e6);
                        } catch (e) {
                                failed++;
                                firstError = firstError || String(e && e.message || e);
                        }
                }
        }
        await Promise.all(Array.from({ length: Math.min(C, N) }, worker));
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        latencies.sort((a, b) => a - b);
        const pct = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : null;
        const round = (x) => x === null ? null : Math.round(x * 10) / 10;
        process.stdout.write(JSON.stringify({
                client: mode, n: N, concurrency: C, ok: latencies.length, failed, firstError,
                seconds: round(seconds), regsPerSec: round(latencies.length / seconds),
                p50Ms: round(pct(0.5)), p99Ms: round(pct(0.99)),
                clientPeakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
        }) + '\n', () => process.exit(failed ? 1 : 0));
}

main();
