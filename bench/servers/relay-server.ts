// Floor for scenarios 10 and 11 (the subscriber path): the least a Node
// process can do to relay MQTT over TLS, with no broker. It frames packets by
// their fixed header only (no parser objects), answers CONNECT, SUBSCRIBE,
// PINGREQ, and forwards every PUBLISH it reads to the connection that
// subscribed, unchanged for QoS 0 and with its own packet id for QoS 1 (the
// device gets its PUBACK at once). No topic matching, no sessions, no queue,
// no flow control toward the subscriber: what it costs per message is what
// Node's TLS, sockets and event loop cost on this path; a Node broker's figure
// above it is the broker's own work.
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { memoryHandlers, notify, serveRpc } from '../lib/ipc.js';
import { LoopDelayMonitor } from '../lib/loop-delay.js';

const [port, certPath, keyPath] = process.argv.slice(2);
if (!port || !certPath || !keyPath) throw new Error('usage: relay-server.ts <port> <cert> <key>');

const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00]);
const PINGRESP = Buffer.from([0xd0, 0x00]);
const loopDelay = new LoopDelayMonitor();
let subscriber: tls.TLSSocket | undefined;
let nextId = 1;
let protocolErrors = 0;
let lastProtocolError: string | undefined;
const sockets = new Set<tls.TLSSocket>();

/** As Nucleon coalesces a connection's writes (src/mqtt/aedes/write-coalescing.ts): one cork per turn, released from a setImmediate. */
const corked = new Set<tls.TLSSocket>();
function write(socket: tls.TLSSocket, bytes: Buffer): void {
  if (!corked.has(socket)) {
    corked.add(socket);
    socket.cork();
    setImmediate(() => {
      corked.delete(socket);
      socket.uncork();
    });
  }
  socket.write(bytes);
}

/** Where a packet's remaining length ends: [header bytes, remaining length], or undefined when not all here yet. */
function fixedHeader(data: Buffer, at: number): [number, number] | undefined {
  let length = 0;
  for (let i = 1, shift = 0; i <= 4; i++, shift += 7) {
    if (at + i >= data.length) return undefined;
    const byte = data[at + i] as number;
    length |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [i + 1, length];
  }
  throw new Error('remaining length longer than 4 bytes');
}

function forward(socket: tls.TLSSocket, packet: Buffer, headerBytes: number): void {
  const flags = (packet[0] as number) & 0x0f;
  const qos = (flags >> 1) & 0x03;
  if (qos === 0) {
    if (subscriber) write(subscriber, packet);
    return;
  }
  const topicLength = packet.readUInt16BE(headerBytes);
  const idAt = headerBytes + 2 + topicLength;
  write(socket, Buffer.from([0x40, 0x02, packet[idAt] as number, packet[idAt + 1] as number]));
  if (!subscriber) return;
  const copy = Buffer.from(packet);
  copy.writeUInt16BE(nextId, idAt);
  nextId = nextId === 65535 ? 1 : nextId + 1;
  write(subscriber, copy);
}

function handle(socket: tls.TLSSocket, packet: Buffer, headerBytes: number): void {
  switch ((packet[0] as number) >> 4) {
    case 1: // CONNECT
      write(socket, CONNACK);
      return;
    case 3: // PUBLISH
      forward(socket, packet, headerBytes);
      return;
    case 4: // PUBACK from the subscriber: nothing is kept to release
      return;
    case 8: // SUBSCRIBE: the subscriber; every filter granted QoS 1
      subscriber = socket;
      write(socket, Buffer.from([0x90, 0x03, packet[headerBytes] as number, packet[headerBytes + 1] as number, 0x01]));
      return;
    case 12: // PINGREQ
      write(socket, PINGRESP);
      return;
    case 14: // DISCONNECT
      socket.end();
      return;
    default:
      throw new Error(`packet type ${String((packet[0] as number) >> 4)} not relayed`);
  }
}

const server = tls.createServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) }, (socket) => {
  socket.setNoDelay(true);
  sockets.add(socket);
  let pending: Buffer | undefined;
  socket.on('data', (chunk: Buffer) => {
    const data = pending ? Buffer.concat([pending, chunk]) : chunk;
    pending = undefined;
    let at = 0;
    try {
      while (at < data.length) {
        const header = fixedHeader(data, at);
        if (!header || at + header[0] + header[1] > data.length) break;
        const end = at + header[0] + header[1];
        handle(socket, data.subarray(at, end), header[0]);
        at = end;
      }
    } catch (error) {
      protocolErrors++;
      lastProtocolError = error instanceof Error ? error.message : String(error);
      socket.destroy();
      return;
    }
    if (at < data.length) pending = Buffer.from(data.subarray(at));
  });
  socket.on('error', () => socket.destroy());
  socket.once('close', () => {
    sockets.delete(socket);
    if (subscriber === socket) subscriber = undefined;
  });
});
server.on('tlsClientError', () => undefined);
await new Promise<void>((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(port), '127.0.0.1', resolve);
});

serveRpc(
  {
    stats: () => ({ loopDelay: loopDelay.read(), protocolErrors, lastProtocolError }),
    reset: () => loopDelay.reset(),
    ...memoryHandlers(),
  },
  async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  },
);
notify('ready', { port: Number(port) });
