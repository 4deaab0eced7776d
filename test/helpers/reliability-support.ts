// Shared by the fuzz-*, faults-* and abuse-* suites and scripts/soak.ts: a whole
// Nucleon as a child process (test/helpers/reliability-instance.ts, with an echo app
// runner) on free loopback ports, provisioned devices and service accounts, a
// canary device that round-trips through the app runner, /metrics reading,
// RSS sampling, and a seeded random generator for reproducible fuzzing.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type { IClientOptions, MqttClient } from 'mqtt';
import { testClient } from './mqtt.js';
import { initCertificates, issueDeviceCertificate } from '../../src/certs/index.js';
import { validateConfig } from '../../src/config/index.js';
import { deviceCredentials, serviceCredentials } from '../../src/devices/index.js';
import { LevelStore } from '../../src/store/index.js';
import { delay, freePort, repoRoot, startProcess, tempDir, waitFor, type RunningProcess } from './index.js';
import { Rng } from './rng.js';

export { Rng };

export const ADMIN_KEY = 'reliability-admin-key-0123456789';
const ENTRY = path.join(repoRoot, 'test/helpers/reliability-instance.ts');
const TSX = import.meta.resolve('tsx');

export interface FuzzSettings {
  name: string;
  seed: number;
  iterations: number;
  rng: Rng;
}

/**
 * The seed comes from FUZZ_SEED or is drawn fresh and printed, so any failure
 * can be replayed; FUZZ_ITERATIONS scales the run (default per suite).
 */
export function fuzzSettings(name: string, defaultIterations: number): FuzzSettings {
  const fromEnv = process.env.FUZZ_SEED;
  const seed = fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) >>> 0 : Math.floor(Math.random() * 2 ** 32);
  const iterations = Math.max(1, Number(process.env.FUZZ_ITERATIONS ?? defaultIterations) || defaultIterations);
  process.stdout.write(`[fuzz] ${name}: seed=${seed} iterations=${iterations} (reproduce with FUZZ_SEED=${seed} FUZZ_ITERATIONS=${iterations})\n`);
  return { name, seed, iterations, rng: new Rng(seed) };
}

/** One summary line per suite, for the report. */
export function summary(name: string, figures: Record<string, number | string>): string {
  const line = `[${name}] ${Object.entries(figures)
    .map(([key, value]) => `${key}=${value}`)
    .join(' ')}`;
  process.stdout.write(`${line}\n`);
  return line;
}

// ---- an instance as a child process ----------------------------------------

export interface Ports {
  tls: number;
  tcp: number;
  ws: number;
  ota: number;
  admin: number;
}

export interface InstanceOptions {
  /** Reuse a folder (restart tests); a fresh temp dir otherwise. */
  dir?: string;
  /** Reuse ports (restart tests). */
  ports?: Ports;
  /** More TOML, appended; a section given here must not also be in the base config. */
  extraToml?: string[];
  /** Sections of the base config to leave out (so extraToml can set them). */
  omit?: string[];
  /** Appends each handled ApplicationRequest to this file (see reliability-instance.ts). */
  recordFile?: string;
  /** Certificates issued before start, by uid. */
  certDevices?: string[];
  /** Device passwords set before start: uid → password. */
  passwordDevices?: Record<string, string>;
  /** Service accounts set before start: name → password. */
  services?: Record<string, string>;
}

export interface DeviceTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export interface Instance {
  dir: string;
  ports: Ports;
  ca: Buffer;
  configFile: string;
  process: RunningProcess;
  devices: Map<string, DeviceTls>;
  /** Resident set size of the process now, in MB (from /proc). */
  rssMb(): Promise<number>;
  /** The Prometheus text of /metrics. */
  metricsText(): Promise<string>;
  /** A counter or gauge summed over the series whose labels include `labels`. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  alive(): boolean;
  /** SIGTERM and wait (clean stop). */
  stop(): Promise<void>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
}

/** The base config: every listener on loopback, OTA over plain HTTP, the admin endpoint with a known key. */
function baseToml(ports: Ports): Record<string, string[]> {
  return {
    log: ['level = "error"', 'format = "json"'],
    store: ['path = "data"'],
    certs: ['dir = "certs"'],
    // Short deadlines, and login limits the fuzz suites do not reach (test/system/abuse-password-guessing.test.ts sets its own).
    limits: ['tls_handshake_timeout_ms = 2000', 'login_failures_per_address = 1000000', 'login_failures_per_uid = 1000000'],
    'mqtt.tls': ['host = "127.0.0.1"', `port = ${ports.tls}`],
    'mqtt.tcp': ['enabled = true', 'host = "127.0.0.1"', `port = ${ports.tcp}`],
    'mqtt.ws': ['enabled = true', 'host = "127.0.0.1"', `port = ${ports.ws}`, 'tls = false'],
    'mqtt.limits': ['connections_per_second = 100000', 'connect_timeout_ms = 2000', 'drain_timeout_ms = 3000'],
    'ota.http': ['host = "127.0.0.1"', `port = ${ports.ota}`, 'tls = false'],
    admin: ['host = "127.0.0.1"', `port = ${ports.admin}`, `api_key = "${ADMIN_KEY}"`, 'messages_per_second = 100000', 'auth_failures_per_minute = 1000000', 'auth_failures_global_per_minute = 10000000'],
  };
}

export async function freePorts(): Promise<Ports> {
  return { tls: await freePort(), tcp: await freePort(), ws: await freePort(), ota: await freePort(), admin: await freePort() };
}

/** Certificates, device passwords and service accounts, written before the server holds the store. */
async function provision(dir: string, options: InstanceOptions): Promise<{ ca: Buffer; devices: Map<string, DeviceTls> }> {
  const config = validateConfig({ store: { path: path.join(dir, 'data') }, certs: { dir: path.join(dir, 'certs') } });
  let ca: Buffer;
  try {
    ca = await readFile(path.join(dir, 'certs', 'ca.crt'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    ca = Buffer.from((await initCertificates(config.certs)).ca);
  }
  const devices = new Map<string, DeviceTls>();
  for (const uid of options.certDevices ?? []) {
    const files = await issueDeviceCertificate(config.certs, uid, path.join(dir, 'devices', uid));
    devices.set(uid, { ca, cert: await readFile(files.certPath), key: await readFile(files.keyPath) });
  }
  const passwords = Object.entries(options.passwordDevices ?? {});
  const services = Object.entries(options.services ?? {});
  if (passwords.length > 0 || services.length > 0) {
    const store = new LevelStore(path.join(dir, 'data', 'kv'));
    await store.open();
    try {
      for (const [uid, password] of passwords) await deviceCredentials(store).add(uid, password);
      for (const [name, password] of services) await serviceCredentials(store).add(name, password);
    } finally {
      await store.close();
    }
  }
  return { ca, devices };
}

export async function writeInstanceConfig(dir: string, ports: Ports, options: Pick<InstanceOptions, 'extraToml' | 'omit'> = {}): Promise<string> {
  const sections = baseToml(ports);
  const lines: string[] = [];
  for (const [name, body] of Object.entries(sections)) {
    if (options.omit?.includes(name)) continue;
    lines.push(`[${name}]`, ...body);
  }
  lines.push(...(options.extraToml ?? []));
  const file = path.join(dir, 'config.toml');
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

/**
 * Starts test/helpers/reliability-instance.ts and waits for /healthz; SIGKILLed after the test if still running.
 * With ports of its own choosing, a port taken between freePorts() and the bind (another test file running
 * at the same time) is no failure: it starts again on fresh ports, at most three times.
 */
export async function startInstance(t: TestContext, options: InstanceOptions = {}): Promise<Instance> {
  const dir = options.dir ?? (await tempDir(t, 'nucleon-rel-'));
  const { ca, devices } = await provision(dir, options);
  for (let attempt = 1; ; attempt++) {
    const ports = options.ports ?? (await freePorts());
    const configFile = await writeInstanceConfig(dir, ports, options);
    const proc = startProcess(t, process.execPath, ['--import', TSX, ENTRY, configFile], {
      cwd: dir,
      env: options.recordFile ? { RECORD_FILE: options.recordFile } : {},
    });
    const outcome = await waitFor(
      () => {
        if (proc.child.exitCode !== null) return proc.output().includes('EADDRINUSE') && !options.ports && attempt < 3 ? 'port taken' : 'exited';
        return proc.output().includes('reliability instance ready') ? 'ready' : undefined;
      },
      'the instance to start',
      30_000,
      50,
    );
    if (outcome === 'ready') return instanceHandle(dir, ports, ca, configFile, proc, devices);
    if (outcome === 'exited') throw new Error(`the instance exited (${proc.child.exitCode}):\n${proc.output().slice(-3000)}`);
  }
}

function instanceHandle(dir: string, ports: Ports, ca: Buffer, configFile: string, proc: RunningProcess, devices: Map<string, DeviceTls>): Instance {
  const pid = proc.child.pid ?? 0;
  const metricsText = async (): Promise<string> => {
    const response = await fetch(`http://127.0.0.1:${ports.admin}/metrics`);
    const text = await response.text();
    if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
    return text;
  };
  const alive = () => proc.child.exitCode === null && proc.child.signalCode === null;
  return {
    dir,
    ports,
    ca,
    configFile,
    process: proc,
    devices,
    rssMb: async () => Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024,
    metricsText,
    metric: async (name, labels = {}) => metricValue(await metricsText(), name, labels),
    alive,
    stop: async () => {
      if (!alive()) return;
      proc.child.kill('SIGTERM');
      await proc.exited;
    },
    kill: async () => {
      if (!alive()) return;
      proc.child.kill('SIGKILL');
      await proc.exited;
    },
  };
}

/** Sums the samples of `name` whose labels include every pair in `labels`. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^(\w+)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) sum += Number(match[3]);
  }
  return sum;
}

// ---- devices -----------------------------------------------------------------

/** An mqtt.js device over TLS with its certificate; never reconnects by itself; ended after the test. */
export async function connectDevice(t: TestContext, instance: Instance, uid: string, options: IClientOptions = {}): Promise<MqttClient> {
  const tls = instance.devices.get(uid);
  if (!tls) throw new Error(`no certificate was issued for ${uid}`);
  return testClient(t, `mqtts://localhost:${instance.ports.tls}`, { ...tls, clientId: uid, ...options });
}

/**
 * A legitimate device that must keep working while the suite misbehaves: each
 * `roundTrip()` publishes a fresh payload to the echo app runner and waits for it back.
 */
export class Canary {
  roundTrips = 0;
  private readonly waiting = new Map<string, () => void>();
  private counter = 0;

  private constructor(
    readonly uid: string,
    readonly client: MqttClient,
  ) {
    client.on('message', (_topic, payload) => {
      const resolve = this.waiting.get(payload.toString());
      if (resolve) {
        this.waiting.delete(payload.toString());
        resolve();
      }
    });
  }

  static async start(t: TestContext, instance: Instance, uid: string): Promise<Canary> {
    const client = await connectDevice(t, instance, uid);
    // Without it the client's Nagle holds each publish behind the previous PUBACK until the server's delayed ACK (~40 ms a round trip).
    (client.stream as { setNoDelay?: (noDelay: boolean) => void }).setNoDelay?.(true);
    await client.subscribeAsync(`${uid}/app/s/echo`, { qos: 1 });
    return new Canary(uid, client);
  }

  async roundTrip(timeoutMs = 10_000): Promise<void> {
    const payload = `canary-${++this.counter}-${Date.now()}`;
    let timer: NodeJS.Timeout | undefined;
    const answered = new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`canary ${this.uid}: no echo of ${payload} within ${timeoutMs} ms (connected: ${this.client.connected})`)), timeoutMs);
      this.waiting.set(payload, resolve);
    });
    try {
      await this.client.publishAsync(`${this.uid}/app/p/echo`, payload, { qos: 1 });
      await answered;
    } finally {
      // Also when the publish failed: no timer may outlive the call.
      clearTimeout(timer);
      this.waiting.delete(payload);
    }
    this.roundTrips++;
  }

  /**
   * Round-trips every `everyMs` until stopped; the first failure ends the loop.
   * `failure()` tells whether it failed so far; `stop()` resolves with that failure (undefined when none).
   */
  inBackground(everyMs = 100, maxRounds = 10_000): { failure: () => unknown; stop: () => Promise<unknown> } {
    let running = true;
    let failure: unknown;
    const loop = (async () => {
      for (let i = 0; running && i < maxRounds; i++) {
        try {
          await this.roundTrip();
        } catch (error) {
          failure = error;
          return;
        }
        await delay(everyMs);
      }
    })();
    return {
      failure: () => failure,
      stop: async () => {
        running = false;
        await loop;
        return failure;
      },
    };
  }
}

/** Samples the RSS of an instance every `everyMs` until stopped; keeps the peak. */
export class RssSampler {
  peakMb = 0;
  startMb = 0;
  private running = true;
  private readonly loop: Promise<void>;

  constructor(
    private readonly instance: Instance,
    everyMs = 200,
    maxSamples = 3000,
  ) {
    this.loop = (async () => {
      this.startMb = await instance.rssMb();
      this.peakMb = this.startMb;
      for (let i = 0; this.running && i < maxSamples && instance.alive(); i++) {
        this.peakMb = Math.max(this.peakMb, await instance.rssMb());
        await delay(everyMs);
      }
    })();
  }

  async stop(): Promise<{ startMb: number; peakMb: number; endMb: number }> {
    this.running = false;
    await this.loop;
    const endMb = this.instance.alive() ? await this.instance.rssMb() : 0;
    return { startMb: round(this.startMb), peakMb: round(Math.max(this.peakMb, endMb)), endMb: round(endMb) };
  }
}

export function round(value: number, digits = 1): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
