// Devices for the campaign byte-budget measurements (test/integration/
// campaign-budget.test.ts, bench/campaign-budget.ts): real mqtt.js clients
// over TLS with device certificates. A device waits for its package on
// <uid>/ota/s, then downloads it, one request at a time as Pyrinas firmware
// does: DownloadBytes chunks over MQTT, or HTTPS Range requests to the URL of
// the package. Every received piece is timed, for rates over windows.
import https from 'node:https';
import mqtt, { type MqttClient } from 'mqtt';
import { decodeCbor, encodeCbor } from '../../src/protocol/index.js';

export type Via = 'mqtt' | 'http';

export interface FleetTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export interface Piece {
  uid: string;
  at: number;
  bytes: number;
}

interface DeviceRecord {
  uid: string;
  via: Via;
  /** When its first request went out and when its last one did: its download, as the server can see it. */
  firstRequestAt?: number;
  lastRequestAt?: number;
  finishedAt?: number;
  received: number;
}

/** A request without an answer is asked again after this (an over-budget MQTT chunk gets no reply). */
const RETRY_MS = 15_000;
const MAX_ATTEMPTS = 8;

export class BudgetFleet {
  readonly pieces: Piece[] = [];
  readonly devices = new Map<string, DeviceRecord>();
  readonly errors: Error[] = [];
  private readonly clients: MqttClient[] = [];
  private readonly agents: https.Agent[] = [];
  /** Devices between their first and last request, and the most there ever were at once. */
  private active = 0;
  maxActive = 0;

  constructor(private readonly options: { mqttPort: number; chunk: number }) {}

  async add(uid: string, via: Via, tls: FleetTls): Promise<void> {
    const client = await mqtt.connectAsync(`mqtts://localhost:${this.options.mqttPort}`, { clientId: uid, ca: tls.ca, cert: tls.cert, key: tls.key, reconnectPeriod: 0, connectTimeout: 10_000, protocolVersion: 4 });
    this.clients.push(client);
    const record: DeviceRecord = { uid, via, received: 0 };
    this.devices.set(uid, record);
    const chunks = new Map<number, (data: Buffer) => void>();
    client.on('message', (topic, payload) => {
      if (topic === `${uid}/ota/s/d`) {
        const chunk = decodeCbor(payload) as Map<number, unknown>;
        chunks.get(Number(chunk.get(0)))?.(Buffer.from(chunk.get(2) as Uint8Array));
        return;
      }
      if (topic !== `${uid}/ota/s` || payload.length === 0 || record.firstRequestAt !== undefined) return;
      const pkg = decodeCbor(payload) as Map<number, unknown>;
      const download = via === 'mqtt' ? this.overMqtt(client, record, String(pkg.get(0)), Number(pkg.get(3)), chunks) : this.overHttp(record, String(pkg.get(5)), Number(pkg.get(3)), tls);
      download.catch((error: unknown) => this.errors.push(error instanceof Error ? error : new Error(String(error))));
    });
    await client.subscribeAsync([`${uid}/ota/s`, `${uid}/ota/s/d`], { qos: 0 });
  }

  get finished(): number {
    return [...this.devices.values()].filter((device) => device.finishedAt !== undefined).length;
  }

  /** Finish times, earliest first. */
  finishTimes(): number[] {
    return [...this.devices.values()].flatMap((device) => (device.finishedAt === undefined ? [] : [device.finishedAt])).sort((a, b) => a - b);
  }

  async close(): Promise<void> {
    for (const agent of this.agents) agent.destroy();
    await Promise.all(this.clients.map((client) => client.endAsync(true)));
  }

  private begin(record: DeviceRecord): void {
    record.firstRequestAt = performance.now();
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
  }

  private request(record: DeviceRecord, last: boolean): void {
    record.lastRequestAt = performance.now();
    if (last) this.active--;
  }

  private received(record: DeviceRecord, bytes: number, size: number): void {
    const at = performance.now();
    record.received += bytes;
    this.pieces.push({ uid: record.uid, at, bytes });
    if (record.received >= size) record.finishedAt = at;
  }

  private async overMqtt(client: MqttClient, record: DeviceRecord, id: string, size: number, chunks: Map<number, (data: Buffer) => void>): Promise<void> {
    this.begin(record);
    for (let start = 0; start < size; start += this.options.chunk) {
      const end = Math.min(size, start + this.options.chunk);
      const data = await this.ask(start, chunks, async () => {
        this.request(record, end === size);
        await client.publishAsync(`${record.uid}/ota/p`, encodeCbor(new Map<number, unknown>([[0, 2], [1, id], [2, start], [3, end]])), { qos: 0 });
      });
      if (data.length !== end - start) throw new Error(`${record.uid}: chunk ${start} has ${data.length} bytes`);
      this.received(record, data.length, size);
    }
  }

  private async ask(start: number, chunks: Map<number, (data: Buffer) => void>, send: () => Promise<void>): Promise<Buffer> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      let timer: NodeJS.Timeout | undefined;
      const answered = new Promise<Buffer | undefined>((resolve) => {
        chunks.set(start, resolve);
        timer = setTimeout(() => resolve(undefined), RETRY_MS);
      });
      await send();
      const data = await answered;
      clearTimeout(timer);
      chunks.delete(start);
      if (data) return data;
    }
    throw new Error(`chunk ${start}: no answer after ${MAX_ATTEMPTS} requests`);
  }

  private async overHttp(record: DeviceRecord, url: string, size: number, tls: FleetTls): Promise<void> {
    // One kept-alive TLS connection per device, as a FOTA client keeps its socket.
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: tls.ca });
    this.agents.push(agent);
    this.begin(record);
    for (let start = 0; start < size; start += this.options.chunk) {
      const end = Math.min(size, start + this.options.chunk);
      this.request(record, end === size);
      const data = await getRange(url, start, end, agent);
      this.received(record, data.length, size);
    }
  }
}

/** One `Range` request; a 503 is asked again after its Retry-After, a bounded number of times. */
async function getRange(url: string, start: number, end: number, agent: https.Agent): Promise<Buffer> {
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const { status, body, retryAfter } = await new Promise<{ status: number; body: Buffer; retryAfter: string | undefined }>((resolve, reject) => {
      const request = https.get(url, { headers: { Range: `bytes=${start}-${end - 1}` }, agent }, (response) => {
        const parts: Buffer[] = [];
        response.on('data', (part: Buffer) => parts.push(part));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(parts), retryAfter: response.headers['retry-after'] }));
        response.on('error', reject);
      });
      request.on('error', reject);
    });
    if (status === 206) return body;
    if (status !== 503) throw new Error(`GET ${url} bytes ${start}-${end - 1}: HTTP ${status}`);
    await new Promise((resolve) => setTimeout(resolve, Number(retryAfter ?? '1') * 1000));
  }
  throw new Error(`GET ${url} bytes ${start}-${end - 1}: still 503 after ${MAX_ATTEMPTS} tries`);
}

/** Bytes per second in each full window of `windowMs` from `from` to `to`. */
export function windowRates(pieces: readonly Piece[], from: number, to: number, windowMs: number): number[] {
  const rates: number[] = [];
  for (let start = from; start + windowMs <= to; start += windowMs) {
    const bytes = pieces.filter((piece) => piece.at >= start && piece.at < start + windowMs).reduce((sum, piece) => sum + piece.bytes, 0);
    rates.push((bytes * 1000) / windowMs);
  }
  return rates;
}
