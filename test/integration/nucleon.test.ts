import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createNucleon, EventRunner, silentLogger, type Event, type RunnerContext } from '../../src/index.js';
import { tempDir } from '../helpers/index.js';

class Recorder extends EventRunner<'ApplicationRequest'> {
  readonly seen: Event[] = [];
  readonly log: string[];
  constructor(name: string, log: string[], options: { listens?: boolean } = {}) {
    super(name, ['ApplicationRequest']);
    this.log = log;
    if (options.listens) Object.defineProperty(this, 'listens', { value: true });
  }
  protected override async onStart(_context: RunnerContext): Promise<void> {
    this.log.push(`start ${this.name}`);
  }
  protected override async onStop(_context: RunnerContext): Promise<void> {
    this.log.push(`stop ${this.name}`);
  }
  protected handle(event: Event): void {
    this.seen.push(event);
  }
}

function isolated(dir: string) {
  return { store: { path: `${dir}/data` }, certs: { dir: `${dir}/certs`, auto_generate: false }, mqtt: { tls: { enabled: false } }, ota: { enabled: false, http: { enabled: false } }, admin: { enabled: false }, telemetry: { recent_per_device: 0 } };
}

test('runners start listeners last, stop in reverse, and stop is safe to call twice', async (t) => {
  const dir = await tempDir(t);
  const log: string[] = [];
  const nucleon = createNucleon(isolated(dir), { logger: silentLogger() });
  const edge = new Recorder('edge', log, { listens: true });
  const app = new Recorder('app', log);
  await nucleon.addRunner(edge);
  await nucleon.addRunner(app);
  await nucleon.start();
  assert.deepEqual(log, ['start app', 'start edge']);
  assert.deepEqual(nucleon.broker.runnerNames().sort(), ['app', 'edge']);
  await nucleon.broker.publish({ type: 'ApplicationRequest', uid: 'u', target: 't', payload: new Uint8Array([1]), receivedAt: 0 });
  await Promise.all([nucleon.stop(), nucleon.stop()]);
  await nucleon.stop();
  assert.deepEqual(log, ['start app', 'start edge', 'stop edge', 'stop app']);
  assert.equal(app.seen.length, 1);
  assert.equal(edge.seen.length, 1);
});

test('a runner added after start starts at once; Symbol.asyncDispose stops', async (t) => {
  const dir = await tempDir(t);
  const log: string[] = [];
  {
    await using nucleon = createNucleon(isolated(dir), { logger: silentLogger() });
    await nucleon.start();
    await nucleon.addRunner(new Recorder('late', log));
    assert.deepEqual(log, ['start late']);
    await assert.rejects(nucleon.addRunner(new Recorder('late', log)), /already added/);
  }
  assert.deepEqual(log, ['start late', 'stop late']);
});

test('a runner that fails to start undoes the start and reports why', async (t) => {
  const dir = await tempDir(t);
  const log: string[] = [];
  const nucleon = createNucleon(isolated(dir), { logger: silentLogger() });
  await nucleon.addRunner(new Recorder('ok', log));
  await nucleon.addRunner({
    name: 'broken',
    start: () => Promise.reject(new Error('cannot open the thing')),
    stop: () => Promise.resolve(),
  });
  await assert.rejects(nucleon.start(), /cannot open the thing/);
  assert.deepEqual(log, ['start ok', 'stop ok']);
  assert.equal(nucleon.running, false);
});
