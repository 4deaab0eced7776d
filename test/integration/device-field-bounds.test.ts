// Strings a device controls and Nucleon stores or echoes are bounded
// (README "Device payload bounds"): an over-long telemetry version or OTA image
// id is refused as a bad payload (acknowledged, logged with uid and reason,
// counted), an over-long app target as a malformed topic; none of it reaches
// the store, the fleet view or an answer. A real instance (child process) and
// a device over TLS.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { ClassicLevel } from 'classic-level';
import { AdminTestClient } from '../helpers/admin-harness.js';
import { encodeCbor } from '../../src/protocol/index.js';
import { waitFor } from '../helpers/index.js';
import { ADMIN_KEY, connectDevice, startInstance } from '../helpers/reliability-support.js';

const GOOD_VERSION = '1.2.3-4-g965b9df';
/** A marker no legitimate value contains; searched for in the store and the answers. */
const HUGE = 'v'.repeat(200 * 1024);
const HUGE_MARK = 'v'.repeat(1000);

interface ListedDevice {
  uid: string;
  firmwareVersion?: string;
  telemetry?: { rsrp?: number };
}

test('a 200 KB telemetry version, an over-long OTA id and app target are refused with a reason and never reach the store or devices.list', async (t) => {
  const uid = 'bounds-device';
  const instance = await startInstance(t, {
    certDevices: [uid],
    omit: ['log'],
    // warn: the refusals are logged at warn level, with uid and reason.
    extraToml: ['[log]', 'level = "warn"', 'format = "json"'],
  });
  const device = await connectDevice(t, instance, uid, { clean: true });
  let closed = 0;
  device.on('close', () => closed++);

  // Each is acknowledged (the publish resolves), so the device does not resend it.
  await device.publishAsync(`${uid}/tel/p`, encodeCbor(new Map<number, unknown>([[0, HUGE], [1, 45]])), { qos: 1 });
  await device.publishAsync(`${uid}/ota/p`, encodeCbor(new Map<number, unknown>([[0, 2], [1, HUGE.slice(0, 5000)], [2, 0], [3, 64]])), { qos: 1 });
  await device.publishAsync(`${uid}/app/p/${'t'.repeat(5000)}`, 'x', { qos: 1 });
  // Then a report without a version: once the fleet view shows it, everything before it was handled.
  await device.publishAsync(`${uid}/tel/p`, encodeCbor(new Map<number, unknown>([[1, 50]])), { qos: 1 });

  const admin = await AdminTestClient.connect(t, `ws://127.0.0.1:${instance.ports.admin}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  const listed = await waitFor(async () => {
    const reply = await admin.request('devices.list');
    const found = (reply.result?.devices as ListedDevice[] | undefined)?.find((d) => d.uid === uid);
    return found?.telemetry?.rsrp === 50 ? { reply, found } : undefined;
  }, 'devices.list to show the later report');
  const answer = JSON.stringify(listed.reply);
  assert.ok(!answer.includes(HUGE_MARK), `devices.list carries the refused version (${answer.length} bytes)`);
  assert.ok(answer.length < 4096, `devices.list answer is ${answer.length} bytes`);
  assert.equal(listed.found.firmwareVersion, undefined);

  assert.equal(await instance.metric('nucleon_mqtt_bad_payloads_total', { kind: 'tel', reason: 'field_too_long' }), 1);
  assert.equal(await instance.metric('nucleon_mqtt_bad_payloads_total', { kind: 'ota', reason: 'field_too_long' }), 1);
  assert.equal(await instance.metric('nucleon_mqtt_malformed_topics_total', { reason: 'target_too_long' }), 1);
  assert.equal(await instance.metric('nucleon_mqtt_messages_received_total', { kind: 'tel' }), 1);
  const log = instance.process.output();
  const refusal = log.split('\n').find((line) => line.includes('"reason":"field_too_long"') && line.includes('"topic":"bounds-device/tel/p"'));
  assert.ok(refusal, 'the telemetry refusal is logged');
  assert.match(refusal, /"uid":"bounds-device"/);
  assert.match(refusal, /field version is 204800 characters long, at most 64 allowed/);
  assert.ok(!log.includes(HUGE_MARK), 'the log does not carry the value');

  // A good version afterwards is shown as usual.
  await device.publishAsync(`${uid}/tel/p`, encodeCbor(new Map<number, unknown>([[0, GOOD_VERSION], [1, 55]])), { qos: 1 });
  await waitFor(async () => {
    const reply = await admin.request('devices.list');
    return (reply.result?.devices as ListedDevice[] | undefined)?.find((d) => d.uid === uid)?.firmwareVersion === GOOD_VERSION;
  }, 'devices.list to show the good version');
  assert.equal(closed, 0, 'the device stays connected');

  // The store on disk holds nothing of it (recent telemetry, fleet view, firmware state).
  await instance.stop();
  const db = new ClassicLevel<string, string>(path.join(instance.dir, 'data', 'kv'), { valueEncoding: 'utf8' });
  await db.open();
  t.after(() => db.close());
  let entries = 0;
  for await (const [key, value] of db.iterator()) {
    entries++;
    assert.ok(!value.includes(HUGE_MARK) && !key.includes(HUGE_MARK) && !key.includes('t'.repeat(300)), `store entry ${key} holds a refused value`);
  }
  assert.ok(entries > 0, 'the store was read');
});
