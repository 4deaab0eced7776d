// The disk under the ingest log fills up (a 1 MiB tmpfs) while a device
// publishes and the app runner is held up, so nothing can be deleted: the
// writes fail with ENOSPC and are retried, the device is held back (no
// PUBACK), nothing is lost; once space returns (the tmpfs grows) the held
// messages are written and acknowledged, and every acknowledged one reaches
// the app runner.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { EventOf } from '../../src/events.js';
import { EventRunner } from '../../src/runner.js';
import { skipOutsideCi, tempDir, waitFor } from '../helpers/index.js';
import { connect, startBroker } from '../helpers/mqtt-support.js';
import { summary } from '../helpers/reliability-support.js';

class HeldApp extends EventRunner<'ApplicationRequest'> {
  readonly handled = new Set<string>();
  private release: () => void = () => undefined;
  private readonly gate = new Promise<void>((resolve) => (this.release = resolve));

  constructor() {
    super('held-app', ['ApplicationRequest']);
  }

  open(): void {
    this.release();
  }

  protected async handle(event: EventOf<'ApplicationRequest'>): Promise<void> {
    await this.gate;
    this.handled.add(Buffer.from(event.payload).subarray(0, 16).toString().trim());
  }
}

test('disk full under the ingest log: the device is held back, nothing acknowledged is lost, and it recovers when space returns', async (t) => {
  // Its own folder, unmounted (lazily: the server may still hold files) before the folder goes.
  const mountPoint = await mkdtemp(path.join(os.tmpdir(), 'nucleon-ingest-tmpfs-'));
  let unmount = false;
  t.after(async () => {
    if (unmount) spawnSync('umount', ['-l', mountPoint]);
    await rm(mountPoint, { recursive: true, force: true });
  });
  const dir = await tempDir(t);
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mountPoint], { encoding: 'utf8' });
  if (mounted.status !== 0) {
    skipOutsideCi(t, `cannot mount a tmpfs (${mounted.stderr.trim()}): run as root`);
    return;
  }
  unmount = true;

  const app = new HeldApp();
  const broker = await startBroker(t, { dir, config: { ingest: { dir: mountPoint, segment_bytes: 64 * 1024 }, mqtt: { auth: { anonymous: true } } } });
  await broker.nucleon.addRunner(app);
  const device = await connect(t, broker, { clientId: 'disk-dev' });
  const metric = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await broker.nucleon.metrics.metrics())?.[1] ?? 0);

  const acked = new Set<string>();
  let sent = 0;
  let publishing = true;
  const payload = (n: number) => Buffer.concat([Buffer.from(String(n).padEnd(16)), Buffer.alloc(1008, 0x61)]);
  const load = (async () => {
    // 20 in flight at a time: once the disk is full they stay unacknowledged and this waits.
    while (publishing && sent < 10_000) {
      const batch = Array.from({ length: 20 }, () => {
        const n = ++sent;
        return device.publishAsync('disk-dev/app/p/fill', payload(n), { qos: 1 }).then(() => void acked.add(String(n)));
      });
      await Promise.all(batch);
    }
  })();
  await waitFor(async () => (await metric('nucleon_ingest_write_errors_total')) > 0, 'a write to fail with ENOSPC', 30_000);
  const ackedWhileFull = acked.size;
  // Retried with a back-off: by the third failure the first retries have come and gone, and nothing was acknowledged meanwhile.
  await waitFor(async () => (await metric('nucleon_ingest_write_errors_total')) >= 3, 'the write retried', 30_000);
  assert.equal(acked.size, ackedWhileFull, 'no PUBACK while the disk is full');
  assert.ok(sent > acked.size, 'publishes waiting unacknowledged');
  assert.equal(await metric('nucleon_ingest_log_full'), 1);

  // Space comes back.
  assert.equal(spawnSync('mount', ['-o', 'remount,size=64m', mountPoint]).status, 0);
  await waitFor(() => acked.size > ackedWhileFull + 20, 'acknowledgements again', 30_000);
  publishing = false;
  await load;
  app.open();
  await waitFor(() => [...acked].every((n) => app.handled.has(n)), 'every acknowledged message handled', 30_000);
  assert.equal(await metric('nucleon_mqtt_paused_clients'), 0);
  const writeErrors = await metric('nucleon_ingest_write_errors_total');
  // Stopped here, before the tmpfs goes: after a lazy unmount its path is the plain folder again.
  await broker.nucleon.stop();
  summary('faults ingest-disk', { tmpfsBytes: 1024 * 1024, ackedBeforeFull: ackedWhileFull, ackedTotal: acked.size, writeErrors, lost: [...acked].filter((n) => !app.handled.has(n)).length });
});
