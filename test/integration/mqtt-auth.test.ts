import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { test } from 'node:test';
import tls from 'node:tls';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { decodeCbor } from '../../src/protocol/index.js';
import { addDevicePassword, addServiceAccount, connect, connectError, deviceTls, startBroker, subscribeCodes, waitForEvents } from '../helpers/mqtt-support.js';
import { waitFor } from '../helpers/index.js';
import { connackOf } from '../helpers/mqtt.js';
import { metricValue } from '../helpers/reliability-support.js';

test('password devices: right password connects, wrong password gets CONNACK 4, client id must be the uid (2), no credentials 5', async (t) => {
  const broker = await startBroker(t);
  const password = await addDevicePassword(broker, 'pwdev');
  assert.equal(password.length, 32);
  const device = await connect(t, broker, { clientId: 'pwdev', username: 'pwdev', password });
  await device.publishAsync('pwdev/app/p/x', 'hi', { qos: 1 });
  const [request] = await waitForEvents(() => broker.recorder.of('ApplicationRequest'), 1, 'ApplicationRequest');
  assert.equal(request?.uid, 'pwdev');
  assert.equal(broker.recorder.of('DeviceConnected')[0]?.authMethod, 'password');

  assert.equal((await connectError(broker, { clientId: 'pwdev2', username: 'pwdev2', password: 'nope' })).code, 4);
  assert.equal((await connectError(broker, { clientId: 'pwdev', username: 'pwdev', password: 'wrong' })).code, 4);
  assert.equal((await connectError(broker, { clientId: 'someone-else', username: 'pwdev', password })).code, 2);
  assert.equal((await connectError(broker, { clientId: 'anon' })).code, 5);
});

test('a certificate for uid X cannot log in as Y, and a certificate from another CA is refused', async (t) => {
  const broker = await startBroker(t);
  const tls = await deviceTls(broker, 'certdev');
  assert.equal((await connectError(broker, { clientId: 'other', ca: tls.ca, cert: tls.cert, key: tls.key })).code, 2);
  assert.equal((await connectError(broker, { clientId: 'certdev', username: 'other', ca: tls.ca, cert: tls.cert, key: tls.key })).code, 5);
  const foreign = await startBroker(t);
  const foreignTls = await deviceTls(foreign, 'certdev');
  assert.equal((await connectError(broker, { clientId: 'certdev', ca: broker.ca, cert: foreignTls.cert, key: foreignTls.key })).code, 5);
});

test('anonymous devices only when enabled: uid = client id', async (t) => {
  const broker = await startBroker(t, { config: { mqtt: { auth: { anonymous: true } } } });
  const device = await connect(t, broker, { clientId: 'anon-1' });
  await device.publishAsync('anon-1/app/p/x', 'hi', { qos: 1 });
  await waitForEvents(() => broker.recorder.of('ApplicationRequest'), 1, 'ApplicationRequest');
  assert.equal(broker.recorder.of('DeviceConnected')[0]?.authMethod, 'anonymous');
});

test('server → device: ApplicationResponse, OtaResponse (empty = no update) and OtaDownloadResponse arrive at QoS 1', async (t) => {
  const broker = await startBroker(t);
  const tls = await deviceTls(broker, 'rxdev');
  const device = await connect(t, broker, { clientId: 'rxdev', ca: tls.ca, cert: tls.cert, key: tls.key });
  assert.deepEqual(await subscribeCodes(device, ['rxdev/app/s/#', 'rxdev/ota/s', 'rxdev/ota/s/d']), [1, 1, 1]);
  const received: { topic: string; payload: Buffer; qos: number }[] = [];
  device.on('message', (topic, payload, packet) => received.push({ topic, payload, qos: packet.qos }));
  await broker.nucleon.broker.publish({ type: 'ApplicationResponse', uid: 'rxdev', target: 'cfg/set', payload: Buffer.from('on') });
  await broker.nucleon.broker.publish({ type: 'OtaResponse', uid: 'rxdev', package: null });
  await broker.nucleon.broker.publish({ type: 'OtaDownloadResponse', uid: 'rxdev', chunk: { startPos: 0, endPos: 2, data: Buffer.from([7, 8]), len: 2 } });
  await waitFor(() => received.length >= 3, 'three messages');
  assert.deepEqual(received.map((m) => [m.topic, m.qos]), [['rxdev/app/s/cfg/set', 1], ['rxdev/ota/s', 1], ['rxdev/ota/s/d', 1]]);
  assert.equal(received[0]?.payload.toString(), 'on');
  assert.equal(received[1]?.payload.length, 0);
  const chunk = decodeCbor(received[2]?.payload ?? Buffer.alloc(0)) as Map<number, unknown>;
  assert.deepEqual(chunk.get(2), Buffer.from([7, 8]));
});

test('service accounts: see device messages on +/app/p/#, publish to devices, read $SYS but no other $ topic; a device password cannot log in as one', async (t) => {
  const broker = await startBroker(t);
  const secret = await addServiceAccount(broker, 'backend');
  const service = await connect(t, broker, { clientId: 'svc:backend:1', username: 'svc:backend', password: secret });
  assert.deepEqual(await subscribeCodes(service, ['+/app/p/#', '$SYS/broker/#', '$SYS/#', '$other/#']), [1, 1, 128, 128]);
  const seen: string[] = [];
  service.on('message', (topic) => seen.push(topic));

  const tls = await deviceTls(broker, 'fleet1');
  const device = await connect(t, broker, { clientId: 'fleet1', ca: tls.ca, cert: tls.cert, key: tls.key });
  await subscribeCodes(device, 'fleet1/app/s/#');
  const toDevice: string[] = [];
  device.on('message', (topic, payload) => toDevice.push(`${topic}=${payload.toString()}`));
  await device.publishAsync('fleet1/app/p/report', 'r1', { qos: 1 });
  await waitFor(() => seen.includes('fleet1/app/p/report'), 'service sees the device message');
  await waitForEvents(() => broker.recorder.of('ApplicationRequest'), 1, 'and the app runner too');

  await service.publishAsync('fleet1/app/s/cmd', 'reboot', { qos: 1 });
  await waitFor(() => toDevice.includes('fleet1/app/s/cmd=reboot'), 'device gets the service command');
  // A service account may not pretend to be a device.
  await service.publishAsync('fleet1/app/p/fake', 'x', { qos: 1 });
  await device.publishAsync('fleet1/app/p/after', 'y', { qos: 1 });
  await waitForEvents(() => broker.recorder.of('ApplicationRequest'), 2, 'second request');
  assert.deepEqual(broker.recorder.of('ApplicationRequest').map((e) => e.target), ['report', 'after']);

  await addDevicePassword(broker, 'backend', 'device-password');
  assert.equal((await connectError(broker, { clientId: 'svc:backend', username: 'svc:backend', password: 'device-password' })).code, 4);
  assert.equal((await connectError(broker, { clientId: 'backend', username: 'svc:backend', password: secret })).code, 2);
});

/**
 * A CA of its own that copies our CA's subject DN, and a device certificate
 * from it without an Authority Key Identifier: OpenSSL then takes our CA as
 * the issuer by name and fails the signature check itself.
 */
async function lookAlikeDevice(ourCaPem: Buffer, uid: string): Promise<{ cert: string; key: string }> {
  const crypto = webcrypto;
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256' };
  const signing = { name: 'ECDSA', hash: 'SHA-256' };
  const name = new x509.X509Certificate(ourCaPem.toString()).subject;
  const caKeys = await crypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const deviceKeys = await crypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const validity = { notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000) };
  const cert = await x509.X509CertificateGenerator.create(
    { serialNumber: '01', subject: `CN=${uid}`, issuer: name, ...validity, signingAlgorithm: signing, publicKey: deviceKeys.publicKey, signingKey: caKeys.privateKey },
    crypto,
  );
  const key = x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', deviceKeys.privateKey), 'PRIVATE KEY');
  return { cert: cert.toString('pem'), key };
}

/** CONNECT over TLS with a client certificate; the CONNACK return code, or why there was none. */
function connackWith(port: number, ca: Buffer, client: { cert: string; key: string }, clientId: string, maxVersion: tls.SecureVersion): Promise<number | string> {
  return connackOf(tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca, ...client, maxVersion }), 'secureConnect', { clientId }, 5000);
}

test('a device certificate from a look-alike CA (our CA subject DN, another key) gets CONNACK 5, counted as untrusted_certificate, not protocol_error', async (t) => {
  const broker = await startBroker(t);
  const device = await lookAlikeDevice(broker.ca, 'lookalike');
  const refused = async (reason: string) => metricValue(await broker.nucleon.metrics.metrics(), 'nucleon_mqtt_refused_total', { reason });
  for (const [i, version] of (['TLSv1.2', 'TLSv1.3'] as const).entries()) {
    assert.equal(await connackWith(broker.port, broker.ca, device, 'lookalike', version), 5, version);
    await waitFor(async () => (await refused('untrusted_certificate')) === i + 1, `${version}: counted as untrusted_certificate`);
  }
  assert.equal(await refused('protocol_error'), 0);
});
