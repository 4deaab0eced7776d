// Baseline for scenario 5 only: Node's TLS with no broker. It answers each
// connection's first bytes (the device's CONNECT) with a CONNACK and then holds
// the socket, reading nothing more into JavaScript objects. What it costs per
// connection is what Node's TLS costs; a Node broker's figure above it is the
// broker's own JavaScript.
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { memoryHandlers, notify, serveRpc } from '../lib/ipc.js';

const [port, certPath, keyPath] = process.argv.slice(2);
if (!port || !certPath || !keyPath) throw new Error('usage: tls-server.ts <port> <cert> <key>');

const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00]);
const sockets = new Set<tls.TLSSocket>();
const server = tls.createServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) }, (socket) => {
  socket.setNoDelay(true);
  sockets.add(socket);
  // Read as aedes does (paused mode: 'readable', then read()), not in flowing mode, which keeps more state per socket.
  socket.once('readable', () => {
    socket.read();
    socket.write(CONNACK);
  });
  socket.on('error', () => socket.destroy());
  socket.once('close', () => sockets.delete(socket));
});
server.on('tlsClientError', () => undefined);
await new Promise<void>((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(port), '127.0.0.1', resolve);
});

serveRpc(
  {
    stats: () => ({ connections: sockets.size }),
    reset: () => undefined,
    ...memoryHandlers(),
  },
  async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  },
);
notify('ready', { port: Number(port) });
