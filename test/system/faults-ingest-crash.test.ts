// Acknowledged means durable (README "Durable ingest"): 64 devices at QoS 1
// (app messages and telemetry), the app runner and the Influx runner
// consuming, victoria-metrics down for part of the run, SIGKILL of the server
// at seeded random moments and a restart each time. With "fsync" and "write"
// no acknowledged message is lost, and every duplicate the app runner sees
// carries the log id of its first copy; with "memory" (no log) the loss it
// documents shows. The long run (20 kills) is `npm run soak -- --faults`.
// Reproduce a run with CRASH_SEED=<seed>.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCrashScenario } from '../helpers/ingest-crash-support.js';
import { summary } from '../helpers/reliability-support.js';

/** `npm run soak -- --faults` sets 20. */
const kills = Math.max(1, Number(process.env.CRASH_KILLS ?? 0) || 0);
const seed = process.env.CRASH_SEED ? Number(process.env.CRASH_SEED) >>> 0 : Math.floor(Math.random() * 2 ** 32);
process.stdout.write(`[faults ingest-crash] seed=${seed} (reproduce with CRASH_SEED=${seed})\n`);

for (const [durability, defaultKills] of [
  ['fsync', 5],
  ['write', 3],
] as const) {
  const killCount = process.env.CRASH_KILLS ? kills : defaultKills;
  test(`durability "${durability}": ${killCount} SIGKILLs under load from 64 devices, InfluxDB down for part of it: no acknowledged message lost`, async (t) => {
    const influxDown: [number, number] = [1, Math.max(2, Math.floor(killCount / 2))];
    const result = await runCrashScenario(t, { durability, devices: 64, kills: killCount, seed, loadMs: [300, 1500], influxDown, log: (line) => t.diagnostic(line) });
    summary(`faults ingest-crash ${durability}`, { seed, ...result, restartsMs: result.restartsMs.join('/') });
    // At least 200 acknowledged app messages per round (the harness waits for them before a kill).
    assert.ok(result.acknowledgedApp >= 200 * killCount && result.acknowledgedTelemetry > 0, 'there was load');
    assert.equal(result.lostApp, 0, 'acknowledged app messages lost');
    assert.equal(result.lostTelemetry, 0, 'acknowledged telemetry points lost');
    assert.equal(result.duplicateAppWithOtherId, 0, 'a duplicate with another log id');
  });
}

test('durability "memory" (no log) loses acknowledged messages at a SIGKILL, as documented', async (t) => {
  const result = await runCrashScenario(t, { durability: 'memory', devices: 64, kills: 3, seed, loadMs: [500, 1000], influxDown: [9, 9], log: (line) => t.diagnostic(line) });
  summary('faults ingest-crash memory', { seed, ...result, restartsMs: result.restartsMs.join('/') });
  assert.ok(result.lostApp + result.lostTelemetry > 0, 'without the log, what was in memory at a kill is gone');
});
