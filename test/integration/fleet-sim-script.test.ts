// `npm run fleet-sim` (scripts/fleet-sim.ts) against a real `nucleon serve`: it
// sets the devices' passwords through the admin endpoint, connects them over
// TLS, takes a campaign's image, and reports and disconnects at the end.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { repoRoot, spawnCollecting, waitFor } from '../helpers/index.js';
import { GROUP, NEW_IMAGE, OLD_IMAGE, startCampaignServer, waitForCampaign, withAdminOf } from '../helpers/campaign-fleet.js';

const TSX = import.meta.resolve('tsx');

test('npm run fleet-sim: 20 devices, 10% never back after the install; the summary says what each runs', async (t) => {
  const setup = await startCampaignServer(t, 20);
  if (!setup) return;
  const { serve } = setup;
  const sim = spawnCollecting(
    process.execPath,
    ['--import', TSX, path.join(repoRoot, 'scripts/fleet-sim.ts'), '--devices', '20', '--bad-never-back', '0.1', '--config', path.join(serve.dir, 'config.toml'), '--telemetry-ms', '500', '--duration-s', '25'],
    60_000,
  );
  await waitFor(() => sim.output().includes('fleet-sim: {'), 'the first report of the fleet', 30_000, 100);
  await withAdminOf(serve, (client) =>
    client.request('campaigns.create', {
      id: 'sim',
      imageId: NEW_IMAGE,
      target: { groups: [GROUP] },
      stages: [{ percent: 100 }],
      soakMs: 0,
      health: { windowMs: 1000, reconnectTimeoutMs: 4000, successRatio: 0.5 },
    }),
  );
  const done = await waitForCampaign(serve, 'sim', 'the campaign to complete', (s) => s.campaign.state !== 'running', 30_000);
  assert.equal(done.campaign.counts.healthy, 18);
  assert.equal(done.campaign.counts.failed, 2);
  const finished = await sim.done;
  assert.equal(finished.stderr, '');
  assert.equal(finished.code, 0);
  assert.match(finished.stdout, /^fleet-sim: 20 devices \(good 18, never_back 2, revert 0, boot_loop 0, silent 0, stall 0\)/);
  const reports = finished.stdout.split('\n').filter((line) => line.startsWith('fleet-sim: {'));
  const last = JSON.parse(reports.at(-1)?.slice('fleet-sim: '.length) ?? '{}') as { versions: Record<string, number>; status: Record<string, number> };
  assert.deepEqual(last.versions, { [NEW_IMAGE]: 18, [OLD_IMAGE]: 2 });
  assert.equal(last.status.gone, 2);
});
