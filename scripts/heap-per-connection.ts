// Memory per idle MQTT/TLS connection, server side (README "Memory per device
// connection"):
//
//   npm run build && node --expose-gc --import tsx scripts/heap-per-connection.ts [count] [--targets tls,aedes,nucleon] [--snapshots DIR] [--src]
//
// For each target, in a fresh server process of its own (so one target's
// code, caches and garbage never count for another, and bare aedes runs
// without Nucleon's patches to its dependencies):
// - tls: a bare `tls.createServer` with the same certificate that reads each
//   device's CONNECT (paused mode, as aedes reads), answers CONNACK and holds
//   the socket: Node's own TLS cost of an idle MQTT connection (bench
//   scenario 5's Node TLS baseline, bench/servers/tls-server.ts, does the same);
// - aedes: aedes (the version Nucleon embeds) in memory over TLS, as the bench
//   baseline runs it;
// - nucleon: createNucleon in-process (embedded store in a temp dir,
//   durability "memory", anonymous devices, TLS on 127.0.0.1 port 0), from
//   the build in dist/ as it ships. `--src` loads src/ through tsx instead,
//   which overstates it: tsx names every function expression with
//   Object.defineProperty (its `__name` helper), and that gives each such
//   closure made per connection its own property array (about 0.3 KB each).
// A client process (scripts/idle-tls-clients.ts, so its memory is not the
// server's) first opens and closes a warm-up round (code compiled, pools and
// tables grown, none of it per connection), then the server is measured after
// forced GCs with no connection, the client opens `count` idle connections
// (MQTT CONNECT, client id = a uid, keepalive 600 s, CONNACK awaited), and the
// server is measured again. Printed per connection: heapUsed (the JS heap, the
// figure issue 16 means by "JavaScript per connection"), external and
// arrayBuffers (Buffers live outside the JS heap) and RSS (everything,
// OpenSSL included; noisier, the allocator keeps freed pages).
// --snapshots DIR also writes a heap snapshot at 0 and at `count`
// connections per target and prints what grew, by constructor
// (scripts/heap-snapshot-diff.ts).
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { existsSync, readFileSync } from 'node:fs';
import { writeHeapSnapshot } from 'node:v8';
import type { Socket } from 'node:net';

const TARGETS = ['tls', 'aedes', 'nucleon'] as const;
type TargetName = (typeof TARGETS)[number];

interface Memory {
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  rss: number;
}

interface TargetResult {
  target: TargetName;
  connections: number;
  failed: number;
  connectMs: number;
  before: Memory;
  after: Memory;
  snapshots?: [string, string];
}

interface Target {
  port: number;
  /** Connections the server has taken (TLS handshakes done; for MQTT, logged in). */
  connections(): number;
  stop(): Promise<void>;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    targets: { type: 'string', default: TARGETS.join(',') },
    snapshots: { type: 'string' },
    // Internal: run as the server process of one target.
    serve: { type: 'string' },
    certs: { type: 'string' },
    'timeout-s': { type: 'string', default: '300' },
    src: { type: 'boolean', default: false },
  },
});
const count = Number(positionals[0] ?? 2000);
if (!Number.isInteger(count) || count < 1 || count > 50_000) throw new Error('count: an integer from 1 to 50000');
const timeoutMs = Number(values['timeout-s']) * 1000;
/** A warm-up round big enough to grow what grows once (Maps, pools), small against `count`. */
const WARM_UP = Math.min(200, Math.max(20, Math.round(count / 10)));

function gc(): void {
  if (typeof global.gc !== 'function') throw new Error('run with node --expose-gc');
  global.gc();
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** After full GCs with pauses between them (closed sockets' handles and weak references are let go over a few turns). */
async function measure(): Promise<Memory> {
  for (let i = 0; i < 4; i++) {
    await delay(100);
    gc();
  }
  const { heapUsed, external, arrayBuffers, rss } = process.memoryUsage();
  return { heapUsed, external, arrayBuffers, rss };
}

async function waitUntil(check: () => boolean, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(25);
  }
}

// ---- the targets (each in its own server process) ---------------------------

async function startTarget(name: TargetName, certsDir: string, workDir: string): Promise<Target> {
  const cert = readFileSync(path.join(certsDir, 'server.crt'));
  const key = readFileSync(path.join(certsDir, 'server.key'));
  const tls = await import('node:tls');
  const listen = async (server: import('node:tls').Server): Promise<number> => {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const address = server.address();
    if (typeof address !== 'object' || address === null) throw new Error('no port');
    return address.port;
  };
  const close = (server: import('node:tls').Server) => new Promise<void>((resolve) => server.close(() => resolve()));

  if (name === 'tls') {
    const sockets = new Set<Socket>();
    // Shared handlers, so the baseline holds nothing per socket but the Set entry.
    function forget(this: Socket): void {
      sockets.delete(this);
    }
    function ignore(): void {}
    // The one exchange every MQTT server has with an idle device: read its CONNECT (paused mode, as aedes reads), answer CONNACK.
    const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00]);
    function answer(this: Socket): void {
      this.read();
      this.write(CONNACK);
    }
    const server = tls.createServer({ cert, key, minVersion: 'TLSv1.2' }, (socket) => {
      socket.setNoDelay(true);
      socket.on('error', ignore);
      socket.on('close', forget);
      socket.once('readable', answer);
      sockets.add(socket);
    });
    const port = await listen(server);
    return {
      port,
      connections: () => sockets.size,
      stop: async () => {
        for (const socket of sockets) socket.destroy();
        await close(server);
      },
    };
  }

  if (name === 'aedes') {
    const { Aedes } = await import('aedes');
    const broker = await Aedes.createBroker();
    const server = tls.createServer({ cert, key, minVersion: 'TLSv1.2' }, (socket) => {
      socket.setNoDelay(true);
      broker.handle(socket);
    });
    const port = await listen(server);
    return {
      port,
      connections: () => broker.connectedClients,
      stop: async () => {
        await new Promise<void>((resolve) => broker.close(() => resolve()));
        await close(server);
      },
    };
  }

  const built = path.join(here, '..', 'dist', 'index.js');
  if (!values.src && !existsSync(built)) throw new Error(`${built} not found: run "npm run build" first (or pass --src)`);
  const { createNucleon, silentLogger } = (values.src ? await import('../src/index.js') : await import(pathToFileURL(built).href)) as typeof import('../src/index.js');
  const nucleon = createNucleon(
    {
      store: { path: path.join(workDir, 'store') },
      certs: { dir: certsDir, auto_generate: false },
      mqtt: {
        tls: { enabled: true, host: '127.0.0.1', port: 0 },
        // As the bench runs it: anonymous devices (client id = uid), all connecting from 127.0.0.1.
        auth: { anonymous: true, client_certificates: false, passwords: false },
        limits: { connections_per_second: 1_000_000, connections_per_address: 0 },
      },
      ota: { http: { enabled: false } },
      admin: { enabled: false },
      ingest: { durability: 'memory' },
    },
    { logger: silentLogger() },
  );
  await nucleon.start();
  const runner = nucleon.runner('mqtt') as { port(listener: 'tls'): number | undefined } | undefined;
  const port = runner?.port('tls');
  if (port === undefined) throw new Error('the MQTT runner has no TLS port');
  return { port, connections: () => nucleon.presence.size, stop: () => nucleon.stop() };
}

/** The client process, driven over IPC (scripts/idle-tls-clients.ts). */
class Clients {
  private readonly child: ChildProcess;
  private readonly replies: ((message: unknown) => void)[] = [];

  constructor() {
    this.child = fork(path.join(here, 'idle-tls-clients.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (message) => this.replies.shift()?.(message));
  }

  private ask<T>(command: object, ms: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the client process did not answer ${JSON.stringify(command)} within ${ms} ms`)), ms);
      this.replies.push((message) => {
        clearTimeout(timer);
        resolve(message as T);
      });
      this.child.send(command);
    });
  }

  open(port: number, n: number, mqtt: boolean, prefix: string): Promise<{ opened: number; failed: number; ms: number }> {
    return this.ask({ cmd: 'open', port, count: n, mqtt, prefix, timeoutMs: 30_000 }, timeoutMs);
  }

  close(): Promise<unknown> {
    return this.ask({ cmd: 'close' }, 60_000);
  }

  end(): void {
    this.child.disconnect();
  }
}

async function serve(name: TargetName, certsDir: string, snapshotDir: string | undefined): Promise<TargetResult> {
  const workDir = await mkdtemp(path.join(tmpdir(), `heap-per-connection-${name}-`));
  const target = await startTarget(name, certsDir, workDir);
  const clients = new Clients();
  try {
    const warm = await clients.open(target.port, WARM_UP, true, 'warm');
    if (warm.opened !== WARM_UP) throw new Error(`${name}: warm-up opened ${warm.opened} of ${WARM_UP}`);
    await waitUntil(() => target.connections() === WARM_UP, `${name} to hold the warm-up connections`, 30_000);
    await clients.close();
    await waitUntil(() => target.connections() === 0, `${name} to let the warm-up connections go`, 30_000);
    const before = await measure();
    const snapshotBefore = snapshotDir ? writeHeapSnapshot(path.join(snapshotDir, `${name}-0.heapsnapshot`)) : undefined;
    const opened = await clients.open(target.port, count, true, 'dev');
    await waitUntil(() => target.connections() === opened.opened, `${name} to hold ${opened.opened} connections`, 60_000);
    const after = await measure();
    const snapshotAfter = snapshotDir ? writeHeapSnapshot(path.join(snapshotDir, `${name}-${count}.heapsnapshot`)) : undefined;
    await clients.close();
    return {
      target: name,
      connections: opened.opened,
      failed: opened.failed,
      connectMs: opened.ms,
      before,
      after,
      ...(snapshotBefore && snapshotAfter ? { snapshots: [snapshotBefore, snapshotAfter] as [string, string] } : {}),
    };
  } finally {
    clients.end();
    await target.stop();
    await rm(workDir, { recursive: true, force: true });
  }
}

// ---- the orchestrating process ---------------------------------------------

function runTarget(name: TargetName, certsDir: string, snapshotDir: string | undefined): Promise<TargetResult> {
  const args = ['--serve', name, '--certs', certsDir, '--timeout-s', String(timeoutMs / 1000), ...(snapshotDir ? ['--snapshots', snapshotDir] : []), ...(values.src ? ['--src'] : []), String(count)];
  const child = fork(fileURLToPath(import.meta.url), args, { execArgv: ['--expose-gc', '--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise<TargetResult>((resolve, reject) => {
    let result: TargetResult | undefined;
    // Bounded: a target that hangs is killed (by its pid) and the run fails.
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 60_000);
    child.on('message', (message) => (result = message as TargetResult));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (result && code === 0) resolve(result);
      else reject(new Error(`${name}: server process exited with ${signal ?? code}${result ? '' : ' before reporting'}`));
    });
  });
}

function kb(bytes: number, connections: number): string {
  return (bytes / 1024 / connections).toFixed(2);
}

function report(results: TargetResult[]): string {
  const lines = [
    `${count} idle MQTT/TLS connections per target (warm-up ${WARM_UP}); server-side deltas after GC, KB (1024 B) per connection`,
    `node ${process.version}, ${new Date().toISOString().slice(0, 10)}, Nucleon from ${values.src ? 'src/ through tsx (overstated, see --src)' : 'dist/'}`,
    '',
    `${'target'.padEnd(8)} ${'conns'.padStart(6)} ${'heapUsed'.padStart(9)} ${'external'.padStart(9)} ${'arrayBuf'.padStart(9)} ${'RSS'.padStart(7)} ${'connect s'.padStart(9)}`,
  ];
  for (const r of results) {
    const n = r.connections;
    lines.push(
      `${r.target.padEnd(8)} ${String(n).padStart(6)} ${kb(r.after.heapUsed - r.before.heapUsed, n).padStart(9)} ${kb(r.after.external - r.before.external, n).padStart(9)} ${kb(r.after.arrayBuffers - r.before.arrayBuffers, n).padStart(9)} ${kb(r.after.rss - r.before.rss, n).padStart(7)} ${(r.connectMs / 1000).toFixed(1).padStart(9)}${r.failed > 0 ? `  (${r.failed} failed)` : ''}`,
    );
  }
  const heap = (name: TargetName) => {
    const r = results.find((result) => result.target === name);
    return r ? (r.after.heapUsed - r.before.heapUsed) / 1024 / r.connections : undefined;
  };
  const [tlsHeap, aedesHeap, nucleonHeap] = [heap('tls'), heap('aedes'), heap('nucleon')];
  lines.push('');
  if (nucleonHeap !== undefined) {
    lines.push(`JS heap per connection (heapUsed delta / N), Nucleon: ${nucleonHeap.toFixed(2)} KB`);
    if (tlsHeap !== undefined) lines.push(`  beyond bare Node TLS (${tlsHeap.toFixed(2)} KB): ${(nucleonHeap - tlsHeap).toFixed(2)} KB`);
    if (aedesHeap !== undefined) lines.push(`  beyond bare aedes over TLS (${aedesHeap.toFixed(2)} KB): ${(nucleonHeap - aedesHeap).toFixed(2)} KB`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  if (values.serve !== undefined) {
    const name = values.serve as TargetName;
    if (!TARGETS.includes(name) || !values.certs) throw new Error('--serve needs a target and --certs');
    const result = await serve(name, values.certs, values.snapshots);
    // Disconnected once sent, so the IPC channel does not keep this process alive.
    await new Promise<void>((resolve, reject) => {
      if (!process.send) throw new Error('--serve runs as a child of this script');
      process.send(result, (error: Error | null) => (error ? reject(error) : resolve()));
    });
    process.disconnect();
    return;
  }
  const targets = values.targets.split(',').map((name) => name.trim()) as TargetName[];
  for (const name of targets) if (!TARGETS.includes(name)) throw new Error(`unknown target ${name}; one of ${TARGETS.join(', ')}`);
  const certsDir = await mkdtemp(path.join(tmpdir(), 'heap-per-connection-certs-'));
  const snapshotDir = values.snapshots === undefined ? undefined : path.resolve(values.snapshots);
  try {
    const { initCertificates } = await import('../src/certs/index.js');
    const { defaultConfig } = await import('../src/config/index.js');
    await initCertificates(defaultConfig({ certs: { dir: certsDir } }).certs);
    const results: TargetResult[] = [];
    // One target after the other: on 2 cores, parallel handshakes would only measure each other.
    for (const name of targets) results.push(await runTarget(name, certsDir, snapshotDir));
    process.stdout.write(`${report(results)}\n`);
    if (snapshotDir) {
      const { diffGroups, formatDiff, groupsOf } = await import('./heap-snapshot-diff.js');
      for (const r of results) {
        if (!r.snapshots) continue;
        process.stdout.write(`\n${r.target}: ${formatDiff(diffGroups(groupsOf(r.snapshots[0]), groupsOf(r.snapshots[1])), r.connections, 30)}\n`);
      }
    }
  } finally {
    await rm(certsDir, { recursive: true, force: true });
  }
}

await main();
