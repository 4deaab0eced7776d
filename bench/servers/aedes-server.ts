// Baseline (a): bare aedes, in-memory, TLS, in its own process. Its
// "application" is an in-process subscriber on `+/app/p/#` (aedes.subscribe on
// the broker's own mqemitter), the closest aedes equivalent of Nucleon's app runner.
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { Aedes, type AedesPublishPacket } from 'aedes';
import { AppCounter, appTarget, responsePayload, type RespondArgs, type RespondResult, type StatsOptions } from '../lib/app-counter.js';
import { memoryHandlers, notify, serveRpc } from '../lib/ipc.js';
import { LoopDelayMonitor } from '../lib/loop-delay.js';

const [port, certPath, keyPath, appMode = 'app'] = process.argv.slice(2);
if (!port || !certPath || !keyPath) throw new Error('usage: aedes-server.ts <port> <cert> <key> [app|no-app]');

const counter = new AppCounter();
const loopDelay = new LoopDelayMonitor();
const broker = await Aedes.createBroker();
// no-app (scenario 10): an MQTT subscriber process is the application instead.
if (appMode === 'app') {
  broker.subscribe(
    '+/app/p/#',
    (packet: AedesPublishPacket, done: () => void) => {
      counter.delivered(appTarget(packet.topic), packet.payload as Buffer);
      done();
    },
    () => undefined,
  );
}

const server = tls.createServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) }, (socket) => {
  socket.setNoDelay(true);
  broker.handle(socket);
});
let tlsErrors = 0;
let publishErrors = 0;
server.on('tlsClientError', () => tlsErrors++);
await new Promise<void>((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(port), '127.0.0.1', resolve);
});

/** Server → device: aedes.publish at QoS 1 with at most `window` callbacks outstanding. */
async function respond(args: RespondArgs): Promise<RespondResult> {
  const started = performance.now();
  let outstanding = 0;
  let published = 0;
  let wake: (() => void) | undefined;
  for (let i = 0; i < args.perDevice; i++) {
    for (const uid of args.uids) {
      while (outstanding >= args.window) await new Promise<void>((resolve) => (wake = resolve));
      outstanding++;
      broker.publish({ cmd: 'publish', topic: `${uid}/app/s/resp`, payload: responsePayload(args.payloadSize), qos: 1, retain: false, dup: false }, (error) => {
        outstanding--;
        if (error) publishErrors++;
        else published++;
        const resume = wake;
        wake = undefined;
        resume?.();
      });
    }
  }
  while (outstanding > 0) await new Promise<void>((resolve) => (wake = resolve));
  return { published, elapsedMs: performance.now() - started };
}

serveRpc(
  {
    stats: (options: StatsOptions) => ({ ...counter.stats(options.latency !== false), loopDelay: loopDelay.read(), tlsErrors, publishErrors }),
    reset: () => {
      counter.reset();
      loopDelay.reset();
    },
    respond: (args: RespondArgs) => respond(args),
    ...memoryHandlers(),
  },
  async () => {
    // Closing the broker first ends the client connections the server would otherwise wait for.
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  },
);
notify('ready', { port: Number(port) });
