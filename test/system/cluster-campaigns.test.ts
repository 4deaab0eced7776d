// Campaigns in cluster mode (issue 18): one instance drives, the other forwards what its
// devices do and the commands sent to it; kill -9 of the driver, the other takes over within the lease TTL and the
// campaign goes on from the shared store, no device told twice.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import type { MqttClient } from 'mqtt';
import type { AdminClient } from '../../src/cli/admin-client.js';
import type { CampaignDeviceStatus, CampaignSummary } from '../../src/events.js';
import { encodeCbor } from '../../src/protocol/index.js';
import { addDevice, API_KEY, device, startCluster, startInstance, waitFor, type Instance } from '../helpers/cluster-harness.js';

const IMAGE_ID = '3.1.0-0-gc0ffee1';
const IMAGE_SIZE = 8192;
const CHUNK = 4096;
const LEASE_MS = 2000;
/** The campaigns runner's tick (its default). */
const TICK_MS = 1000;
const DRIVES = '"msg":"this instance drives the campaigns"';
const CONTINUES = '"msg":"continuing campaigns"';

/**
 * A Pyrinas device over MQTT that takes an update the way firmware does: on a
 * package it downloads the image in chunks, "reboots" (disconnects and connects
 * again) and from then on reports the new version in telemetry every 300 ms.
 */
class SimulatedDevice {
  packages = 0;
  readonly errors: unknown[] = [];
  private telemetry: NodeJS.Timeout | undefined;

  constructor(
    private readonly t: TestContext,
    private readonly instance: Instance,
    readonly uid: string,
  ) {
    t.after(() => clearInterval(this.telemetry));
  }

  async connect(): Promise<void> {
    const client = await device(this.t, this.instance, this.uid);
    await client.subscribeAsync([`${this.uid}/ota/s`, `${this.uid}/ota/s/d`], { qos: 1 });
    client.on('message', (topic, payload) => {
      if (topic !== `${this.uid}/ota/s` || payload.length === 0) return;
      this.packages++;
      this.update(client).catch((error: unknown) => this.errors.push(error));
    });
  }

  private async update(client: MqttClient): Promise<void> {
    let chunks = 0;
    client.on('message', (topic) => {
      if (topic === `${this.uid}/ota/s/d`) chunks++;
    });
    for (let start = 0, n = 1; start < IMAGE_SIZE; start += CHUNK, n++) {
      const request = new Map<number, unknown>([[0, 2], [1, IMAGE_ID], [2, start], [3, Math.min(IMAGE_SIZE, start + CHUNK)]]);
      await client.publishAsync(`${this.uid}/ota/p`, encodeCbor(request), { qos: 1 });
      await waitFor(() => chunks >= n, `${this.uid}: chunk ${n}`);
    }
    await client.endAsync();
    const rebooted = await device(this.t, this.instance, this.uid);
    const report = () => rebooted.publishAsync(`${this.uid}/tel/p`, encodeCbor(new Map([[0, IMAGE_ID]])), { qos: 1 });
    await report();
    this.telemetry = setInterval(() => {
      report().catch((error: unknown) => this.errors.push(error));
    }, 300);
  }
}

/** Download requests the campaign byte budget held back on an instance (its own /metrics). */
async function budgetDelayed(instance: Instance): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${instance.adminPort}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } })).text();
  const line = text.split('\n').find((l) => l.startsWith('nucleon_ota_budget_requests_total{path="mqtt",result="delayed"}'));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

async function summary(admin: AdminClient, id: string): Promise<CampaignSummary> {
  return (await admin.request<{ campaign: CampaignSummary }>('campaigns.show', { id })).campaign;
}

test('cluster campaigns: kill -9 of the driving instance, the other takes over within the lease TTL and completes the campaign', async (t) => {
  const cluster = await startCluster(t);
  if (!cluster) return;
  const uids = ['dev-c1', 'dev-c2', 'dev-c3'];
  for (const uid of uids) await addDevice(cluster, uid);
  // A first, so it takes the lease; B starts once A drives.
  const a = await startInstance(t, cluster, 'a', { campaignLeaseMs: LEASE_MS });
  await waitFor(() => a.proc.output().includes(DRIVES), 'A to drive the campaigns');
  const b = await startInstance(t, cluster, 'b', { campaignLeaseMs: LEASE_MS });
  assert.equal(b.proc.output().includes(DRIVES), false, 'B does not drive while A holds the lease');

  // The devices are on B, so until the takeover everything they do reaches A through the relay.
  const devices = uids.map((uid) => new SimulatedDevice(t, b, uid));
  for (const simulated of devices) await simulated.connect();
  const file = path.join(cluster.dir, 'firmware.bin');
  await writeFile(file, randomBytes(IMAGE_SIZE));
  const adminA = await a.admin();
  const adminB = await b.admin();
  await adminA.addImage(file, { id: IMAGE_ID, imageType: 'primary' });

  const spec = {
    id: 'fw-3.1.0',
    imageId: IMAGE_ID,
    target: { devices: uids },
    canary: ['dev-c1'],
    stages: [{ percent: 100 }],
    soakMs: 500,
    health: { windowMs: 2500, telemetrySilentMs: 8000, reconnectTimeoutMs: 20_000, downloadTimeoutMs: 20_000, successRatio: 1 },
    abort: { failedPercent: 50, minFailed: 1 },
    // 8 KiB images at 4 KiB/s: every chunk after the first quarter second's waits its turn.
    budget: { bytesPerSecond: 4096, maxDelayMs: 10_000 },
  };
  // Sent to B, which does not drive: B forwards it to A through Redis and hands back A's answer.
  const created = await adminB.request<CampaignSummary>('campaigns.create', spec);
  assert.equal(created.state, 'running');
  assert.equal((await summary(adminA, spec.id)).state, 'running', 'A, the driver, holds it');

  // The canary is confirmed through the relay (its version report was seen on B), then A dies.
  await waitFor(async () => (await summary(adminB, spec.id)).counts.confirmed === 1, 'the canary confirmed (read on B)', 30_000, 50);
  // B served the canary's chunks while A drove: B's OTA runner held them to the campaign's budget (shared in Redis).
  const delayedOnB = await budgetDelayed(b);
  t.diagnostic(`chunks the budget delayed on B while A drove: ${delayedOnB}`);
  assert.ok(delayedOnB >= 1, 'the non-driving instance paced its campaign downloads');
  a.proc.child.kill('SIGKILL');
  await a.proc.exited;
  const killedAt = Date.now();
  await waitFor(() => b.proc.output().includes(DRIVES) && b.proc.output().includes(CONTINUES), 'B to take over', LEASE_MS + TICK_MS + 5000, 10);
  const tookMs = Date.now() - killedAt;
  t.diagnostic(`B drove the campaign ${tookMs} ms after A was killed (lease ${LEASE_MS} ms, tick ${TICK_MS} ms)`);
  assert.ok(tookMs <= LEASE_MS + TICK_MS, `takeover after ${tookMs} ms`);

  // B goes on from the store: the canary turns healthy, the last stage is told, the campaign completes.
  const done = await waitFor(
    async () => {
      const current = await summary(adminB, spec.id);
      return current.state === 'running' ? undefined : current;
    },
    'the campaign to finish on B',
    45_000,
    100,
  );
  assert.equal(done.state, 'completed', `campaign ${done.state}: ${done.reason}`);
  assert.equal(done.counts.healthy, uids.length);
  assert.equal(done.counts.failed, 0);
  for (const simulated of devices) {
    assert.deepEqual(simulated.errors, [], `${simulated.uid} had no error`);
    assert.equal(simulated.packages, 1, `${simulated.uid} was told once`);
  }
  // The downloads were seen by the driver: the canary's on B went to A through the relay.
  const shown = await adminB.request<{ devices: CampaignDeviceStatus[] }>('campaigns.show', { id: spec.id, devices: true });
  assert.deepEqual(
    shown.devices.map((record) => [record.uid, record.state, record.bytes]).sort(),
    uids.map((uid) => [uid, 'healthy', IMAGE_SIZE]),
  );
});
