// The client side of scripts/heap-per-connection.ts, in its own process so
// that the clients' memory is not counted with the server's. Driven over IPC:
//   { cmd: 'open', port, count, mqtt, prefix, timeoutMs } → { opened, failed, ms }
//   { cmd: 'close' } → { closed }
// Each connection is a raw TLS socket; with `mqtt` it sends one MQTT 3.1.1
// CONNECT (client id `<prefix><n>`, a valid uid, keepalive 600 s, clean) and
// counts as open once the CONNACK accepted it. Then it stays idle.
import { connect, type TLSSocket } from 'node:tls';
import mqttPacket from 'mqtt-packet';

interface Open {
  cmd: 'open';
  port: number;
  count: number;
  mqtt: boolean;
  prefix: string;
  timeoutMs: number;
}
type Command = Open | { cmd: 'close' };

/** Handshakes in flight at once (bench scenario 5 uses 50 per worker). */
const IN_FLIGHT = 50;

const sockets: TLSSocket[] = [];

function send(message: object): void {
  if (!process.send) throw new Error('idle-tls-clients.ts runs as a child with an IPC channel');
  process.send(message);
}

/** Opens one connection; resolves with whether it got as far as the server taking it (CONNACK 0 for MQTT). */
function openOne(port: number, mqtt: boolean, clientId: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    // Loopback and the broker's development CA: the certificate is not what is measured.
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    let settled = false;
    const timer = setTimeout(() => finish(false), timeoutMs);
    function finish(ok: boolean): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (ok) sockets.push(socket);
      else socket.destroy();
      resolve(ok);
    }
    // An error after the connection was counted (the server went away) just ends it.
    socket.on('error', () => finish(false));
    socket.once('close', () => finish(false));
    socket.once('secureConnect', () => {
      if (!mqtt) {
        finish(true);
        return;
      }
      socket.once('data', (data: Buffer) => finish(data[0] === 0x20 && data[3] === 0));
      socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 600 }));
    });
  });
}

async function open(command: Open): Promise<void> {
  const started = performance.now();
  let next = 0;
  let opened = 0;
  let failed = 0;
  const worker = async (): Promise<void> => {
    while (next < command.count) {
      const n = next++;
      if (await openOne(command.port, command.mqtt, `${command.prefix}${n}`, command.timeoutMs)) opened++;
      else failed++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, command.count) }, worker));
  send({ opened, failed, ms: Math.round(performance.now() - started) });
}

process.on('message', (message: Command) => {
  if (message.cmd === 'open') {
    open(message).catch((error: unknown) => {
      process.stderr.write(`idle-tls-clients: ${String(error)}\n`);
      process.exit(1);
    });
    return;
  }
  for (const socket of sockets.splice(0)) socket.destroy();
  send({ closed: true });
});
// The parent went away (or ended the run): nothing to keep open.
process.on('disconnect', () => process.exit(0));
