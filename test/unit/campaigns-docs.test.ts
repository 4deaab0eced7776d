// README "Campaigns" is checked against the code: its worked example is a valid
// spec, and its table of failure reasons lists exactly the reasons a device can fail with.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parse as parseToml } from 'smol-toml';
import { parseCampaignSpec } from '../../src/campaigns/spec.js';
import type { CampaignFailReason } from '../../src/events.js';
import { repoRoot } from '../helpers/index.js';

const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
const start = readme.indexOf('\n## Campaigns\n');
const section = readme.slice(start, readme.indexOf('\n## ', start + 1));

/** Every reason, spelled out so that a new member of the union fails to compile here until it is listed. */
const REASONS: Record<CampaignFailReason, true> = {
  download_timeout: true,
  no_reconnect: true,
  version_reverted: true,
  boot_loop: true,
  telemetry_silent: true,
  device_rejected: true,
  link_refused: true,
};

test('the worked example of README "Campaigns" is a valid campaigns.create request', () => {
  assert.ok(start >= 0, 'README.md has a "## Campaigns" section');
  const from = section.indexOf('{"id": 1, "cmd": "campaigns.create"');
  assert.ok(from >= 0);
  const request = JSON.parse(section.slice(from, section.indexOf('```', from))) as { cmd: string; args: unknown };
  assert.equal(request.cmd, 'campaigns.create');
  const spec = parseCampaignSpec(request.args);
  assert.equal(spec.id, 'fw-1.3.0');
  assert.deepEqual(spec.abort, { failedPercent: 5, minFailed: 5 });
});

test('the TOML spec of README "Campaigns" (for nucleon campaigns create) is valid and says what the JSON example says', () => {
  const from = section.indexOf('# rollout.toml');
  assert.ok(from >= 0, 'README "Campaigns" has the rollout.toml example');
  const spec = parseCampaignSpec(parseToml(section.slice(from, section.indexOf('```', from))));
  assert.equal(spec.id, 'fw-1.3.0');
  assert.deepEqual(spec.stages, [{ percent: 1 }, { percent: 10 }, { percent: 100, soakMs: 0 }]);
  assert.deepEqual(spec.abort, { failedPercent: 5, minFailed: 5 });
  assert.deepEqual(spec.target, { groups: ['field', 'lab'] });
});

test('README "Campaigns" lists every failure reason, and no other', () => {
  const table = section.indexOf('| reason | detected when |');
  assert.ok(table >= 0, 'README "Campaigns" has a table of failure reasons');
  const rows = section.slice(table, section.indexOf('\n\n', table)).split('\n');
  const documented = rows.flatMap((row) => /^\| `([a-z_]+)` \| /.exec(row)?.[1] ?? []);
  assert.deepEqual(documented.sort(), Object.keys(REASONS).sort());
});
