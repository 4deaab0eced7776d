// The Mosquitto baseline's "application": a separate MQTT subscriber process on
// `+/app/p/#` (QoS 1), as a Mosquitto deployment runs it. Raw TLS + mqtt-packet,
// PUBACKs batched per incoming chunk, so it costs as little as a client can.
// Scenario 10 runs it against every broker as a service account: an optional
// third argument (JSON, SubscriberOptions) sets its login and session.
// First: mqtt-packet's disabled debug loggers would cost this process as they cost a broker (patches/quiet-debug.ts).
import '../../src/mqtt/aedes/patches/quiet-debug.js';
import tls from 'node:tls';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { AppCounter, appTarget, responsePayload, type RespondArgs, type RespondResult, type StatsOptions } from '../lib/app-counter.js';
import { notify, serveRpc } from '../lib/ipc.js';
import { pubacks } from '../loadgen/packets.js';

/** Who the subscriber logs in as and what it subscribes to (scenario 10: a service account, persistent or clean). */
export interface SubscriberOptions {
  clientId?: string;
  username?: string;
  password?: string;
  /** false: a persistent session (CleanSession 0). */
  clean?: boolean;
  filter?: string;
}

const [host = '127.0.0.1', port, optionsJson] = process.argv.slice(2);
if (!port) throw new Error('usage: subscriber-app.ts <host> <port> [options as JSON]');
const options = (optionsJson ? JSON.parse(optionsJson) : {}) as SubscriberOptions;
const filter = options.filter ?? '+/app/p/#';

const counter = new AppCounter();
const parser = mqttPacket.parser({ protocolVersion: 4 });
const acksToSend: number[] = [];
let ackedByBroker = 0;
let wake: (() => void) | undefined;
let waiting: { cmd: Packet['cmd']; resolve: (packet: Packet) => void } | undefined;
let closedReason: string | undefined;

const socket = tls.connect({ host, port: Number(port), rejectUnauthorized: false, servername: 'localhost' });
socket.setNoDelay(true);

function expect(cmd: Packet['cmd']): Promise<Packet> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`subscriber app: no ${cmd} within 10 s`)), 10_000);
    waiting = {
      cmd,
      resolve: (packet) => {
        clearTimeout(timer);
        resolve(packet);
      },
    };
  });
}

parser.on('packet', (packet: Packet) => {
  if (packet.cmd === 'publish') {
    counter.delivered(appTarget(packet.topic), packet.payload as Buffer);
    if (packet.qos === 1 && packet.messageId !== undefined) acksToSend.push(packet.messageId);
  } else if (packet.cmd === 'puback') {
    ackedByBroker++;
  } else if (waiting?.cmd === packet.cmd) {
    const w = waiting;
    waiting = undefined;
    w.resolve(packet);
  }
});
parser.on('error', (error: Error) => {
  closedReason = `protocol error: ${error.message}`;
  socket.destroy();
});
socket.on('data', (chunk: Buffer) => {
  parser.parse(chunk);
  if (acksToSend.length > 0) {
    socket.write(pubacks(acksToSend));
    acksToSend.length = 0;
  }
  const resume = wake;
  wake = undefined;
  resume?.();
});
socket.on('error', (error) => (closedReason = `socket error: ${error.message}`));
socket.on('close', () => {
  closedReason ??= 'closed by the broker';
});

await new Promise<void>((resolve, reject) => {
  socket.once('secureConnect', resolve);
  socket.once('error', reject);
});
const connack = expect('connack');
socket.write(
  mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId: options.clientId ?? 'bench-app',
    clean: options.clean ?? true,
    keepalive: 600,
    ...(options.username === undefined ? {} : { username: options.username }),
    ...(options.password === undefined ? {} : { password: Buffer.from(options.password) }),
  }),
);
const connacked = await connack;
if (connacked.cmd !== 'connack' || connacked.returnCode !== 0) throw new Error(`subscriber app: CONNACK ${connacked.cmd === 'connack' ? String(connacked.returnCode) : connacked.cmd}`);
const suback = expect('suback');
socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 1 }] }));
const granted = await suback;
if (granted.cmd !== 'suback' || granted.granted[0] !== 1) throw new Error('subscriber app: subscription not granted at QoS 1');

/** Server → device: QoS 1 publishes with at most `window` unacknowledged. */
async function respond(args: RespondArgs): Promise<RespondResult> {
  const started = performance.now();
  const ackedAtStart = ackedByBroker;
  let sent = 0;
  let id = 1;
  const total = args.perDevice * args.uids.length;
  while (sent < total) {
    if (closedReason) throw new Error(`subscriber app: connection lost: ${closedReason}`);
    const room = Math.min(total - sent, args.window - (sent - (ackedByBroker - ackedAtStart)));
    if (room <= 0) {
      await new Promise<void>((resolve) => (wake = resolve));
      continue;
    }
    const packets: Buffer[] = [];
    for (let i = 0; i < room; i++) {
      const uid = args.uids[(sent + i) % args.uids.length] ?? '';
      packets.push(mqttPacket.generate({ cmd: 'publish', topic: `${uid}/app/s/resp`, payload: responsePayload(args.payloadSize), qos: 1, messageId: id, retain: false, dup: false }));
      id = id === 65535 ? 1 : id + 1;
    }
    sent += room;
    socket.write(Buffer.concat(packets));
  }
  while (ackedByBroker - ackedAtStart < total) {
    if (closedReason) throw new Error(`subscriber app: connection lost: ${closedReason}`);
    await new Promise<void>((resolve) => (wake = resolve));
  }
  return { published: total, elapsedMs: performance.now() - started };
}

serveRpc(
  {
    stats: (statsOptions: StatsOptions) => ({ ...counter.stats(statsOptions.latency !== false), closedReason }),
    reset: () => counter.reset(),
    respond: (args: RespondArgs) => respond(args),
    gc: () => false,
  },
  async () => {
    socket.end(mqttPacket.generate({ cmd: 'disconnect' }));
  },
);
notify('ready');
