// The process's last line of defence (src/process-guard.ts), first on a fake
// process, then in a real one run by stopOnSignals as `nucleon serve` runs:
// an unhandled rejection is logged at error and counted and the process goes
// on; an uncaught exception is logged at fatal and counted, Nucleon stops, and
// the process exits with 1.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { guardProcess } from '../../src/process-guard.js';
import { repoRoot, startProcess, tempDir } from '../helpers/index.js';

async function counterLines(registry: Registry): Promise<string[]> {
  return (await registry.metrics()).split('\n').filter((line) => line.startsWith('nucleon_process_unhandled_total{'));
}

test('guardProcess: rejections are logged and counted; the first uncaught exception calls fatal once, later ones are only counted', async () => {
  const fake = new EventEmitter();
  const registry = new Registry();
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as { level: number; msg: string }) });
  const fatal: string[] = [];
  const remove = guardProcess({ logger, metrics: registry, fatal: (error) => fatal.push(error.message), process: fake });
  assert.deepEqual(await counterLines(registry), ['nucleon_process_unhandled_total{kind="rejection"} 0', 'nucleon_process_unhandled_total{kind="exception"} 0']);

  fake.emit('unhandledRejection', new Error('stray'));
  fake.emit('unhandledRejection', 'not even an Error');
  assert.deepEqual(fatal, []);
  fake.emit('uncaughtException', new Error('first'));
  fake.emit('uncaughtException', new Error('second'));
  assert.deepEqual(fatal, ['first']);
  assert.deepEqual(await counterLines(registry), ['nucleon_process_unhandled_total{kind="rejection"} 2', 'nucleon_process_unhandled_total{kind="exception"} 2']);
  assert.deepEqual(
    lines.map((line) => line.level),
    [50, 50, 60, 60],
  );

  remove();
  assert.equal(fake.listenerCount('unhandledRejection') + fake.listenerCount('uncaughtException'), 0);
  // A second guard on the same registry shares the counter.
  guardProcess({ logger, metrics: registry, fatal: () => undefined, process: new EventEmitter() });
});

test('a process run by stopOnSignals survives an unhandled rejection, and after an uncaught exception stops Nucleon and exits with 1', async (t) => {
  const dir = await tempDir(t, 'nucleon-guard-');
  const child = startProcess(t, process.execPath, ['--import', 'tsx', path.join(repoRoot, 'test/helpers/process-guard-child.ts'), dir]);
  const timeout = new Promise<undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), 30_000);
    t.after(() => clearTimeout(timer));
  });
  const exited = await Promise.race([child.exited, timeout]);
  assert.ok(exited, `the child exits by itself:\n${child.output().slice(-3000)}`);
  assert.equal(exited.code, 1, child.output().slice(-3000));

  const output = child.output();
  assert.match(output, /metrics after the rejection: nucleon_process_unhandled_total\{kind="rejection"\} 1 \| nucleon_process_unhandled_total\{kind="exception"\} 0/);
  const logged = output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { level: number; msg: string; err?: { message: string } });
  const rejection = logged.findIndex((line) => line.level === 50 && line.err?.message === 'a stray rejection');
  const fatal = logged.findIndex((line) => line.level === 60 && line.err?.message === 'a stray exception');
  const stopped = logged.findIndex((line) => line.msg === 'nucleon stopped');
  assert.ok(rejection >= 0, 'the rejection is logged at error');
  assert.ok(fatal > rejection, 'the exception is logged at fatal, after the rejection');
  assert.ok(stopped > fatal, 'Nucleon stopped cleanly before the exit');
});
