// mqtt-packet's per-packet `debug` calls become no-ops unless DEBUG enables
// their namespace when the process starts (src/mqtt/aedes/patches/quiet-debug.ts).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { repoRoot } from '../helpers/index.js';

// Loads Nucleon first, as a library user or the CLI does (not the patch module: a module that loaded
// mqtt-packet ahead of it went unnoticed that way), parses one PINGREQ with mqtt-packet, and reports what quiet-debug did.
const PROBE = `
await import('./src/index.ts');
const { quietDebugState, quietened } = await import('./src/mqtt/aedes/patches/quiet-debug.ts');
const { default: mqttPacket } = await import('mqtt-packet');
const parser = mqttPacket.parser();
let packets = 0;
parser.on('packet', () => packets++);
parser.parse(mqttPacket.generate({ cmd: 'pingreq' }));
process.stdout.write(JSON.stringify({ quietDebugState, quietened, packets }));
`;

function probe(debug: string | undefined): { report: { quietDebugState: string; quietened: string[]; packets: number }; stderr: string } {
  const env = { ...process.env };
  delete env.DEBUG;
  if (debug !== undefined) env.DEBUG = debug;
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', PROBE], { cwd: repoRoot, env, encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 0, run.stderr);
  return { report: JSON.parse(run.stdout) as { quietDebugState: string; quietened: string[]; packets: number }, stderr: run.stderr };
}

test('without DEBUG, both mqtt-packet loggers are no-ops and parsing is silent', () => {
  const { report, stderr } = probe(undefined);
  assert.equal(report.quietDebugState, 'installed');
  assert.deepEqual(report.quietened.filter((ns) => ns.startsWith('mqtt-packet:')).sort(), ['mqtt-packet:parser', 'mqtt-packet:writeToStream']);
  assert.equal(report.packets, 1);
  assert.doesNotMatch(stderr, /mqtt-packet/);
});

test('DEBUG=mqtt-packet:parser still turns that logger on (and only that one)', () => {
  const { report, stderr } = probe('mqtt-packet:parser');
  assert.equal(report.quietDebugState, 'installed');
  assert.deepEqual(report.quietened.filter((ns) => ns.startsWith('mqtt-packet:')), ['mqtt-packet:writeToStream']);
  assert.equal(report.packets, 1);
  assert.match(stderr, /mqtt-packet:parser/);
});
