// CPU per message of NucleonAedes' route for a device's QoS 0 message to
// one service account subscribed on `+/app/p/#` (bench scenario 10's path
// after the ingest log), in one process and without sockets: aedes clients
// with Nucleon's delivery functions (as the MQTT runner makes them) on
// in-memory streams whose writes are dropped, routes issued in bursts of
// `burst` per loop turn (as a group commit of the log routes them). Prints
// CPU µs per message, the young-generation GCs and their pause time, per
// round. Compare builds by pointing it at another dist directory.
//
//   node --import tsx scripts/route-cost.ts [messages per round] [rounds] [burst] [dist dir]
import { Duplex } from 'node:stream';
import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import mqttPacket from 'mqtt-packet';

const [countText = '200000', roundsText = '5', burstText = '200', distDir = 'dist'] = process.argv.slice(2);
const count = Number(countText);
const rounds = Number(roundsText);
const burst = Number(burstText);
const adapter = (await import(pathToFileURL(path.resolve(distDir, 'mqtt/aedes/index.js')).href)) as typeof import('../src/mqtt/aedes/index.js');

interface TestClient {
  id: string;
  connected: boolean;
}

const aedes = new adapter.NucleonAedes({ maxRouting: 1000, maxRoutingWaiting: 1000, onRoutingRefused: () => undefined, concurrency: 1024 });
await aedes.listen();
adapter.installAedesContacts(aedes, { maxSendBufferBytes: 1 << 30, maxPacketSize: 1 << 16 });

/** An aedes client on a stream that drops what the broker writes; `send` feeds it packets. */
function memoryClient(): { client: TestClient; send: (packet: object) => void; written: () => number } {
  let written = 0;
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      written += chunk.length;
      callback();
    },
    writev(chunks, callback) {
      for (const { chunk } of chunks) written += (chunk as Buffer).length;
      callback();
    },
  });
  adapter.coalesceWrites(stream);
  const handled = aedes.handle(stream);
  // Nucleon's delivery functions, as the MQTT runner sets them on every client.
  adapter.grantHighestQos(handled);
  const client = handled as unknown as TestClient;
  return { client, send: (packet) => stream.push(mqttPacket.generate(packet as mqttPacket.Packet)), written: () => written };
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve));
}

const subscriber = memoryClient();
subscriber.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'svc:route-cost', clean: true, keepalive: 0 });
await until(() => subscriber.client.connected);
subscriber.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '+/app/p/#', qos: 1 }] });
await until(() => subscriber.written() > 4);
const publisher = memoryClient();
publisher.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: '352656100000001', clean: true, keepalive: 0 });
await until(() => publisher.client.connected);

const gcs: number[] = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if ((entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) gcs.push(entry.duration);
}).observe({ entryTypes: ['gc'] });

const payload = Buffer.alloc(64, 7);
for (let round = 1; round <= rounds; round++) {
  gcs.length = 0;
  let routed = 0;
  const cpu = process.cpuUsage();
  for (let sent = 0; sent < count; ) {
    const inBurst = Math.min(burst, count - sent);
    for (let i = 0; i < inBurst; i++) {
      const packet = { cmd: 'publish', topic: `35265610000000${i % 64}/app/p/data`, payload, qos: 0, retain: false, dup: false } as const;
      aedes.route(packet, publisher.client as never, () => routed++);
    }
    sent += inBurst;
    await new Promise((resolve) => setImmediate(resolve));
  }
  await until(() => routed === count);
  const used = process.cpuUsage(cpu);
  const gcMs = gcs.reduce((sum, ms) => sum + ms, 0);
  console.log(`round ${round}: ${((used.user + used.system) / count).toFixed(3)} µs CPU per message, ${gcs.length} scavenges (${gcMs.toFixed(1)} ms)`);
}
await new Promise<void>((resolve) => aedes.close(() => resolve()));
