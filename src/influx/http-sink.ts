import { isIP } from 'node:net';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { HttpError, InfluxDB, type Transport } from '@influxdata/influxdb-client';
import { addressBlock, LOOPBACK_BLOCK } from '../util/address-block.js';
import type { LineBatch } from './line-buffer.js';
import type { Precision } from './points.js';

export interface InfluxTarget {
  url: string;
  org: string;
  bucket: string;
  token: string;
  timeoutMs: number;
  /** Whether large bodies go gzipped (`[influx] gzip`; default "auto"). */
  gzip?: GzipMode;
}

/** `[influx] gzip`: "auto" gzips large bodies unless the server is on this host; "always" and "never" as they say. */
export type GzipMode = 'auto' | 'always' | 'never';

/**
 * What one write request came to:
 * - `written`: the server stored the batch (2xx).
 * - `rejected`: the server refused the data itself (400, 413, 422); sending it
 *   again cannot help.
 * - `retry`: the server is down, overloaded or refuses us for now (network
 *   errors, timeouts, 408, 429, 5xx, and 401/403/404, which are configuration
 *   problems an operator can fix without losing the data). `retryAfterMs` is the
 *   server's Retry-After, 0 when it sent none.
 */
export type WriteOutcome =
  | { kind: 'written' }
  | { kind: 'rejected'; status: number; reason: string }
  | { kind: 'retry'; status?: number; reason: string; retryAfterMs: number };

/** Bodies from this size on are sent gzipped (what the client's own gzipThreshold did). */
export const GZIP_FROM_BYTES = 64 * 1024;

/**
 * The body size from which writes to `url` go gzipped: GZIP_FROM_BYTES, or
 * never. "auto" leaves a server on this host (loopback, `localhost`)
 * uncompressed: there it saves no network and costs CPU at both ends on the
 * same cores. Bench scenario 8, four alternating pairs against gzip on
 * (victoria-metrics on 127.0.0.1): broker CPU per device telemetry point
 * 7.78 / 7.41 / 8.04 / 8.96 µs → 7.36 / 7.17 / 7.85 / 7.03, per app-batch
 * point 2.35 / 2.30 / 2.53 / 3.22 → 1.90 / 2.16 / 2.04 / 2.03.
 */
export function gzipFromBytes(url: string, mode: GzipMode = 'auto'): number {
  if (mode === 'never' || (mode === 'auto' && onThisHost(new URL(url).hostname))) return Number.POSITIVE_INFINITY;
  return GZIP_FROM_BYTES;
}

/** A URL hostname that names this host: localhost, or a loopback address (127.0.0.0/8, ::1, IPv4-mapped 127.x). */
export function onThisHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  return isIP(host) !== 0 && addressBlock(host) === LOOPBACK_BLOCK;
}

/**
 * Level 1: on line protocol it compresses 7.3× against level 6's 8.6×, for
 * 0.24 µs of CPU per point against 0.82 (5,000-point batches, measured with
 * zlib.gzipSync): the level the client used cost about 5 % of the broker's
 * CPU per telemetry point, and a batch still leaves at a seventh of its size.
 */
const GZIP_LEVEL = 1;

const gzipAsync = promisify(gzip);

/**
 * Whether the client's transport sends a Buffer body as it is. Its `send`
 * is typed for a string body and its Node transport turns the body into bytes
 * with `Buffer.from(body, 'utf-8')`, which copies a Buffer unchanged; its
 * `request` would JSON-encode anything but a string. A batch is bytes already
 * (line-buffer.ts): decoding it to a string only for the transport to encode
 * it again cost about 6 % of the broker's CPU per telemetry point (bench
 * scenario 8 profile). When the transport does not look like that, the body
 * goes as a string through `request`, as before.
 */
function sendsBuffers(transport: Transport): boolean {
  const make = (transport as unknown as { createRequestMessage?: unknown }).createRequestMessage;
  return typeof transport.send === 'function' && typeof make === 'function' && /\.from\(\w+,\s*["']utf-?8["']\)/.test(make.toString());
}

/** Status codes that mean "this data is bad" rather than "try again later". */
const BAD_DATA_STATUS = new Set([400, 413, 422]);

/**
 * One InfluxDB v2 write endpoint (`POST /api/v2/write`), through the official
 * client's transport: it brings token auth, gzip for large bodies, timeouts and
 * parsed error bodies. Retrying and buffering are ours (see InfluxWriter), so
 * the client's own WriteApi with its in-memory retry buffer is not used.
 */
export class InfluxHttpSink {
  private readonly client: InfluxDB;
  private readonly org: string;
  private readonly bucket: string;
  /** Batches go as bytes (see sendsBuffers); false: as strings through the client's `request`. */
  readonly buffers: boolean;
  /** Bodies of this many bytes or more go gzipped (Infinity: none). */
  readonly gzipFromBytes: number;

  constructor(target: InfluxTarget) {
    this.client = new InfluxDB({ url: target.url, token: target.token === '' ? undefined : target.token, timeout: target.timeoutMs });
    this.org = target.org;
    this.bucket = target.bucket;
    this.buffers = sendsBuffers(this.client.transport);
    this.gzipFromBytes = gzipFromBytes(target.url, target.gzip);
  }

  async write(batch: LineBatch, precision: Precision, signal?: AbortSignal): Promise<WriteOutcome> {
    const query = new URLSearchParams({ bucket: this.bucket, precision });
    // InfluxDB 2 needs the org; servers speaking only the v2 write API (VictoriaMetrics, Influx 1.8) do not.
    if (this.org !== '') query.set('org', this.org);
    const path = `/api/v2/write?${query.toString()}`;
    try {
      if (!this.buffers) {
        await this.client.transport.request(path, batch.body(), { method: 'POST', headers: TEXT, gzipThreshold: this.gzipFromBytes, ...(signal ? { signal } : {}) });
        return { kind: 'written' };
      }
      const gzipped = batch.text.length >= this.gzipFromBytes;
      const body = gzipped ? await gzipAsync(batch.text, { level: GZIP_LEVEL }) : batch.text;
      await this.send(path, body, { method: 'POST', headers: gzipped ? { ...TEXT, 'content-encoding': 'gzip' } : TEXT, ...(signal ? { signal } : {}) });
      return { kind: 'written' };
    } catch (error) {
      return classify(error);
    }
  }

  /** One request with a byte body; resolves on a 2xx, rejects with the transport's error (HttpError for a status). */
  private send(path: string, body: Buffer, options: SendOptions): Promise<void> {
    return new Promise((resolve, reject) => {
      // The response body of a write is empty or a short error (read by the transport into its HttpError).
      this.client.transport.send(path, body as unknown as string, options, { complete: () => resolve(), error: reject });
    });
  }
}

type SendOptions = Parameters<Transport['send']>[2];

const TEXT = { 'content-type': 'text/plain; charset=utf-8' } as const;

function classify(error: unknown): WriteOutcome {
  if (error instanceof HttpError) {
    const reason = describeHttpError(error);
    if (BAD_DATA_STATUS.has(error.statusCode)) return { kind: 'rejected', status: error.statusCode, reason };
    return { kind: 'retry', status: error.statusCode, reason, retryAfterMs: error.retryAfter() };
  }
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return { kind: 'retry', reason: code && !message.includes(code) ? `${code}: ${message}` : message, retryAfterMs: 0 };
}

/** InfluxDB answers `{"code":"invalid","message":"..."}`; other servers send plain text. */
function describeHttpError(error: HttpError): string {
  const json = error.json as { message?: unknown } | undefined;
  const detail = typeof json?.message === 'string' ? json.message : (error.body ?? '').trim().slice(0, 500);
  const status = `HTTP ${error.statusCode}${error.statusMessage ? ` ${error.statusMessage}` : ''}`;
  return detail === '' ? status : `${status}: ${detail}`;
}
