import { HttpError, InfluxDB } from '@influxdata/influxdb-client';
import type { LineBatch } from './line-buffer.js';
import type { Precision } from './points.js';

export interface InfluxTarget {
  url: string;
  org: string;
  bucket: string;
  token: string;
  timeoutMs: number;
}

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

  constructor(target: InfluxTarget) {
    this.client = new InfluxDB({ url: target.url, token: target.token === '' ? undefined : target.token, timeout: target.timeoutMs });
    this.org = target.org;
    this.bucket = target.bucket;
  }

  async write(batch: LineBatch, precision: Precision, signal?: AbortSignal): Promise<WriteOutcome> {
    const query = new URLSearchParams({ bucket: this.bucket, precision });
    // InfluxDB 2 needs the org; servers speaking only the v2 write API (VictoriaMetrics, Influx 1.8) do not.
    if (this.org !== '') query.set('org', this.org);
    try {
      await this.client.transport.request(`/api/v2/write?${query.toString()}`, batch.body(), {
        method: 'POST',
        headers: { 'content-type': 'text/plain; charset=utf-8' },
        gzipThreshold: 64 * 1024,
        ...(signal ? { signal } : {}),
      });
      return { kind: 'written' };
    } catch (error) {
      return classify(error);
    }
  }
}

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
