// `nucleon campaigns …` (the built dist/bin.cjs: `npm run build` first) against a
// real `nucleon serve`: create from a TOML and a JSON spec, list, show, pause,
// resume, promote, abort; human tables by default, --json for scripts, and
// the failures a user meets.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { runCli } from '../helpers/index.js';
import { GROUP, NEW_IMAGE, startCampaignServer } from '../helpers/campaign-fleet.js';
import { ADMIN_KEY } from '../helpers/reliability-support.js';

test('nucleon campaigns create (TOML and JSON) → list → show → pause → resume → promote → abort, and its errors', async (t) => {
  const setup = await startCampaignServer(t, 4);
  if (!setup) return;
  const { serve, uids } = setup;
  const dir = serve.dir;
  const connection = ['--url', `ws://127.0.0.1:${serve.ports.admin}`, '--api-key', ADMIN_KEY];
  const cli = (...args: string[]) => runCli(['campaigns', ...args, ...connection], { env: { NUCLEON_ADMIN_API_KEY: '', NUCLEON_ADMIN_URL: '' }, timeoutMs: 30_000 });

  // An hour's soak: the campaign stays in its first stage until promoted.
  const toml = path.join(dir, 'rollout.toml');
  await writeFile(
    toml,
    [`id = "rollout-1"`, `imageId = "${NEW_IMAGE}"`, 'soakMs = 3600000', '[target]', `groups = ["${GROUP}"]`, '[[stages]]', 'count = 1', '[[stages]]', 'count = 4', '[abort]', 'failedPercent = 50', 'minFailed = 2'].join('\n'),
  );
  const created = cli('create', toml);
  assert.equal(created.stderr, '');
  assert.equal(created.code, 0);
  assert.match(created.stdout, new RegExp(`^created: campaign rollout-1 \\(image ${NEW_IMAGE.replace(/\./g, '\\.')}\\): running \\(created\\), stage 1 of 2 \\(1 devices\\); pending 3, notified 1\\n`));
  assert.match(created.stdout, /^STAGE +LABEL +DEVICES +STARTED$/m);
  assert.match(created.stdout, /^1 +1 devices +1 +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +<$/m);
  assert.match(created.stdout, /^2 +4 devices +3 +-$/m);

  const list = cli('list');
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^ID +IMAGE +STATE +STAGE +REASON +DEVICES$/m);
  assert.match(list.stdout, new RegExp(`^rollout-1 +${NEW_IMAGE.replace(/\./g, '\\.')} +running +1/2 1 devices +created +pending 3, notified 1$`, 'm'));
  const listed = JSON.parse(cli('list', '--json').stdout) as { id: string; state: string; stage: number }[];
  assert.deepEqual(
    listed.map(({ id, state, stage }) => ({ id, state, stage })),
    [{ id: 'rollout-1', state: 'running', stage: 0 }],
  );

  const shown = cli('show', 'rollout-1', '--devices');
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /^DEVICE +STAGE +STATE +DOWNLOADED +REASON +NOTE$/m);
  for (const uid of uids) assert.match(shown.stdout, new RegExp(`^${uid} +[12] +(notified|pending) +-$`, 'm'));
  const shownJson = JSON.parse(cli('show', 'rollout-1', '--json').stdout) as { campaign: { id: string }; spec: { soakMs: number }; devices?: unknown };
  assert.equal(shownJson.campaign.id, 'rollout-1');
  assert.equal(shownJson.spec.soakMs, 3_600_000);
  assert.equal(shownJson.devices, undefined, 'devices only with --devices');

  assert.match(cli('pause', 'rollout-1').stdout, /^paused: campaign rollout-1 .*: paused \(operator\), stage 1 of 2/);
  const pausedAgain = cli('pause', 'rollout-1');
  assert.equal(pausedAgain.code, 1);
  assert.match(pausedAgain.stderr, /^nucleon: .*\[CAMPAIGN_STATE\]\n$/);
  assert.match(cli('resume', 'rollout-1').stdout, /^resumed: campaign rollout-1 .*: running/);
  assert.match(cli('promote', 'rollout-1').stdout, /^promoted: campaign rollout-1 .*: running .*stage 2 of 2 \(4 devices\); notified 4\n$/);
  const aborted = cli('abort', 'rollout-1', '--no-rollback', '--json');
  assert.equal(aborted.code, 0, aborted.stderr);
  assert.deepEqual(
    (({ state, reason }) => ({ state, reason }))(JSON.parse(aborted.stdout) as { state: string; reason: string }),
    { state: 'aborted', reason: 'operator' },
  );

  // A JSON spec; the server names the bad field.
  const json = path.join(dir, 'bad.json');
  await writeFile(json, JSON.stringify({ id: 'rollout-2', imageId: NEW_IMAGE, target: { groups: [GROUP] }, stages: [{ percent: 50 }] }));
  const invalid = cli('create', json);
  assert.equal(invalid.code, 1);
  assert.match(invalid.stderr, /^nucleon: stages\.0\.percent: the last stage must reach 100.*\[INVALID_ARGUMENT\]\n$/);
  await writeFile(json, JSON.stringify({ id: 'rollout-2', imageId: NEW_IMAGE, target: { devices: [uids[0]] }, stages: [{ percent: 100 }] }));
  const second = cli('create', json, '--json');
  assert.equal(second.code, 0, second.stderr);
  assert.equal((JSON.parse(second.stdout) as { id: string }).id, 'rollout-2');

  const missing = cli('create', path.join(dir, 'nope.json'));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^nucleon: cannot read the spec .*nope\.json/);
  const unknown = cli('show', 'no-such');
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /\[NOT_FOUND\]\n$/);
  assert.equal(cli('frobnicate').code, 2);
  assert.equal(cli('pause').code, 2);
  assert.equal(cli('pause', 'rollout-2', '--rollback').code, 2);
});
