import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { once } from 'node:events';
import { test } from 'node:test';
import mqtt from 'mqtt';
import type { MqttRunner } from '../src/mqtt/index.js';
import { RateLimiter } from '../src/mqtt/rate-limit.js';
import { connect, startBroker, waitForEvents } from './mqtt-support.js';

test('optional listeners: plain TCP (loopback) and WebSocket over TLS carry the same protocol', async (t) => {
  const broker = await startBroker(t, {
    config: { mqtt: { auth: { anonymous: true }, tcp: { enabled: true, port: 0 }, ws: { enabled: true, host: '127.0.0.1', port: 0, tls: true } } },
  });
  const runner = broker.nucleon.runner('mqtt') as MqttRunner;
  const tcp = await mqtt.connectAsync(`mqtt://127.0.0.1:${runner.port('tcp')}`, { clientId: 'tcpdev', reconnectPeriod: 0 });
  t.after(() => tcp.endAsync(true));
  const ws = await mqtt.connectAsync(`wss://localhost:${runner.port('ws')}`, { ca: broker.ca, clientId: 'wsdev', reconnectPeriod: 0 });
  t.after(() => ws.endAsync(true));
  await tcp.publishAsync('tcpdev/app/p/x', 'a', { qos: 1 });
  await ws.publishAsync('wsdev/app/p/x', 'b', { qos: 1 });
  const events = await waitForEvents(() => broker.recorder.of('ApplicationRequest'), 2, 'two requests');
  assert.deepEqual(events.map((e) => e.uid).sort(), ['tcpdev', 'wsdev']);
  const connected = broker.recorder.of('DeviceConnected').map((e) => e.remoteAddress);
  assert.ok(connected.every((address) => address === '127.0.0.1' || address === '::ffff:127.0.0.1'), connected.join(','));
});

test('a packet over max_packet_size closes the connection at its header; the server goes on', async (t) => {
  const broker = await startBroker(t, { config: { mqtt: { auth: { anonymous: true }, limits: { max_packet_size: 1024 } } } });
  const device = await connect(t, broker, { clientId: 'big' });
  const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
  device.publish('big/app/p/x', Buffer.alloc(4096), { qos: 0 });
  await closed;
  const [gone] = await waitForEvents(() => broker.recorder.of('DeviceDisconnected'), 1, 'DeviceDisconnected');
  assert.match(gone?.reason ?? '', /packet too large: 4\d\d\d bytes, the limit is 1024/);
  const small = await connect(t, broker, { clientId: 'small' });
  await small.publishAsync('small/app/p/x', Buffer.alloc(512), { qos: 1 });
});

test('a connection that sends no CONNECT is closed after connect_timeout_ms', async (t) => {
  const broker = await startBroker(t, { config: { mqtt: { tcp: { enabled: true, port: 0 }, limits: { connect_timeout_ms: 300 } } } });
  const runner = broker.nucleon.runner('mqtt') as MqttRunner;
  const socket = netConnect(runner.port('tcp') ?? 0, '127.0.0.1');
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  socket.resume();
  // Bounded by the test timeout; the server closes it long before.
  await once(socket, 'close');
});

test('the connection rate limiter allows one second of burst, then refills with time', () => {
  let now = 0;
  const limiter = new RateLimiter(3, () => now);
  assert.deepEqual([limiter.tryTake(), limiter.tryTake(), limiter.tryTake(), limiter.tryTake()], [true, true, true, false]);
  now += 334;
  assert.equal(limiter.tryTake(), true);
  assert.equal(limiter.tryTake(), false);
  now += 10_000;
  assert.deepEqual([limiter.tryTake(), limiter.tryTake(), limiter.tryTake(), limiter.tryTake()], [true, true, true, false]);
});
