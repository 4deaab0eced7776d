// Test support for the admin endpoint: a real AdminRunner on a real EventBroker
// and LevelStore, small answering runners standing in for OTA and the app, and a
// WebSocket client that matches answers to requests.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { Registry } from 'prom-client';
import { Decoder, Encoder } from 'cbor-x';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { issueDeviceCertificate } from '../../src/certs/index.js';
import { AdminRunner, type AdminRunnerOptions } from '../../src/admin/index.js';
import { createNucleon, type Nucleon } from '../../src/nucleon.js';
import { EventBroker } from '../../src/broker/index.js';
import { validateConfig, type ConfigInput } from '../../src/config/index.js';
import type { Event, EventOf, GroupInfo, ImageInfo } from '../../src/events.js';
import { silentLogger } from '../../src/logger.js';
import { parseVersionId } from '../../src/protocol/index.js';
import { LevelStore } from '../../src/store/index.js';
import { tempDir, closeAfter } from './index.js';
import { SimulatedDevices } from './presence.js';

export const API_KEY = 'test-admin-key-0123456789abcdef';

export interface AdminHarness {
  runner: AdminRunner;
  broker: EventBroker;
  metrics: Registry;
  store: LevelStore;
  dir: string;
  port: number;
  wsUrl: string;
  httpUrl: string;
  /** Sends a device event (a connect or disconnect changes presence first, as the MQTT gateway does) and waits until it is handled. */
  device(event: Event): Promise<void>;
  /** Stops the runner and starts a new one on the same store, with nobody online (an instance restart). */
  restart(): Promise<void>;
}

export async function startAdmin(t: TestContext, admin: NonNullable<ConfigInput['admin']> = {}, options: { dir?: string; runner?: AdminRunnerOptions } = {}): Promise<AdminHarness> {
  const dir = options.dir ?? (await tempDir(t, 'nucleon-admin-'));
  const config = validateConfig({ store: { path: path.join(dir, 'data') }, admin: { host: '127.0.0.1', port: 0, api_key: API_KEY, ...admin } });
  const metrics = new Registry();
  const broker = new EventBroker({ inboxSize: 1024, maxWaiters: 1024, logger: silentLogger(), metrics });
  broker.start();
  const store = new LevelStore(path.join(dir, 'data', 'kv'));
  await store.open();
  let devices = new SimulatedDevices();
  const context = () => ({ config, broker, logger: silentLogger(), metrics: harness.metrics, store, presence: devices.presence });
  const harness: AdminHarness = {
    runner: new AdminRunner(options.runner),
    broker,
    metrics,
    store,
    dir,
    port: 0,
    wsUrl: '',
    httpUrl: '',
    device: async (event) => {
      devices.apply(event);
      await broker.publish(event);
      await broker.drain(5000);
    },
    restart: async () => {
      await harness.runner.stop();
      // A new registry: metric names are registered once per registry.
      harness.metrics = new Registry();
      devices = new SimulatedDevices();
      harness.runner = new AdminRunner(options.runner);
      await harness.runner.start(context());
      setAddress();
    },
  };
  const setAddress = () => {
    const port = harness.runner.address()?.port ?? 0;
    harness.port = port;
    harness.wsUrl = `ws://127.0.0.1:${port}/ws`;
    harness.httpUrl = `http://127.0.0.1:${port}`;
  };
  await harness.runner.start(context());
  setAddress();
  t.after(async () => {
    await harness.runner.stop();
    await broker.stop(1000);
    await store.close();
  });
  return harness;
}

/**
 * A whole Nucleon (MQTT over TLS, OTA, admin and whatever else is built in) on
 * free loopback ports in its own folder; stopped after the test. `beforeStart`
 * gets the instance's `store.path` before anything opens it.
 */
export async function startFullInstance(
  t: TestContext,
  extra: ConfigInput = {},
  options: { beforeStart?: (dataDir: string) => Promise<unknown> } = {},
): Promise<{ nucleon: Nucleon; adminPort: number; dir: string }> {
  const dir = await tempDir(t, 'nucleon-admin-full-');
  // What the instance finds in its store at start (test/helpers/seed-fleet.ts writes a fleet there).
  await options.beforeStart?.(path.join(dir, 'data'));
  const nucleon = createNucleon(
    {
      log: { level: 'silent' },
      store: { path: path.join(dir, 'data') },
      certs: { dir: path.join(dir, 'certs') },
      mqtt: { tls: { host: '127.0.0.1', port: 0 } },
      ota: { http: { host: '127.0.0.1', port: 0 } },
      ...extra,
      admin: { host: '127.0.0.1', port: 0, api_key: API_KEY, ...extra.admin },
    },
    { logger: silentLogger() },
  );
  await nucleon.start();
  closeAfter(t, () => nucleon.stop());
  const adminPort = (nucleon.runner('admin') as AdminRunner).address()?.port ?? 0;
  return { nucleon, adminPort, dir };
}

/**
 * A device of a full instance (startFullInstance) logged in over mutual TLS
 * with a certificate issued by the instance's CA into `<dir>/devices`;
 * disconnected after the test.
 */
export async function connectCertificateDevice(t: TestContext, nucleon: Nucleon, dir: string, uid: string): Promise<{ device: mqtt.MqttClient; certPath: string }> {
  const connected = await connectTlsDevice(nucleon, dir, uid);
  t.after(() => connected.device.endAsync(true));
  return connected;
}

/** connectCertificateDevice without a test to end it: the caller ends the client (scripts/screenshots.ts). */
export async function connectTlsDevice(nucleon: Nucleon, dir: string, uid: string): Promise<{ device: mqtt.MqttClient; certPath: string }> {
  const port = (nucleon.runner('mqtt') as unknown as { port(name: string): number | undefined }).port('tls') ?? 0;
  const files = await issueDeviceCertificate({ ...nucleon.config.certs }, uid, path.join(dir, 'devices'));
  const device = await mqtt.connectAsync(`mqtts://localhost:${port}`, {
    ca: await readFile(files.caPath),
    cert: await readFile(files.certPath),
    key: await readFile(files.keyPath),
    clientId: uid,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    protocolVersion: 4,
  });
  return { device, certPath: files.certPath };
}

/** Stands in for the OTA runner: keeps images, groups and links in memory and answers by correlation id. */
export class FakeOta {
  readonly images = new Map<string, ImageInfo & { bytes: Buffer }>();
  readonly groups = new Map<string, GroupInfo>();
  readonly deviceLinks = new Map<string, string>();
  readonly seen: Event[] = [];

  constructor(private readonly broker: EventBroker) {}

  async start(): Promise<void> {
    await this.broker.publish({
      type: 'NewRunner',
      name: 'fake-ota',
      accepts: ['OtaNewPackage', 'OtaDeletePackage', 'OtaLink', 'OtaUnlink', 'OtaImageListRequest', 'OtaGroupListRequest'],
      inbox: { handle: (event) => this.handle(event) },
    });
  }

  private async handle(event: Event): Promise<void> {
    this.seen.push(event);
    switch (event.type) {
      case 'OtaNewPackage': {
        // Read the file now: the admin removes its upload copy once we answer.
        const bytes = event.source.kind === 'bytes' ? Buffer.from(event.source.data) : await readFile(event.source.path);
        const version = parseVersionId(event.id);
        if (!version) return this.result(event.correlationId, undefined, { code: 'INVALID_ARGUMENT', message: 'bad id' });
        if (this.images.has(event.id)) return this.result(event.correlationId, undefined, { code: 'ALREADY_EXISTS', message: `image ${event.id} exists` });
        const info: ImageInfo = {
          id: event.id,
          version,
          size: bytes.length,
          sha256: createHash('sha256').update(bytes).digest('hex'),
          imageType: event.imageType,
          dateAdded: '2026-11-01T12:00:00Z',
          ...(event.description !== undefined ? { description: event.description } : {}),
        };
        this.images.set(event.id, { ...info, bytes });
        return this.result(event.correlationId, info);
      }
      case 'OtaDeletePackage':
        if (!this.images.delete(event.id)) return this.result(event.correlationId, undefined, { code: 'NOT_FOUND', message: `no image ${event.id}` });
        return this.result(event.correlationId, { deleted: event.id });
      case 'OtaLink': {
        if (event.imageId !== undefined && !this.images.has(event.imageId)) {
          return this.result(event.correlationId, undefined, { code: 'NOT_FOUND', message: `no image ${event.imageId}` });
        }
        if (event.group !== undefined) {
          const group = this.groups.get(event.group) ?? { name: event.group, devices: [] };
          if (event.imageId !== undefined) group.imageId = event.imageId;
          if (event.deviceUid !== undefined && !group.devices.includes(event.deviceUid)) group.devices.push(event.deviceUid);
          this.groups.set(event.group, group);
        } else if (event.deviceUid !== undefined && event.imageId !== undefined) {
          this.deviceLinks.set(event.deviceUid, event.imageId);
        }
        return this.result(event.correlationId, { linked: true });
      }
      case 'OtaUnlink':
        if (event.deviceUid !== undefined) {
          this.deviceLinks.delete(event.deviceUid);
          for (const group of this.groups.values()) group.devices = group.devices.filter((d) => d !== event.deviceUid);
        } else if (event.group !== undefined) this.groups.delete(event.group);
        return this.result(event.correlationId, { unlinked: true });
      case 'OtaImageListRequest':
        return this.broker.publish({
          type: 'OtaImageListResponse',
          correlationId: event.correlationId,
          images: [...this.images.values()].map(({ bytes: _bytes, ...info }) => info),
        });
      case 'OtaGroupListRequest':
        return this.broker.publish({ type: 'OtaGroupListResponse', correlationId: event.correlationId, groups: [...this.groups.values()] });
      default:
        return undefined;
    }
  }

  private result(correlationId: string, result?: unknown, error?: { code: string; message: string }): Promise<void> {
    return this.broker.publish({ type: 'OtaCommandResult', correlationId, ...(result !== undefined ? { result } : {}), ...(error ? { error } : {}) });
  }
}

/** Stands in for the user's app runner. Target `silent` never answers; `fail` answers an error. */
export class FakeApp {
  readonly seen: EventOf<'ApplicationManagementRequest'>[] = [];

  constructor(private readonly broker: EventBroker) {}

  async start(): Promise<void> {
    await this.broker.publish({
      type: 'NewRunner',
      name: 'fake-app',
      accepts: ['ApplicationManagementRequest'],
      inbox: { handle: (event) => this.handle(event as EventOf<'ApplicationManagementRequest'>) },
    });
  }

  private async handle(event: EventOf<'ApplicationManagementRequest'>): Promise<void> {
    this.seen.push(event);
    if (event.target === 'silent') return;
    if (event.target === 'fail') {
      await this.broker.publish({ type: 'ApplicationManagementResponse', correlationId: event.correlationId, error: { code: 'APP_FAILED', message: 'the app says no' } });
      return;
    }
    await this.broker.publish({ type: 'ApplicationManagementResponse', correlationId: event.correlationId, payload: { target: event.target, echo: event.payload } });
  }
}

const cborEncoder = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true });
const cborDecoder = new Decoder({ mapsAsObjects: true, useRecords: false });

export interface Reply {
  v: number;
  id: string | number | null;
  ok: boolean;
  // Replies are checked field by field with assert, which is the type check here.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  result?: any;
  error?: { code: string; message: string };
}

export interface LiveEvent {
  v: number;
  event: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data: any;
}

/** A real `ws` client that pairs answers with requests by id and collects live events. */
export class AdminTestClient {
  readonly replies: Reply[] = [];
  readonly events: LiveEvent[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private nextId = 1;
  private readonly waiting = new Map<string | number, (reply: Reply) => void>();

  private constructor(readonly socket: WebSocket) {
    this.closed = new Promise((resolve) => socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    socket.on('message', (data, isBinary) => {
      const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      const message = (isBinary ? cborDecoder.decode(buffer) : JSON.parse(buffer.toString('utf8'))) as Reply | LiveEvent;
      if ('event' in message) {
        this.events.push(message);
        return;
      }
      this.replies.push(message);
      const resolve = message.id !== null ? this.waiting.get(message.id) : undefined;
      if (resolve && message.id !== null) {
        this.waiting.delete(message.id);
        resolve(message);
      }
    });
    socket.on('error', () => undefined);
  }

  static async connect(t: TestContext, url: string, options: { headers?: Record<string, string>; protocols?: string[] } = {}): Promise<AdminTestClient> {
    const socket = new WebSocket(url, options.protocols ?? [], { headers: options.headers ?? {} });
    t.after(() => socket.terminate());
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
      socket.once('unexpected-response', (_request, response) => reject(new Error(`HTTP ${response.statusCode}`)));
    });
    return new AdminTestClient(socket);
  }

  /** Connects with the test API key in the Authorization header. */
  static authorized(t: TestContext, url: string): Promise<AdminTestClient> {
    return AdminTestClient.connect(t, url, { headers: { authorization: `Bearer ${API_KEY}` } });
  }

  /** Sends a request and waits (up to 10 s) for the reply with its id. */
  request(cmd: string, args: Record<string, unknown> = {}, encoding: 'json' | 'cbor' = 'json', timeoutMs = 10_000): Promise<Reply> {
    const id = `r${this.nextId++}`;
    const reply = this.expectReply(id, timeoutMs);
    this.sendRaw({ id, cmd, args }, encoding);
    return reply;
  }

  sendRaw(message: unknown, encoding: 'json' | 'cbor' = 'json'): void {
    if (encoding === 'cbor') this.socket.send(cborEncoder.encode(message));
    else this.socket.send(JSON.stringify(message));
  }

  expectReply(id: string | number, timeoutMs = 10_000): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to ${id} within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
    });
  }

  /** The next reply without an id (answers to frames that could not be parsed). */
  async nextAnonymousReply(after: number, timeoutMs = 5000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.replies.slice(after).find((r) => r.id === null);
      if (found) return found;
      if (Date.now() > deadline) throw new Error('no anonymous reply');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}
