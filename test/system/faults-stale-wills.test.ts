// Wills that outlive the process: two devices with persistent sessions and
// wills, then SIGKILL. After the restart aedes' will sweep finds the wills of
// clients that never came back and publishes them without a client. Before,
// the gateway refused such a will, two refusals in one sweep batch became an
// unhandled rejection, and the process exited 240 s after every start (a
// crash loop). Now a stale will is published under the identity its client
// id names, with the device ACL, and reaches the app runner; the process
// stays up and the wills are gone from the store afterwards.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { ClassicLevel } from 'classic-level';
import { waitFor } from '../helpers/index.js';
import { connectDevice, freePorts, startInstance, summary } from '../helpers/reliability-support.js';

const HEARTBEAT_MS = 200;

test('wills of devices from before a SIGKILL are published under their identity after the restart; no crash loop', async (t) => {
  const ports = await freePorts();
  const uids = ['will-dev-1', 'will-dev-2'];
  const limits = ['[mqtt.limits]', 'connections_per_second = 100000', 'connect_timeout_ms = 2000', `heartbeat_interval_ms = ${HEARTBEAT_MS}`];
  const first = await startInstance(t, { ports, certDevices: uids, omit: ['mqtt.limits'], extraToml: limits });
  for (const uid of uids) {
    const device = await connectDevice(t, first, uid, {
      clean: false,
      will: { topic: `${uid}/app/p/gone`, payload: Buffer.from(`${uid} went away`), qos: 1, retain: false },
    });
    assert.ok(device.connected);
  }
  await first.kill();

  const recordFile = path.join(first.dir, 'handled.txt');
  const restarted = await startInstance(t, { dir: first.dir, ports, recordFile, omit: ['mqtt.limits'], extraToml: limits });
  const handled = async () => (await readFile(recordFile, 'utf8').catch(() => '')).split('\n').filter((line) => line.includes(' gone '));
  await waitFor(async () => (await handled()).length === 2, 'both wills handled by the app runner', 30_000);
  await waitFor(async () => (await restarted.metric('nucleon_mqtt_stale_wills_total', { result: 'published' })) === 2, 'both counted');
  const lines = await handled();
  for (const uid of uids) assert.ok(lines.some((line) => line.startsWith(`${uid} gone ${Buffer.from(`${uid} went away`).toString('hex')}`)), `the will of ${uid}, under its uid`);
  assert.ok(restarted.alive(), 'still running after the sweep that published them');

  // Published once: aedes deleted them from the session store afterwards (read after a clean stop, LevelDB being single-user).
  await restarted.stop();
  const db = new ClassicLevel<string, Buffer>(path.join(first.dir, 'data', 'mqtt'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  try {
    const wills = await db.keys({ gte: 'will:', lt: 'will;' }).all();
    assert.deepEqual(wills, []);
  } finally {
    await db.close();
  }
  summary('faults stale-wills', { heartbeatMs: HEARTBEAT_MS, willsPublished: 2 });
});
