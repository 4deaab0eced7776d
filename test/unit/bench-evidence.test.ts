// The bench's evidence for missed targets: how a CPU profile is split into
// stages of the broker's path (bench/lib/profile-summary.ts) and what the
// "Missed targets" section of BENCHMARKS.md says (bench/lib/missed.ts).
import assert from 'node:assert/strict';
import os from 'node:os';
import { test } from 'node:test';
import { renderMissedSection } from '../../bench/lib/missed.js';
import { busyUs, largest, mergeSummaries, stageOf, summariseProfile, type CpuProfile } from '../../bench/lib/profile-summary.js';
import { metric, type ScenarioResult } from '../../bench/lib/report.js';

const frame = (functionName: string, url = '') => ({ functionName, url, lineNumber: 0 });
const DIST = 'file:///repo/dist';
const MODULES = 'file:///repo/node_modules';

test('a sample counts for the innermost frame that is Nucleon\'s or a library\'s, Node\'s socket code for itself', () => {
  // A Buffer call made by the ingest log is the ingest log's.
  assert.equal(stageOf([frame('subarray', 'node:buffer'), frame('encodeRecord', `${DIST}/ingest/record.js`), frame('handle', `${MODULES}/aedes/lib/handlers/index.js`)]), 'Nucleon ingest log');
  // Whoever writes to a socket, the write is Node's.
  assert.equal(stageOf([frame('writev'), frame('writevGeneric', 'node:internal/stream_base_commons'), frame('writeTogether', `${DIST}/mqtt/aedes/write-coalescing.js`)]), 'Node sockets and TLS');
  // The file system's native write has the same name: the ingest log's write is the ingest log's.
  assert.equal(stageOf([frame('writeBuffer'), frame('write', 'node:internal/fs/promises'), frame('writeBatch', `${DIST}/ingest/segment-log.js`)]), 'Nucleon ingest log');
  assert.equal(stageOf([frame('Socket._writeGeneric', 'node:net'), frame('x', `${DIST}/mqtt/aedes/deliveries.js`)]), 'Node sockets and TLS');
  assert.equal(stageOf([frame('parse', `${MODULES}/mqtt-packet/parser.js`), frame('readOn', `${DIST}/mqtt/aedes/bounded-reads.js`)]), 'MQTT packets (mqtt-packet)');
  assert.equal(stageOf([frame('emit', `${MODULES}/mqemitter/mqemitter.js`)]), 'aedes (handlers, mqemitter, persistence)');
  assert.equal(stageOf([frame('decide', `${DIST}/mqtt/publish-path.js`)]), 'Nucleon publish path, ACL and routing');
  assert.equal(stageOf([frame('(garbage collector)')]), 'V8 garbage collection');
  assert.equal(stageOf([frame('processImmediate', 'node:internal/timers')]), 'Node internals (timers, events, buffers)');
  assert.equal(stageOf([frame('x', `${MODULES}/@influxdata/influxdb-client/dist/index.js`)]), 'other libraries (@influxdata/influxdb-client)');
});

/** (root) → a → b, with samples on given nodes and 1 ms between samples. */
function profile(samples: number[]): CpuProfile {
  return {
    nodes: [
      { id: 1, callFrame: frame('(root)'), children: [2, 3, 4, 6] },
      { id: 2, callFrame: frame('(idle)') },
      { id: 3, callFrame: frame('(garbage collector)') },
      { id: 4, callFrame: frame('encodeRecord', `${DIST}/ingest/record.js`), children: [5] },
      { id: 5, callFrame: frame('crc32', 'node:zlib') },
      { id: 6, callFrame: frame('compileSourceTextModule', 'node:internal/modules/esm/utils') },
    ],
    samples,
    timeDeltas: samples.map(() => 1000),
  };
}

test('idle and module loading are left out of the busy time; stages and functions share it', () => {
  const summary = summariseProfile(profile([2, 2, 3, 4, 5, 5, 6]));
  assert.equal(summary.sampledUs, 7000);
  assert.equal(summary.idleUs, 2000);
  assert.equal(summary.startupUs, 1000);
  assert.equal(busyUs(summary), 4000);
  assert.deepEqual(largest(summary, summary.stages, 5), [
    ['Nucleon ingest log', 0.75],
    ['V8 garbage collection', 0.25],
  ]);
  assert.deepEqual(largest(summary, summary.functions, 1), [['crc32 node:zlib:1', 0.5]]);

  const merged = mergeSummaries([summary, summariseProfile(profile([3, 3]))]);
  assert.equal(busyUs(merged), 6000);
  assert.equal(merged.stages.get('V8 garbage collection'), 3000);
});

function scenario10(nucleonCpu: number): ScenarioResult {
  const cpu = metric('QoS 0, clean session: broker CPU per message', 'µs', 2, { kind: 'ratio-max', against: 'mosquitto', limit: 1.0 });
  cpu.values = { nucleon: nucleonCpu, mosquitto: 5, 'node-relay': 1 };
  const lost = metric('QoS 0, clean session: lost', '', 0, { kind: 'max', limit: 0 });
  lost.values = { nucleon: 0 };
  return { id: 10, title: 'subscriber path', metrics: [cpu, lost], notes: [] };
}

test('the section lists each missed figure with its target, the profile and the floor from the same run', () => {
  const summary = summariseProfile(profile([3, 4, 5, 5]));
  const lines = renderMissedSection([scenario10(7.5)], new Map([[10, summary]])).join('\n');
  assert.match(lines, /^## Missed targets/m);
  assert.match(lines, /- QoS 0, clean session: broker CPU per message: Nucleon 7\.50 µs against Mosquitto's 5\.00 µs \(1\.50×\); target ≤ 1\.0× Mosquitto, missed by 50%\./);
  assert.doesNotMatch(lines, /lost/, 'a met target is not listed');
  assert.match(lines, /by stage: 75\.0 % Nucleon ingest log; 25\.0 % V8 garbage collection\./);
  assert.match(lines, /QoS 0, clean session: Node TLS relay \(no broker\) 1 µs = 0\.20× Mosquitto/);
  assert.match(lines, /ingest log \(75 %\)/);
});

test('nothing is rendered when every target was met, and a failed profiled pass says so', () => {
  assert.deepEqual(renderMissedSection([scenario10(4)], new Map()), []);
  const lines = renderMissedSection([scenario10(6)], new Map([[10, 'the profiled pass failed: boom']])).join('\n');
  assert.match(lines, /Profile: the profiled pass failed: boom\./);
});

test('scenario 12: the cores left to the workers at 150,000 points/s come from the run\'s own figures', () => {
  const row = (label: string, value: number, goal?: Parameters<typeof metric>[3]) => {
    const m = metric(label, '', 2, goal);
    m.values = { nucleon: value };
    return m;
  };
  const result: ScenarioResult = {
    id: 12,
    title: 'workers',
    metrics: [
      row('telemetry, 2 workers: points stored', 100_000, { kind: 'min', limit: 150_000 }),
      row('telemetry, 2 workers: broker CPU per point (primary + workers)', 12),
      row('telemetry, 2 workers: the machine busy while the devices published', 97),
      row('telemetry, 2 workers: load generator + victoria-metrics + Redis CPU per point', 4),
    ],
    notes: [],
  };
  const text = renderMissedSection([result], new Map()).join('\n');
  const cores = os.cpus().length;
  const left = ((cores - 0.6) * 1e6) / 150_000;
  assert.ok(text.includes(`4.00 µs × 150,000 = 0.60 cores`), text);
  assert.ok(text.includes(`leaves the workers at most ${left.toFixed(2)} µs of CPU per point; they used 12.00 µs here`), text);
});
