// A program's own runners in every worker (README "Workers", `runWorkers`): the
// setup runs in the worker before it starts, and the worker runs it otherwise
// as `serve --workers` does. Run in this process with a standalone config (a
// real pool of forked workers on Redis is test/system/workers.test.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ConfigInput, Nucleon, Runner, RunnerContext } from '../../src/index.js';
import { runIfWorker, runWorker } from '../../src/workers/index.js';
import { tempDir, waitFor } from '../helpers/index.js';

function config(dir: string): ConfigInput {
  return {
    log: { level: 'silent' },
    store: { path: `${dir}/data` },
    certs: { dir: `${dir}/certs`, auto_generate: false },
    ingest: { durability: 'memory' },
    mqtt: { tls: { enabled: false }, tcp: { enabled: true, host: '127.0.0.1', port: 0 }, auth: { anonymous: true, client_certificates: false, passwords: false }, sys_interval_s: 0 },
    ota: { enabled: false, http: { enabled: false } },
    admin: { enabled: false },
  };
}

class Probe implements Runner {
  readonly name = 'probe';
  constructor(private readonly seen: string[]) {}

  start(context: RunnerContext): Promise<void> {
    this.seen.push(`started in ${context.presence.instanceId}`);
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.seen.push('stopped');
    return Promise.resolve();
  }
}

/** What the primary sends to stop a worker (src/workers/messages.ts), delivered to this process as if over the cluster channel. */
function primaryAsksToStop(): void {
  process.emit('message', { nucleon: 'stop' }, undefined);
}

test('outside a worker, runIfWorker resolves with undefined and runs nothing', async () => {
  let called = false;
  assert.equal(
    await runIfWorker(() => {
      called = true;
    }),
    undefined,
  );
  assert.equal(called, false);
});

test("runWorker: setup gets the worker's Nucleon and slot before it starts; the runner it adds runs there and stops with it", async (t) => {
  const dir = await tempDir(t);
  const seen: string[] = [];
  let worker: Nucleon | undefined;
  const running = runWorker(3, JSON.stringify(config(dir)), async (nucleon, slot) => {
    worker = nucleon;
    seen.push(`setup slot ${slot}, running ${String(nucleon.running)}`);
    await nucleon.addRunner(new Probe(seen));
  });
  await waitFor(() => worker?.running, 'the worker started');
  primaryAsksToStop();
  assert.equal(await running, 0, 'a clean stop');
  assert.equal(seen[0], 'setup slot 3, running false');
  assert.match(seen[1] ?? '', /^started in .*-w3-\d+-[0-9a-f]+$/, "the worker's instance id names its slot");
  assert.equal(seen[2], 'stopped');
});

test('runWorker: a setup that throws fails the worker before it starts (the pool then stops the others)', async (t) => {
  const dir = await tempDir(t);
  const seen: string[] = [];
  await assert.rejects(
    runWorker(1, JSON.stringify(config(dir)), async (nucleon) => {
      await nucleon.addRunner(new Probe(seen));
      throw new Error('no app config');
    }),
    /no app config/,
  );
  assert.deepEqual(seen, [], 'nothing was started');
});
