// CPU per PUBLISH parsed by aedes' copy of mqtt-packet (with Nucleon's parser
// patches), buffering its input in bl's BufferList (what mqtt-packet does
// alone, less its stream) and in src/mqtt/aedes/patches/parser-input.ts (what
// Nucleon installs), in alternating rounds. Input is what a device's bounded
// read hands the parser (bounded-reads.ts): 4 KB chunks of 64-byte PUBLISH
// packets, QoS 0 and QoS 1.
//
//   node --import tsx scripts/packet-parse-cost.ts [packets per round] [rounds]
import { createRequire } from 'node:module';
import '../src/mqtt/aedes/patches/index.js';
import { ParserInput } from '../src/mqtt/aedes/patches/parser-input.js';

const require = createRequire(import.meta.url);
const parserPath = createRequire(require.resolve('aedes')).resolve('mqtt-packet/parser.js');
const fromParser = createRequire(parserPath);
interface Parser {
  _list: unknown;
  on(event: string, listener: (value: unknown) => void): void;
  parse(buffer: Buffer): number;
}
const mqttPacket = fromParser('./mqtt.js') as { parser(): Parser; generate(packet: object): Buffer };
const { BufferList } = fromParser('bl') as { BufferList: new () => unknown };

const variants: [string, () => unknown][] = [
  ["bl's BufferList", () => new BufferList()],
  ['ParserInput', () => new ParserInput()],
];

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

function run(input: Buffer[], list: () => unknown): number {
  const parser = mqttPacket.parser();
  parser._list = list();
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
  for (const [, list] of variants) run(input, list);
  for (let round = 0; round < rounds; round++) {
    for (const [name, list] of variants) results.get(name)?.push(run(input, list));
  }
  for (const [name, values] of results) console.log(`QoS ${qos}, ${name.padEnd(15)} ns CPU per PUBLISH: ${values.map((v) => v.toFixed(0)).join(', ')}`);
}
