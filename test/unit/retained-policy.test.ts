import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PublishPacket } from 'aedes';
import { RetainedPolicy, storeRetainedWithin } from '../../src/mqtt/retained.js';

const packet = (topic: string, payload = Buffer.from('x')): PublishPacket => ({ cmd: 'publish', topic, payload, qos: 0, retain: true, dup: false });

test("the broker's $SYS topics are stored outside the bounds: they neither count nor get refused, and devices keep their whole allowance", async () => {
  const refusals: string[] = [];
  const policy = new RetainedPolicy({ perDevice: 2, bytesPerDevice: 1024, total: 3, bytesTotal: 4096 }, (_uid, topic, reason) => refusals.push(`${topic}:${reason}`));
  const written: string[] = [];
  const write = async (p: PublishPacket) => {
    written.push(`${p.topic}=${p.payload.length}`);
  };
  for (const name of ['version', 'uptime', 'clients/connected', 'messages/sent', 'messages/received']) await storeRetainedWithin(policy, packet(`$SYS/broker/${name}`), write);
  assert.deepEqual(policy.usage(), { messages: 0, bytes: 0 });
  for (const topic of ['a/app/p/1', 'a/app/p/2', 'a/app/p/3', 'b/app/p/1', 'c/app/p/1']) await storeRetainedWithin(policy, packet(topic), write);
  assert.deepEqual(refusals, ['a/app/p/3:device_messages', 'c/app/p/1:total_messages']);
  assert.deepEqual(policy.usage().messages, 3);
  // Refused ones are written as a clear (an empty payload), the $SYS ones as they are.
  assert.deepEqual(written.slice(0, 5).map((w) => w.endsWith('=1')), [true, true, true, true, true]);
  assert.deepEqual(written.slice(5), ['a/app/p/1=1', 'a/app/p/2=1', 'a/app/p/3=0', 'b/app/p/1=1', 'c/app/p/1=0']);
});
