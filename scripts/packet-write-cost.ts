// CPU per PUBLISH written through aedes' copy of mqtt-packet to a coalesced
// loopback TCP socket (src/mqtt/aedes/write-coalescing.ts), with mqtt-packet's
// own writeToStream (five or six writes per packet) and with one buffer per
// packet (packet-bytes.ts), in alternating rounds. The reading end discards
// in the same process, so both variants carry its cost alike.
//
//   node --import tsx scripts/packet-write-cost.ts [packets per round] [rounds]
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { createServer, connect, type Socket } from 'node:net';
import { coalesceWrites, writeHotPacketsWhole } from '../src/mqtt/aedes/write-coalescing.js';

type WriteToStream = (packet: object, stream: Socket) => boolean;
const mqttPacket = createRequire(createRequire(import.meta.url).resolve('aedes'))('mqtt-packet') as { writeToStream: WriteToStream };
const original = mqttPacket.writeToStream;
writeHotPacketsWhole();
const whole = mqttPacket.writeToStream;

const perRound = Number(process.argv[2] ?? 300_000);
const rounds = Number(process.argv[3] ?? 3);
/** Packets written per loop turn, as a subscriber of 64 devices gets them. */
const PER_TURN = 64;

const server = createServer();
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const port = (server.address() as { port: number }).port;
const reader = connect(port, '127.0.0.1');
reader.on('data', () => undefined);
const [writer] = (await once(server, 'connection')) as [Socket];
coalesceWrites(writer);

const payload = Buffer.alloc(64, 1);
async function run(write: WriteToStream): Promise<number> {
  const start = process.cpuUsage();
  let id = 0;
  for (let sent = 0; sent < perRound; ) {
    let flowing = true;
    for (let i = 0; i < PER_TURN; i++, sent++) flowing = write({ cmd: 'publish', topic: `dev-${i}/app/p/data`, payload, qos: 1, messageId: (id = (id % 65_535) + 1), dup: false, retain: false }, writer);
    if (flowing) await new Promise((resolve) => setImmediate(resolve));
    else await once(writer, 'drain');
  }
  if (writer.writableLength > 0) await once(writer, 'drain');
  const used = process.cpuUsage(start);
  return ((used.user + used.system) / perRound) * 1000;
}

const results: Record<string, number[]> = { 'mqtt-packet writeToStream': [], 'one buffer per packet': [] };
await run(original);
for (let round = 0; round < rounds; round++) {
  results['mqtt-packet writeToStream']?.push(await run(original));
  results['one buffer per packet']?.push(await run(whole));
}
for (const [name, values] of Object.entries(results)) console.log(`${name.padEnd(28)} ns CPU per PUBLISH: ${values.map((v) => v.toFixed(0)).join(', ')}`);
reader.destroy();
writer.destroy();
server.close();
