// MQTT 3.1.1 points where aedes 1.2 fell short, driven byte by byte over
// plain TCP (test/helpers/mqtt.ts RawMqtt), each citing its clause:
// well-formed UTF-8 and no U+0000 in strings, non-zero packet ids, a valid
// CONNACK code for a refused keepalive, and exactly-once QoS 2 for device
// messages (a DUP resend before PUBREL, also after a reconnect).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import type { MqttRunner } from '../../src/mqtt/index.js';
import { waitFor } from '../helpers/index.js';
import { RawMqtt } from '../helpers/mqtt.js';
import { addServiceAccount, RecordingRunner, startBroker, type TestBroker } from '../helpers/mqtt-support.js';

async function tcpBroker(t: TestContext): Promise<TestBroker & { tcpPort: number }> {
  const broker = await startBroker(t, {
    config: {
      mqtt: { tcp: { enabled: true, host: '127.0.0.1', port: 0 }, auth: { anonymous: true } },
      // As examples/open-broker.toml: anyone may use any topic but the device data ones.
      acl: { rules: [{ who: 'anyone', action: 'both', topic: '#' }] },
    },
    recorder: new RecordingRunner(),
  });
  const tcpPort = (broker.nucleon.runner('mqtt') as MqttRunner).port('tcp') ?? 0;
  return { ...broker, tcpPort };
}

async function connected(t: TestContext, port: number, clientId: string, clean = true): Promise<RawMqtt> {
  const client = await RawMqtt.connect(t, port, { clientId, clean });
  assert.equal((await client.next('connack')).returnCode, 0);
  return client;
}

/** A PUBLISH whose topic is given as raw bytes (mqtt-packet would encode a string as valid UTF-8). */
function publishWithTopicBytes(topic: Buffer, payload = Buffer.from('x')): Buffer {
  const body = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic, payload]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

test('[MQTT-1.5.3-1] a topic that is not well-formed UTF-8 closes the connection; U+FFFD spelled correctly does not', async (t) => {
  const broker = await tcpBroker(t);
  const good = await connected(t, broker.tcpPort, 'utf8-good');
  good.send({ cmd: 'publish', topic: 'utf8-good/app/p/\uFFFD', payload: Buffer.from('ok'), qos: 1, messageId: 1, retain: false, dup: false });
  assert.equal((await good.next('puback')).messageId, 1);
  await waitFor(() => broker.recorder.of('ApplicationRequest').some((e) => e.target === '\uFFFD'), 'the literal U+FFFD target handled');

  for (const bytes of [
    [0xff, 0xfe],
    [0xc0, 0xaf], // overlong "/"
    [0xed, 0xa0, 0x80], // a UTF-16 surrogate
  ]) {
    const bad = await connected(t, broker.tcpPort, 'utf8-bad');
    bad.send(publishWithTopicBytes(Buffer.concat([Buffer.from('utf8-bad/app/p/'), Buffer.from(bytes)])));
    assert.equal(await bad.closesWithin(), true, `closed for ${Buffer.from(bytes).toString('hex')}`);
  }
  assert.equal(broker.recorder.of('ApplicationRequest').filter((e) => e.uid === 'utf8-bad').length, 0);
});

test('[MQTT-1.5.3-2] U+0000 in a topic, a topic filter or a client id closes the connection', async (t) => {
  const broker = await tcpBroker(t);
  const publisher = await connected(t, broker.tcpPort, 'nul-pub');
  publisher.send({ cmd: 'publish', topic: 'nul-pub/app/p/a\u0000b', payload: Buffer.from('x'), qos: 0, retain: false, dup: false });
  assert.equal(await publisher.closesWithin(), true);
  const subscriber = await connected(t, broker.tcpPort, 'nul-sub');
  subscriber.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'nul-sub/app/s/\u0000', qos: 1 }] });
  assert.equal(await subscriber.closesWithin(), true);
  const connecting = await RawMqtt.connect(t, broker.tcpPort, { clientId: 'nul\u0000id' });
  assert.equal(await connecting.closesWithin(), true);
  assert.equal(connecting.packets.length, 0, 'no CONNACK for a CONNECT that breaks the rule');
});

test('[MQTT-2.3.1-1] packet id 0 in a QoS 1 PUBLISH or a SUBSCRIBE closes the connection', async (t) => {
  const broker = await tcpBroker(t);
  const publisher = await connected(t, broker.tcpPort, 'id0-pub');
  publisher.send({ cmd: 'publish', topic: 'id0-pub/app/p/x', payload: Buffer.from('x'), qos: 1, messageId: 0, retain: false, dup: false });
  assert.equal(await publisher.closesWithin(), true);
  assert.equal(publisher.packets.filter((p) => p.cmd === 'puback').length, 0);
  const subscriber = await connected(t, broker.tcpPort, 'id0-sub');
  subscriber.send({ cmd: 'subscribe', messageId: 0, subscriptions: [{ topic: 'id0-sub/app/s/#', qos: 1 }] });
  assert.equal(await subscriber.closesWithin(), true);
  assert.equal(broker.recorder.of('ApplicationRequest').length, 0);
});

test('a keepalive above mqtt.limits.keepalive_max_s, or 0, is refused with CONNACK 2 (identifier rejected, as Mosquitto), not the reserved 6', async (t) => {
  const broker = await tcpBroker(t);
  for (const keepalive of [0, 1201, 65535]) {
    const client = await RawMqtt.connect(t, broker.tcpPort, { clientId: `ka-${keepalive}`, keepalive });
    assert.equal((await client.next('connack')).returnCode, 2, `keepalive ${keepalive}`);
    assert.equal(await client.closesWithin(), true);
  }
  const fine = await RawMqtt.connect(t, broker.tcpPort, { clientId: 'ka-ok', keepalive: 1200 });
  assert.equal((await fine.next('connack')).returnCode, 0);
  assert.match(await broker.nucleon.metrics.metrics(), /nucleon_mqtt_refused_total\{reason="keepalive_out_of_bounds"\} 3/);
});

test('[MQTT-4.3.3-2] a QoS 2 device message resent with DUP before PUBREL is handled once, also after a reconnect of its persistent session', async (t) => {
  const broker = await tcpBroker(t);
  const uid = 'qos2-dev';
  const publish = (messageId: number, dup: boolean, payload: string) => ({ cmd: 'publish' as const, topic: `${uid}/app/p/once`, payload: Buffer.from(payload), qos: 2 as const, messageId, retain: false, dup });

  // Same connection: the resend before PUBREL.
  const device = await connected(t, broker.tcpPort, uid, false);
  device.send(publish(7, false, 'seven'));
  device.send(publish(7, true, 'seven'));
  assert.equal((await device.next('pubrec')).messageId, 7);
  assert.equal((await device.next('pubrec')).messageId, 7);
  device.send({ cmd: 'pubrel', messageId: 7 });
  assert.equal((await device.next('pubcomp')).messageId, 7);

  // Across a reconnect: PUBREC lost with the connection, the device resends with DUP.
  device.send(publish(9, false, 'nine'));
  assert.equal((await device.next('pubrec')).messageId, 9);
  device.end();
  await device.closed;
  const again = await RawMqtt.connect(t, broker.tcpPort, { clientId: uid, clean: false });
  assert.equal((await again.next('connack')).returnCode, 0);
  again.send(publish(9, true, 'nine'));
  assert.equal((await again.next('pubrec')).messageId, 9);
  again.send({ cmd: 'pubrel', messageId: 9 });
  assert.equal((await again.next('pubcomp')).messageId, 9);

  // After PUBREL the id is free again: a new message with it is a new message.
  again.send(publish(9, false, 'nine again'));
  assert.equal((await again.next('pubrec')).messageId, 9);
  again.send({ cmd: 'pubrel', messageId: 9 });
  await again.next('pubcomp');
  await broker.nucleon.broker.drain(5000);
  assert.deepEqual(
    broker.recorder.of('ApplicationRequest').filter((e) => e.uid === uid).map((e) => Buffer.from(e.payload).toString()),
    ['seven', 'nine', 'nine again'],
  );
});

test('[MQTT-3.1.3-8] a zero-length client id with CleanSession 0 gets CONNACK 2; with CleanSession 1 the server assigns one [MQTT-3.1.3-6]', async (t) => {
  const broker = await tcpBroker(t);
  // mqtt-packet will not write this CONNECT: protocol MQTT 4, flags 0 (CleanSession 0), keepalive 60, client id of length 0.
  const persistent = await RawMqtt.connect(t, broker.tcpPort, { clientId: 'unused' }, false);
  persistent.send(Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0, 0, 60, 0, 0]));
  assert.equal((await persistent.next('connack')).returnCode, 2);
  assert.equal(await persistent.closesWithin(), true);
  const clean = await RawMqtt.connect(t, broker.tcpPort, { clientId: '', clean: true });
  assert.equal((await clean.next('connack')).returnCode, 0);
});

test('[MQTT-3.3.5-1] overlapping subscriptions: one copy at the highest granted QoS; a wildcard subscription never raises the QoS granted', async (t) => {
  const broker = await tcpBroker(t);
  const client = await connected(t, broker.tcpPort, 'overlap-1');
  // The lower grant first: aedes delivered with the first matching subscription's function (QoS 0 here).
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'TopicA/+', qos: 0 }, { topic: 'TopicA/#', qos: 2 }, { topic: 'Low/+', qos: 1 }] });
  assert.deepEqual((await client.next('suback')).granted, [0, 2, 1]);
  const sender = await connected(t, broker.tcpPort, 'overlap-2');
  sender.send({ cmd: 'publish', topic: 'TopicA/C', payload: Buffer.from('overlap'), qos: 2, messageId: 1, retain: false, dup: false });
  await sender.next('pubrec');
  sender.send({ cmd: 'pubrel', messageId: 1 });
  // Published at 2 to a wildcard subscription granted 1: delivered at 1 (aedes delivered at 2).
  sender.send({ cmd: 'publish', topic: 'Low/x', payload: Buffer.from('low'), qos: 2, messageId: 2, retain: false, dup: false });
  await sender.next('pubrec');
  sender.send({ cmd: 'pubrel', messageId: 2 });
  sender.send({ cmd: 'publish', topic: 'TopicA/end', payload: Buffer.from('end'), qos: 1, messageId: 3, retain: false, dup: false });
  const received: { topic: string; qos: number }[] = [];
  for (;;) {
    const publish = await client.next('publish');
    received.push({ topic: publish.topic, qos: publish.qos });
    if (publish.qos === 1) client.send({ cmd: 'puback', messageId: publish.messageId });
    if (publish.qos === 2) client.send({ cmd: 'pubrec', messageId: publish.messageId });
    if (publish.topic === 'TopicA/end') break;
  }
  assert.deepEqual(received, [
    { topic: 'TopicA/C', qos: 2 },
    { topic: 'Low/x', qos: 1 },
    { topic: 'TopicA/end', qos: 1 },
  ]);
});

test('[MQTT-4.7.2-1] a publish to a $ topic is acknowledged and not delivered to # subscribers', async (t) => {
  const broker = await tcpBroker(t);
  const watcher = await connected(t, broker.tcpPort, 'dollar-watch');
  watcher.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: 1 }] });
  await watcher.next('suback');
  const sender = await connected(t, broker.tcpPort, 'dollar-send');
  sender.send({ cmd: 'publish', topic: '$TopicA/B', payload: Buffer.from('x'), qos: 1, messageId: 5, retain: false, dup: false });
  assert.equal((await sender.next('puback')).messageId, 5);
  sender.send({ cmd: 'publish', topic: 'TopicA/marker', payload: Buffer.from('m'), qos: 1, messageId: 6, retain: false, dup: false });
  const first = await watcher.next('publish');
  assert.equal(first.topic, 'TopicA/marker', 'the $ topic never arrived before the marker');
});

test('[MQTT-4.4.0-1] unacknowledged QoS 1 and 2 messages are sent again, with DUP, when a persistent session reconnects', async (t) => {
  const broker = await tcpBroker(t);
  const client = await connected(t, broker.tcpPort, 'redeliver', false);
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'TopicA/#', qos: 2 }] });
  await client.next('suback');
  const sender = await connected(t, broker.tcpPort, 'redeliver-sender');
  sender.send({ cmd: 'publish', topic: 'TopicA/one', payload: Buffer.from('1'), qos: 1, messageId: 1, retain: false, dup: false });
  sender.send({ cmd: 'publish', topic: 'TopicA/two', payload: Buffer.from('2'), qos: 2, messageId: 2, retain: false, dup: false });
  // Received, never acknowledged.
  const first = [await client.next('publish'), await client.next('publish')];
  const idOf = new Map(first.map((p) => [p.topic, p.messageId]));
  client.end();
  await client.closed;
  const again = await RawMqtt.connect(t, broker.tcpPort, { clientId: 'redeliver', clean: false });
  assert.equal((await again.next('connack')).sessionPresent, true);
  const resent = [await again.next('publish'), await again.next('publish')].map((p) => ({ topic: p.topic, qos: p.qos, dup: p.dup, messageId: p.messageId }));
  // "using their original Packet Identifiers"
  assert.deepEqual(resent.sort((a, b) => a.topic.localeCompare(b.topic)), [
    { topic: 'TopicA/one', qos: 1, dup: true, messageId: idOf.get('TopicA/one') },
    { topic: 'TopicA/two', qos: 2, dup: true, messageId: idOf.get('TopicA/two') },
  ]);
});

test('an MQTT 5 CONNECT gets a clean refusal: CONNACK 1 (unacceptable protocol version) and the connection closed, no hang', async (t) => {
  const broker = await tcpBroker(t);
  const client = await RawMqtt.connect(t, broker.tcpPort, { clientId: 'v5-client', protocolVersion: 5 });
  assert.equal((await client.next('connack')).returnCode, 1);
  assert.equal(await client.closesWithin(), true);
});

test('$SYS/broker/… topics: published retained, readable by service accounts only, whatever the rules say', async (t) => {
  const broker = await startBroker(t, {
    config: {
      mqtt: { sys_interval_s: 1, tcp: { enabled: true, host: '127.0.0.1', port: 0 }, auth: { anonymous: true } },
      acl: { rules: [{ who: 'anyone', action: 'both', topic: '$SYS/#' }, { who: 'anyone', action: 'both', topic: '#' }] },
    },
    recorder: new RecordingRunner(),
  });
  const tcpPort = (broker.nucleon.runner('mqtt') as MqttRunner).port('tcp') ?? 0;
  const password = await addServiceAccount(broker, 'monitor');
  const service = await RawMqtt.connect(t, tcpPort, { clientId: 'svc:monitor', username: 'svc:monitor', password: Buffer.from(password) });
  assert.equal((await service.next('connack')).returnCode, 0);
  service.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$SYS/broker/#', qos: 0 }, { topic: '$SYS/#', qos: 0 }] });
  assert.deepEqual((await service.next('suback')).granted, [0, 128], "only $SYS/broker/…: aedes' own cluster notices stay internal");
  const seen = new Map<string, string>();
  while (!seen.has('$SYS/broker/clients/connected') || !seen.has('$SYS/broker/version') || !seen.has('$SYS/broker/messages/received')) {
    const message = await service.next('publish');
    seen.set(message.topic, message.payload.toString());
  }
  assert.match(seen.get('$SYS/broker/version') ?? '', /^nucleon \d+\.\d+\.\d+/);
  assert.match(seen.get('$SYS/broker/clients/connected') ?? '', /^\d+$/);
  const device = await connected(t, tcpPort, 'sys-dev');
  device.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$SYS/broker/#', qos: 0 }] });
  assert.deepEqual((await device.next('suback')).granted, [128]);
  const anon = await connected(t, tcpPort, 'not a uid');
  anon.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$SYS/broker/clients/connected', qos: 0 }] });
  assert.deepEqual((await anon.next('suback')).granted, [128]);
});
