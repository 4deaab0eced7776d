// Shared set-up for the Influx tests: the real InfluxRunner on a real EventBroker
// (no Nucleon around it), logs captured as JSON, and a tiny line-protocol HTTP
// server whose answers a test controls (for 4xx/5xx paths victoria-metrics never takes).
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { EventBroker } from '../../src/broker/index.js';
import { validateConfig, type ConfigInput } from '../../src/config/index.js';
import type { Telemetry } from '../../src/events.js';
import { InfluxRunner } from '../../src/influx/index.js';
import type { RunnerContext } from '../../src/runner.js';
import { LocalPresence } from '../../src/presence/index.js';
import { LevelStore } from '../../src/store/index.js';

/**
 * A temp dir and a cleanup list for one test. node:test runs `after` hooks in
 * the order they were added, so one hook does it all: the runners, servers and
 * processes added later stop first (reverse order), then the dir goes.
 */
export interface TestEnv {
  dir: string;
  defer(cleanup: () => Promise<void>): void;
}

export async function testEnv(t: TestContext): Promise<TestEnv> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nucleon-influx-'));
  const cleanups: (() => Promise<void>)[] = [];
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, defer: (cleanup) => void cleanups.push(cleanup) };
}

export type LogEntry = { level: number; msg: string } & Record<string, unknown>;

export interface RunnerHarness {
  broker: EventBroker;
  registry: Registry;
  logs: LogEntry[];
  /** Current value of a counter or gauge (summed over matching labels). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  telemetry(uid: string, telemetry: Telemetry, receivedAt: number): Promise<void>;
  /** Drains the broker and stops the runner (flush + spool). Safe twice. */
  stop(): Promise<void>;
}

let storeCount = 0;

/** Influx settings that make retries and flushes quick enough for tests. */
export function fastInflux(url: string, spoolDir: string, overrides: Record<string, unknown> = {}): NonNullable<ConfigInput['influx']> {
  return {
    url,
    org: 'nucleon',
    bucket: 'telemetry',
    batch_size: 4,
    flush_interval_ms: 20,
    max_retries: 2,
    retry_initial_ms: 20,
    retry_max_ms: 200,
    timeout_ms: 10_000, // generous: a loaded CI machine must not turn a slow answer into a retry
    spool_dir: spoolDir,
    ...overrides,
  };
}

export async function startInfluxRunner(env: TestEnv, influx: NonNullable<ConfigInput['influx']>): Promise<RunnerHarness> {
  const dir = env.dir;
  const config = validateConfig({ store: { path: path.join(dir, 'data') }, broker: { stop_timeout_ms: 4000 }, influx });
  const logs: LogEntry[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogEntry) });
  const registry = new Registry();
  const broker = new EventBroker({ inboxSize: 1000, maxWaiters: 1000, logger, metrics: registry });
  const store = new LevelStore(path.join(dir, `kv-${String(++storeCount)}`));
  await store.open();
  broker.start();
  const runner = new InfluxRunner();
  const context: RunnerContext = { config, broker, logger, metrics: registry, store, presence: new LocalPresence('test-instance', logger) };
  await runner.start(context);
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await broker.drain(5000);
      await runner.stop();
      await broker.stop(1000);
      await store.close();
    })());
  env.defer(stop);
  return {
    broker,
    registry,
    logs,
    async metric(name, labels = {}) {
      const found = registry.getSingleMetric(name);
      if (!found) throw new Error(`no metric ${name}`);
      const { values } = await found.get();
      return values
        .filter((v) => (v as { metricName?: string }).metricName === undefined || (v as { metricName?: string }).metricName === name)
        .filter((v) => Object.entries(labels).every(([key, value]) => (v.labels as Record<string, unknown>)[key] === value))
        .reduce((sum, v) => sum + v.value, 0);
    },
    telemetry: (uid, telemetry, receivedAt) => broker.publish({ type: 'TelemetryReceived', uid, telemetry, receivedAt }),
    stop,
  };
}

/** What the line server does with a request: 204, or a status with a body. */
export type LineServerAnswer = { status: number; body?: string; headers?: Record<string, string> };

export interface LineServer {
  url: string;
  /** Lines the server accepted (answered 2xx), in arrival order. */
  accepted: string[];
  /** Every request: its query and lines, and the status it got. */
  requests: { query: URLSearchParams; lines: string[]; status: number; authorization?: string; contentEncoding?: string; contentType?: string; wireBytes: number }[];
  /** Decides each answer; by default everything is accepted. */
  answer: (lines: string[]) => LineServerAnswer;
  /** Each answer waits this long (a server slower than the producers). */
  delayMs: number;
  close(): Promise<void>;
}

/** A minimal InfluxDB v2 write endpoint on a loopback port. */
export async function startLineServer(env: TestEnv): Promise<LineServer> {
  const state: LineServer = {
    url: '',
    accepted: [],
    requests: [],
    answer: () => ({ status: 204 }),
    delayMs: 0,
    close: () => Promise.resolve(),
  };
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const raw = Buffer.concat(chunks);
      const body = (request.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8');
      const url = new URL(request.url ?? '/', 'http://localhost');
      const lines = body.split('\n').filter((line) => line !== '');
      const answer = url.pathname === '/api/v2/write' ? state.answer(lines) : { status: 404, body: 'not found' };
      state.requests.push({
        query: url.searchParams,
        lines,
        status: answer.status,
        authorization: request.headers.authorization,
        contentEncoding: request.headers['content-encoding'],
        contentType: request.headers['content-type'],
        wireBytes: raw.length,
      });
      if (answer.status >= 200 && answer.status < 300) state.accepted.push(...lines);
      const send = () => {
        response.writeHead(answer.status, { 'content-type': 'application/json; charset=utf-8', ...answer.headers });
        response.end(answer.body ?? '');
      };
      if (state.delayMs > 0) setTimeout(send, state.delayMs);
      else send();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let closed: Promise<void> | undefined;
  state.close = () =>
    (closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }));
  env.defer(() => state.close());
  return state;
}
