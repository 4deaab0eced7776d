// CPU per PUBLISH parsed by aedes' copy of mqtt-packet (with Nucleon's parser
// patches), with bl's own BufferList methods, with fast readers only
// (readUInt8/16BE/32BE) and with every fast path of
// src/mqtt/aedes/patches/fast-buffer-list.ts, in alternating rounds. Input is
// what a device's bounded read hands the parser (bounded-reads.ts): 4 KB
// chunks of 64-byte PUBLISH packets, QoS 0 and QoS 1.
//
//   node --import tsx scripts/packet-parse-cost.ts [packets per round] [rounds]
import { createRequire } from 'node:module';
import { FAST_METHODS } from '../src/mqtt/aedes/patches/fast-buffer-list.js';
import '../src/mqtt/aedes/patches/index.js';

const require = createRequire(import.meta.url);
const parserPath = createRequire(require.resolve('aedes')).resolve('mqtt-packet/parser.js');
const fromParser = createRequire(parserPath);
const mqttPacket = fromParser('./mqtt.js') as { parser(): { on(event: string, listener: (value: unknown) => void): void; parse(buffer: Buffer): number }; generate(packet: object): Buffer };
const blPath = fromParser.resolve('bl/BufferList.js');
const { BufferList } = fromParser('bl') as { BufferList: { prototype: Record<string, unknown> } };
const patchedModule = require.cache[blPath];
delete require.cache[blPath];
const pristine = (fromParser('bl/BufferList.js') as { prototype: Record<string, unknown> }).prototype;
if (patchedModule) require.cache[blPath] = patchedModule;

const fast = Object.fromEntries(FAST_METHODS.map((method): [string, unknown] => [method, Reflect.get(BufferList.prototype, method)]));
const readersOnly = { ...pristine, readUInt8: fast.readUInt8, readUInt16BE: fast.readUInt16BE, readUInt32BE: fast.readUInt32BE };
const variants: [string, Record<string, unknown>][] = [
  ["bl's own methods", pristine],
  ['fast readers only', readersOnly],
  ['every fast path', fast],
];
const use = (methods: Readonly<Record<string, unknown>>) => {
  for (const method of FAST_METHODS) Reflect.set(BufferList.prototype, method, Reflect.get(methods, method));
};

const perRound = Number(process.argv[2] ?? 1_000_000);
const rounds = Number(process.argv[3] ?? 5);
const CHUNK = 4096;

function chunks(qos: 0 | 1): Buffer[] {
  const packets: Buffer[] = [];
  for (let i = 0; i < 256; i++) packets.push(mqttPacket.generate({ cmd: 'publish', topic: `dev-${i % 64}/app/p/data`, payload: Buffer.alloc(64, i), qos, messageId: qos ? i + 1 : undefined, retain: false, dup: false }));
  const all = Buffer.concat(packets);
  const out: Buffer[] = [];
  for (let at = 0; at < all.length; at += CHUNK) out.push(all.subarray(at, at + CHUNK));
  return out;
}

function run(input: Buffer[]): number {
  const parser = mqttPacket.parser();
  let parsed = 0;
  parser.on('packet', () => parsed++);
  parser.on('error', (error) => {
    throw error;
  });
  const start = process.cpuUsage();
  while (parsed < perRound) for (const chunk of input) parser.parse(chunk);
  const used = process.cpuUsage(start);
  return ((used.user + used.system) / parsed) * 1000;
}

for (const qos of [0, 1] as const) {
  const input = chunks(qos);
  const results = new Map<string, number[]>(variants.map(([name]) => [name, []]));
  use(pristine);
  run(input);
  for (let round = 0; round < rounds; round++) {
    for (const [name, methods] of variants) {
      use(methods);
      results.get(name)?.push(run(input));
    }
  }
  for (const [name, values] of results) console.log(`QoS ${qos}, ${name.padEnd(17)} ns CPU per PUBLISH: ${values.map((v) => v.toFixed(0)).join(', ')}`);
}
