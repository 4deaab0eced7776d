// Slow consumers: a device and an admin client that stop reading their sockets
// while the server has plenty to send them. Neither may stall anyone else (a
// canary device keeps round-tripping, another admin client keeps getting
// answers); the device is cut off by its bounded send buffer
// (mqtt.limits.max_send_buffer_bytes) and the admin client by its own
// (admin.send_buffer_bytes), both counted.
import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import { test } from 'node:test';
import { encode } from 'cbor-x';
import WebSocket from 'ws';
import { waitFor } from '../helpers/index.js';
import { ADMIN_KEY, Canary, connectDevice, freePorts, metricValue, startInstance, summary } from '../helpers/reliability-support.js';

// Long enough that the slow device passes the buffer bound first, even on a loaded machine.
const DRAIN_TIMEOUT_MS = 5000;
/** Unsent bytes held for one device; the kernel's socket buffers (up to ~4 MiB on loopback) come on top. */
const SEND_BUFFER_BYTES = 16 * 1024 * 1024;

/** Bounds a wait: rejects naming `what` after `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

test('a device and an admin client that stop reading are disconnected (bounded send buffers) without stalling anyone else', async (t) => {
  const ports = await freePorts();
  const instance = await startInstance(t, {
    ports,
    certDevices: ['canary-slow', 'slow-device', 'dripping', 'chatty'],
    omit: ['admin', 'mqtt.limits'],
    extraToml: [
      '[admin]',
      'host = "127.0.0.1"',
      `port = ${ports.admin}`,
      `api_key = "${ADMIN_KEY}"`,
      'send_buffer_bytes = 65536',
      'messages_per_second = 100000',
      '[mqtt.limits]',
      `drain_timeout_ms = ${DRAIN_TIMEOUT_MS}`,
      `max_send_buffer_bytes = ${SEND_BUFFER_BYTES}`,
    ],
  });
  const canary = await Canary.start(t, instance, 'canary-slow');
  const background = canary.inBackground(50);
  const started = Date.now();

  // The slow admin client: subscribed to the live stream, then it stops reading.
  const slowAdmin = new WebSocket(`ws://127.0.0.1:${ports.admin}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  slowAdmin.on('error', () => undefined);
  t.after(() => slowAdmin.terminate());
  const adminClosed = new Promise<number>((resolve) => slowAdmin.once('close', (code) => resolve(code)));
  await new Promise((resolve) => slowAdmin.once('open', resolve));
  const subscribed = new Promise((resolve) => slowAdmin.once('message', resolve));
  slowAdmin.send(JSON.stringify({ id: 's', cmd: 'events.subscribe', args: { kinds: ['telemetry'] } }));
  await subscribed;
  (slowAdmin as unknown as { _socket: Duplex })._socket.pause();

  // The slow device: asks the echo app for 64 KiB answers and never reads them.
  const slow = await connectDevice(t, instance, 'slow-device');
  await slow.subscribeAsync('slow-device/app/s/#', { qos: 1 });
  const deviceClosed = new Promise<void>((resolve) => slow.once('close', () => resolve()));
  (slow.stream as Duplex).pause();
  const chunk = Buffer.alloc(64 * 1024, 0x61);

  // A device that stops reading with less unsent than the buffer bound: the drain timeout ends it.
  const dripping = await connectDevice(t, instance, 'dripping');
  await dripping.subscribeAsync('dripping/app/s/#', { qos: 1 });
  (dripping.stream as Duplex).pause();

  // Telemetry for the admin stream, from a device that does read.
  const chatty = await connectDevice(t, instance, 'chatty');
  let flooding = true;
  const telemetry = (async () => {
    for (let i = 0; flooding && i < 200_000; i++) {
      chatty.publish('chatty/tel/p', Buffer.from(encode(new Map<number, string | number>([[0, '1.0.0-0-gabcdef0'], [1, i % 140]]))), { qos: 0 });
      if (i % 100 === 99) await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  for (let i = 0; i < 400 && slow.connected; i++) slow.publish('slow-device/app/p/echo', chunk, { qos: 0 });
  // 10 MiB: past the kernel's buffers, under the bound.
  for (let i = 0; i < 160; i++) dripping.publish('dripping/app/p/echo', chunk, { qos: 0 });

  // A paused client cannot see its own disconnect: watch the server's counters, then read what is left.
  try {
    await waitFor(async () => metricValue(await instance.metricsText(), 'nucleon_admin_slow_clients_total') === 1, 'the slow admin client cut off', 30_000, 100);
    // Read what is left now: the server ends the socket 2 s after its close frame, and unsent bytes go with it.
    (slowAdmin as unknown as { _socket: Duplex })._socket.resume();
    // 400 unread 64 KiB answers (25 MiB) pass the bound long before the drain timeout.
    await waitFor(async () => metricValue(await instance.metricsText(), 'nucleon_mqtt_disconnects_total', { reason: 'slow_consumer' }) === 1, 'the slow device cut off as a slow consumer', 30_000, 100);
    await waitFor(async () => metricValue(await instance.metricsText(), 'nucleon_mqtt_disconnects_total', { reason: 'drain_timeout' }) === 1, 'the dripping device cut off by the drain timeout', 30_000, 100);
  } finally {
    flooding = false;
    await telemetry;
  }
  (slow.stream as Duplex).resume();
  const code = await within(adminClosed, 10_000, 'the close frame at the end of what the admin client had not read');
  await within(deviceClosed, 10_000, 'the slow device to see its disconnect');
  const cutOffAfterMs = Date.now() - started;

  // Meanwhile and after: another admin client is answered, the canary round-trips.
  const other = new WebSocket(`ws://127.0.0.1:${ports.admin}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  t.after(() => other.terminate());
  await new Promise((resolve) => other.once('open', resolve));
  const pong = new Promise<string>((resolve) => other.once('message', (data: Buffer) => resolve(data.toString())));
  other.send(JSON.stringify({ id: 'p', cmd: 'ping' }));
  assert.match(await pong, /"ok":true/);
  const canaryError = await background.stop();
  assert.equal(canaryError, undefined, `the canary stalled: ${String(canaryError)}`);
  assert.equal(code, 1013, 'the admin client was closed as a slow consumer');

  assert.ok(instance.alive());
  summary('abuse slow-consumers', { drainTimeoutMs: DRAIN_TIMEOUT_MS, adminCloseCode: code, bothCutOffWithinMs: cutOffAfterMs, canaryRoundTrips: canary.roundTrips, rssMb: Math.round(await instance.rssMb()) });
});
