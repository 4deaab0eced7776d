// End to end: a real mqtt.js device over TLS (client certificate) against a
// whole Nucleon (MQTT + OTA + OTA HTTPS runners), speaking the Pyrinas OTA
// protocol of DESIGN.md section 1 with integer-keyed CBOR maps.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import https from 'node:https';
import { test, type TestContext } from 'node:test';
import type { MqttClient } from 'mqtt';
import { otaRunnerOf } from '../../src/ota/index.js';
import { decodeCbor, encodeCbor } from '../../src/protocol/index.js';
import { freePort, waitFor } from '../helpers/index.js';
import { connect, deviceTls, startBroker } from '../helpers/mqtt-support.js';
import { firmware } from '../helpers/ota-harness.js';

const UID = '352656100000001';
const ID = '2.0.0-7-g1a2b3c4';

/** What the device has received, per topic, in order. */
function inbox(client: MqttClient) {
  const received = new Map<string, Buffer[]>();
  client.on('message', (topic, payload) => {
    const list = received.get(topic) ?? [];
    list.push(payload);
    received.set(topic, list);
  });
  return {
    count: (topic: string) => received.get(topic)?.length ?? 0,
    /** Waits for message number `index` (0-based) on `topic`. */
    nth: (topic: string, index: number) => waitFor(() => received.get(topic)?.[index], `message ${index} on ${topic}`),
  };
}

const otaRequest = (fields: [number, unknown][]) => encodeCbor(new Map<number, unknown>(fields));

async function startFleetServer(t: TestContext, httpPort: number) {
  const broker = await startBroker(t, {
    config: {
      ota: { enabled: true, max_chunk_size: 4096, http: { enabled: true, host: '127.0.0.1', port: httpPort, tls: true, public_url: `https://localhost:${httpPort}` } },
    },
  });
  const ota = otaRunnerOf(broker.nucleon);
  const tls = await deviceTls(broker, UID);
  const device = await connect(t, broker, { clientId: UID, ca: tls.ca, cert: tls.cert, key: tls.key });
  const received = inbox(device);
  await device.subscribeAsync([`${UID}/ota/s`, `${UID}/ota/s/d`], { qos: 1 });
  return { broker, ota, tls, device, received, httpPort };
}

test('a device over TLS is pushed its package on link, checks, downloads every chunk over MQTT, and its Done shows in its state', async (t) => {
  const { ota, device, received, httpPort } = await startFleetServer(t, await freePort());
  const bytes = firmware(150_000, 42);
  const sha256 = createHash('sha256').update(bytes).digest('hex');

  // Nothing assigned yet: an empty payload on <uid>/ota/s.
  await device.publishAsync(`${UID}/ota/p`, otaRequest([[0, 0]]), { qos: 1 });
  assert.equal((await received.nth(`${UID}/ota/s`, 0)).length, 0);

  const { image } = await ota.addImage({ id: ID, imageType: 'primary', description: 'e2e', source: { kind: 'bytes', data: bytes } });
  assert.equal(image.sha256, sha256);
  await ota.link({ deviceUid: UID, imageId: ID });

  // The push, without asking.
  const pushed = decodeCbor(await received.nth(`${UID}/ota/s`, 1)) as Map<number, unknown>;
  assert.equal(pushed.get(0), ID);
  assert.equal(pushed.get(2), null);
  assert.equal(pushed.get(3), bytes.length);
  const version = pushed.get(1) as Map<number, unknown>;
  assert.deepEqual([version.get(0), version.get(1), version.get(2), version.get(3)], [2, 0, 0, 7]);
  assert.deepEqual(Buffer.from(version.get(4) as number[]).toString('ascii'), 'g1a2b3c4');
  assert.equal(pushed.get(5), `https://localhost:${httpPort}/images/${ID}?uid=${UID}`);

  // Check gives the same package.
  await device.publishAsync(`${UID}/ota/p`, otaRequest([[0, 0], [1, null], [2, null], [3, null]]), { qos: 1 });
  const checked = decodeCbor(await received.nth(`${UID}/ota/s`, 2)) as Map<number, unknown>;
  assert.equal(checked.get(0), ID);

  // Download every chunk, one request at a time, as Pyrinas firmware does.
  const size = Number(pushed.get(3));
  const chunkSize = 4096;
  const parts: Buffer[] = [];
  for (let start = 0, n = 0; start < size; start += chunkSize, n++) {
    const end = Math.min(start + chunkSize, size);
    await device.publishAsync(`${UID}/ota/p`, otaRequest([[0, 2], [1, ID], [2, start], [3, end]]), { qos: 1 });
    const chunk = decodeCbor(await received.nth(`${UID}/ota/s/d`, n)) as Map<number, unknown>;
    assert.equal(chunk.get(0), start);
    assert.equal(chunk.get(1), end);
    assert.equal(chunk.get(3), end - start);
    parts.push(Buffer.from(chunk.get(2) as Uint8Array));
  }
  assert.equal(createHash('sha256').update(Buffer.concat(parts)).digest('hex'), sha256);

  // A range past the end gets no reply (and no crash); the device then reports the new version and Done.
  await device.publishAsync(`${UID}/ota/p`, otaRequest([[0, 2], [1, ID], [2, size - 10], [3, size + 10]]), { qos: 1 });
  await device.publishAsync(`${UID}/tel/p`, encodeCbor(new Map<number, unknown>([[0, ID], [1, 44]])), { qos: 1 });
  await device.publishAsync(`${UID}/ota/p`, otaRequest([[0, 1]]), { qos: 1 });
  const state = await waitFor(async () => {
    const current = await ota.deviceState(UID);
    return current?.doneAt !== undefined ? current : undefined;
  }, 'the Done in the device state');
  assert.equal(state.doneImageId, ID);
  assert.equal(state.reportedVersion, ID);
  assert.equal(state.assignedImageId, ID);
  assert.equal(state.downloadImageId, ID);
  assert.equal(state.bytesServed, size);
  assert.equal(received.count(`${UID}/ota/s/d`), Math.ceil(size / chunkSize));
});

test('firmware that pulls over HTTPS follows the pushed URL with Range requests and its certificate', async (t) => {
  const { ota, tls, received } = await startFleetServer(t, await freePort());
  const bytes = firmware(20_000, 9);
  await ota.addImage({ id: ID, imageType: 'primary', source: { kind: 'bytes', data: bytes } });
  await ota.link({ deviceUid: UID, imageId: ID });
  const pushed = decodeCbor(await received.nth(`${UID}/ota/s`, 0)) as Map<number, unknown>;
  const url = String(pushed.get(5));
  const parts: Buffer[] = [];
  for (let start = 0; start < bytes.length; start += 2048) {
    const last = Math.min(start + 2047, bytes.length - 1);
    parts.push(
      await new Promise<Buffer>((resolve, reject) => {
        const request = https.get(url, { ca: tls.ca, cert: tls.cert, key: tls.key, agent: false, headers: { Range: `bytes=${start}-${last}` } }, (response) => {
          assert.equal(response.statusCode, 206);
          const chunks: Buffer[] = [];
          response.on('data', (c: Buffer) => chunks.push(c));
          response.on('end', () => resolve(Buffer.concat(chunks)));
          response.on('error', reject);
        });
        request.on('error', reject);
      }),
    );
  }
  assert.deepEqual(Buffer.concat(parts), bytes);
  await waitFor(async () => (await ota.deviceState(UID))?.bytesServed === bytes.length, 'HTTPS progress credited to the device');
});
