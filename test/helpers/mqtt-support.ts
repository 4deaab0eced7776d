// Shared by the mqtt*.test.ts files: a Nucleon with only what MQTT needs, a
// recording runner, and mqtt.js clients with certificates or passwords.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TestContext } from 'node:test';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { testClient } from './mqtt.js';
import { issueDeviceCertificate } from '../../src/certs/index.js';
import type { ConfigInput } from '../../src/config/index.js';
import { deviceCredentials, serviceCredentials } from '../../src/devices/index.js';
import type { Event, EventType } from '../../src/events.js';
import { silentLogger } from '../../src/logger.js';
import type { MqttRunner } from '../../src/mqtt/index.js';
import { createNucleon, type Nucleon } from '../../src/nucleon.js';
import { EventRunner } from '../../src/runner.js';
import { tempDir, waitFor, closeAfter } from './index.js';

export const RECORDED = ['ApplicationRequest', 'TelemetryReceived', 'OtaRequest', 'DeviceConnected', 'DeviceDisconnected'] as const satisfies readonly EventType[];
type Recorded = Extract<Event, { type: (typeof RECORDED)[number] }>;

/** Stands in for the app runner: keeps what it receives; `delayMs` makes it a slow consumer. */
export class RecordingRunner extends EventRunner<(typeof RECORDED)[number]> {
  readonly events: Recorded[] = [];
  handled = 0;

  constructor(
    private readonly delayMs = 0,
    private readonly keep = 10_000,
    private readonly capacity?: number,
  ) {
    super('recorder', RECORDED);
  }

  override async start(context: Parameters<EventRunner<(typeof RECORDED)[number]>['start']>[0]): Promise<void> {
    this.context = context;
    await context.broker.publish({
      type: 'NewRunner',
      name: this.name,
      accepts: RECORDED,
      // Durable, as an app runner built on EventRunner is: fed from the ingest log when its inbox is full.
      inbox: { handle: (event) => this.handle(event as Recorded), durable: 'handled', ...(this.capacity ? { capacity: this.capacity } : {}) },
    });
  }

  protected async handle(event: Recorded): Promise<void> {
    this.handled++;
    if (this.events.length < this.keep) this.events.push(event);
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
  }

  of<K extends Recorded['type']>(type: K): Extract<Recorded, { type: K }>[] {
    return this.events.filter((event): event is Extract<Recorded, { type: K }> => event.type === type);
  }
}

export interface TestBroker {
  nucleon: Nucleon;
  recorder: RecordingRunner;
  port: number;
  dir: string;
  config: ConfigInput;
  ca: Buffer;
}

export function baseConfig(dir: string, overrides: ConfigInput = {}): ConfigInput {
  return {
    log: { level: 'silent' },
    store: { path: path.join(dir, 'data') },
    certs: { dir: path.join(dir, 'certs') },
    ota: { enabled: false, http: { enabled: false, host: '127.0.0.1', port: 0 } },
    admin: { enabled: false },
    ...overrides,
    mqtt: { ...overrides.mqtt, tls: { host: '127.0.0.1', port: 0, ...overrides.mqtt?.tls } },
  };
}

export async function startBroker(
  t: TestContext,
  options: { dir?: string; config?: ConfigInput; recorder?: RecordingRunner } = {},
): Promise<TestBroker> {
  const dir = options.dir ?? (await tempDir(t));
  const config = baseConfig(dir, options.config);
  const nucleon = createNucleon(config, { logger: silentLogger() });
  const recorder = options.recorder ?? new RecordingRunner();
  await nucleon.addRunner(recorder);
  await nucleon.start();
  closeAfter(t, () => nucleon.stop());
  const runner = nucleon.runner('mqtt') as MqttRunner;
  const port = runner.port('tls') ?? 0;
  const ca = await readFile(path.join(dir, 'certs', 'ca.crt'));
  return { nucleon, recorder, port, dir, config, ca };
}

export async function deviceTls(broker: TestBroker, uid: string): Promise<{ ca: Buffer; cert: Buffer; key: Buffer; files: Awaited<ReturnType<typeof issueDeviceCertificate>> }> {
  const files = await issueDeviceCertificate({ ...broker.nucleon.config.certs }, uid, path.join(broker.dir, 'devices'));
  return { ca: await readFile(files.caPath), cert: await readFile(files.certPath), key: await readFile(files.keyPath), files };
}

export async function addDevicePassword(broker: TestBroker, uid: string, password?: string): Promise<string> {
  return deviceCredentials(broker.nucleon.store).add(uid, password);
}

export async function addServiceAccount(broker: TestBroker, name: string, password?: string): Promise<string> {
  return serviceCredentials(broker.nucleon.store).add(name, password);
}

/** An mqtt.js client over TLS that never reconnects by itself; ended after the test. */
export async function connect(t: TestContext, broker: { port: number; ca: Buffer }, options: IClientOptions): Promise<MqttClient> {
  return testClient(t, `mqtts://localhost:${broker.port}`, { ca: broker.ca, ...options });
}

/** Connecting that is expected to fail; resolves with the error. */
export async function connectError(broker: { port: number; ca: Buffer }, options: IClientOptions): Promise<Error & { code?: number }> {
  try {
    const client = await mqtt.connectAsync(`mqtts://localhost:${broker.port}`, { ca: broker.ca, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...options });
    await client.endAsync(true);
  } catch (error) {
    return error as Error & { code?: number };
  }
  throw new Error('connection was expected to fail');
}

export function waitForEvents<T>(read: () => T[], count: number, what: string, timeoutMs = 10_000): Promise<T[]> {
  return waitFor(() => (read().length >= count ? read() : undefined), what, timeoutMs);
}

/** The SUBACK return codes; mqtt.js rejects a SUBACK with 0x80, so read them from its error. */
export async function subscribeCodes(client: MqttClient, filters: string | string[], qos: 0 | 1 | 2 = 1): Promise<number[]> {
  try {
    const granted = await client.subscribeAsync(filters, { qos });
    return granted.map((g) => g.qos);
  } catch (error) {
    const packet = (error as { packet?: { granted?: number[] } }).packet;
    if (!packet?.granted) throw error;
    return packet.granted;
  }
}

/** A config.toml for `nucleon serve` in `dir`: MQTT/TLS on 127.0.0.1:`port`, OTA and admin off, relative data/ and certs/. */
export async function writeServeConfig(dir: string, port: number, extraLines: string[] = []): Promise<string> {
  const file = path.join(dir, 'config.toml');
  const lines = ['[log]', 'format = "json"', '[store]', 'path = "data"', '[certs]', 'dir = "certs"', '[mqtt.tls]', 'host = "127.0.0.1"', `port = ${port}`];
  await writeFile(file, [...lines, '[ota]', 'enabled = false', '[ota.http]', 'enabled = false', '[admin]', 'enabled = false', ...extraLines].join('\n'));
  return file;
}
