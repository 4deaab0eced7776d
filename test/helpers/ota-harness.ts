// Shared by the ota-*.test.ts files: the OTA runners on a real EventBroker and
// LevelStore, with a recording runner standing in for the MQTT and admin runners.
import path from 'node:path';
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { EventBroker } from '../../src/broker/index.js';
import { validateConfig, type ConfigInput } from '../../src/config/index.js';
import type { Event, EventOf, EventType } from '../../src/events.js';
import { OtaHttpRunner } from '../../src/ota/http-server.js';
import { OtaRunner, type OtaRunnerOptions } from '../../src/ota/runner.js';
import type { RunnerContext } from '../../src/runner.js';
import { LevelStore } from '../../src/store/index.js';
import { tempDir, waitFor } from './index.js';
import { SimulatedDevices } from './presence.js';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

const RECORDED: EventType[] = ['OtaResponse', 'OtaDownloadResponse', 'OtaCommandResult', 'OtaImageListResponse', 'OtaGroupListResponse', 'DeviceFirmwareUpdated'];

export interface OtaHarness {
  dir: string;
  ota: OtaRunner;
  http: OtaHttpRunner | undefined;
  broker: EventBroker;
  store: LevelStore;
  metrics: Registry;
  seen: Event[];
  logs: LogLine[];
  /** Sends a management request and waits for the answer with its correlation id. */
  request<T extends Event>(event: Event & { correlationId: string }): Promise<T>;
  /** Sends a device event (a connect or disconnect changes presence first, as the MQTT gateway does) and waits until the OTA runner has handled it. */
  device(event: Event): Promise<void>;
  /** Stops everything this harness started (safe twice). */
  stop(): Promise<void>;
  of<K extends EventType>(type: K): EventOf<K>[];
}

let nextId = 0;
export function correlationId(): string {
  return `c${++nextId}`;
}

export interface HarnessOptions extends OtaRunnerOptions {
  config?: ConfigInput;
  /** Reuse a directory (restart tests). */
  dir?: string;
  http?: boolean;
  /** For the download server: which devices are revoked (the instance's revocation list, or a stand-in). */
  revocations?: ConstructorParameters<typeof OtaHttpRunner>[1];
  /** The store at `location` (a LevelStore that holds or fails writes); a plain LevelStore without it. */
  storeAt?: (location: string) => LevelStore;
}

export async function startOta(t: TestContext, options: HarnessOptions = {}): Promise<OtaHarness> {
  const dir = options.dir ?? (await tempDir(t, 'nucleon-ota-'));
  const input = options.config ?? {};
  const config = validateConfig({
    ...input,
    store: { path: path.join(dir, 'data') },
    certs: { dir: path.join(dir, 'certs'), ...input.certs },
    ota: { ...input.ota, http: { host: '127.0.0.1', port: 0, tls: false, ...input.ota?.http } },
  });
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const metrics = new Registry();
  const location = path.join(dir, 'data', 'kv');
  const store = options.storeAt?.(location) ?? new LevelStore(location);
  await store.open();
  const broker = new EventBroker({ inboxSize: 256, maxWaiters: 256, logger, metrics });
  broker.start();
  const seen: Event[] = [];
  broker.register({ type: 'NewRunner', name: 'recorder', accepts: RECORDED, inbox: { handle: (event) => void seen.push(event) } });
  const devices = new SimulatedDevices();
  const context: RunnerContext = { config, broker, logger, metrics, store, presence: devices.presence };
  const ota = new OtaRunner(options);
  await ota.start(context);
  const http = options.http ? new OtaHttpRunner(ota, options.revocations) : undefined;
  if (http) await http.start(context);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await http?.stop();
    await broker.drain(5000);
    await ota.stop();
    await store.close();
  };
  t.after(stop);
  return {
    dir,
    ota,
    http,
    broker,
    store,
    metrics,
    seen,
    logs,
    stop,
    of: <K extends EventType>(type: K) => seen.filter((event): event is EventOf<K> => event.type === type),
    async request<T extends Event>(event: Event & { correlationId: string }): Promise<T> {
      await broker.publish(event);
      return (await waitFor(
        () => seen.find((e) => 'correlationId' in e && e.correlationId === event.correlationId && e !== event),
        `an answer to ${event.type} ${event.correlationId}`,
      )) as T;
    },
    async device(event: Event): Promise<void> {
      devices.apply(event);
      await broker.publish(event);
      await broker.drain(5000);
    },
  };
}

export function checkRequest(uid: string): Event {
  return { type: 'OtaRequest', uid, cmd: 'Check', receivedAt: Date.now() };
}

export function downloadRequest(uid: string, id: string, startPos: number, endPos: number): Event {
  return { type: 'OtaRequest', uid, cmd: 'DownloadBytes', id, startPos, endPos, receivedAt: Date.now() };
}

export function doneRequest(uid: string): Event {
  return { type: 'OtaRequest', uid, cmd: 'Done', receivedAt: Date.now() };
}

export function connected(uid: string, clientId = uid): Event {
  return { type: 'DeviceConnected', uid, clientId, remoteAddress: '127.0.0.1', authMethod: 'anonymous', cleanSession: true, at: Date.now() };
}

/** Deterministic firmware-like bytes. */
export function firmware(size: number, seed = 1): Buffer {
  const bytes = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return bytes;
}
