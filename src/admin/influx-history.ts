import type { TelemetrySeries } from './telemetry-rings.js';

/** Where the device page's history is read: the [influx] section's server and bucket. */
export interface InfluxHistoryTarget {
  url: string;
  bucket: string;
  /** "" sends no Authorization header (InfluxDB 1.x without auth). */
  token: string;
  timeoutMs: number;
}

/** The bounds of one answer, the same as the embedded recent store's (telemetry-rings.ts). */
export interface InfluxHistoryBounds {
  windowMs: number;
  /** GROUP BY time() interval: one point per field per slot, the newest value in it. */
  slotMs: number;
  pointsPerField: number;
  fieldsPerDevice: number;
}

export const DEFAULT_INFLUX_HISTORY_BOUNDS: InfluxHistoryBounds = { windowMs: 60 * 60 * 1000, slotMs: 10_000, pointsPerField: 360, fieldsPerDevice: 16 };

/** Longest answer body read; 16 fields x 360 rows of numbers is about 100 KB. */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
/** The measurement and tag the Influx runner writes (src/influx/points.ts; not imported: runners do not import each other). */
const MEASUREMENT = 'telemetry';
const DEVICE_TAG = 'id';
const SELECTOR_PREFIX = 'last_';

/** An InfluxQL string literal: backslash and single quote escaped. */
export function influxqlString(value: string): string {
  return `'${value.replace(/[\\']/g, (char) => `\\${char}`)}'`;
}

/**
 * The query for one device's last hour: `last(*)` per 10 s slot, so a field
 * has at most one point per slot (the newest value, as the recent store keeps
 * it) and a device reporting every second still shows the whole hour. A LIMIT
 * would count rows, not slots: the last 360 messages of a chatty device cover
 * only six minutes. Slots are aligned to the epoch, so the window touches 361
 * of them; the oldest is dropped when all are filled (see parseHistory).
 */
export function historyQuery(uid: string, from: number, to: number, slotMs: number): string {
  return `SELECT last(*) FROM "${MEASUREMENT}" WHERE "${DEVICE_TAG}" = ${influxqlString(uid)} AND time > ${Math.floor(from)}ms AND time <= ${Math.floor(to)}ms GROUP BY time(${slotMs}ms) fill(none)`;
}

interface QueryAnswer {
  error?: unknown;
  results?: Array<{ error?: unknown; series?: Array<{ columns?: unknown; values?: unknown }> }>;
}

/**
 * The numeric fields of an InfluxQL answer (`epoch=ms`), oldest first, each
 * cut to its newest `pointsPerField` points; at most `fieldsPerDevice` fields
 * (by name). Strings and booleans (`version`) are left out. An `error` in the
 * answer throws.
 */
export function parseHistory(answer: unknown, bounds: Pick<InfluxHistoryBounds, 'pointsPerField' | 'fieldsPerDevice'>): Record<string, Array<[number, number]>> {
  const body = answer as QueryAnswer | null;
  if (typeof body?.error === 'string') throw new Error(body.error);
  const result = body?.results?.[0];
  if (!result) throw new Error('InfluxDB answered without results');
  if (typeof result.error === 'string') throw new Error(result.error);
  const fields = new Map<string, Array<[number, number]>>();
  for (const series of result.series ?? []) {
    const columns = Array.isArray(series.columns) ? (series.columns as unknown[]) : [];
    const rows = Array.isArray(series.values) ? (series.values as unknown[]) : [];
    const timeColumn = columns.indexOf('time');
    for (const row of rows) {
      if (!Array.isArray(row)) continue;
      const at: unknown = row[timeColumn];
      if (typeof at !== 'number') throw new Error('InfluxDB answered a time that is not a number (epoch=ms ignored?)');
      columns.forEach((column, index) => {
        const value: unknown = row[index];
        if (index === timeColumn || typeof column !== 'string' || typeof value !== 'number' || !Number.isFinite(value)) return;
        const name = column.startsWith(SELECTOR_PREFIX) ? column.slice(SELECTOR_PREFIX.length) : column;
        let points = fields.get(name);
        if (!points) fields.set(name, (points = []));
        points.push([at, value]);
      });
    }
  }
  const kept: Record<string, Array<[number, number]>> = {};
  for (const name of [...fields.keys()].sort().slice(0, bounds.fieldsPerDevice)) {
    const points = (fields.get(name) ?? []).sort((a, b) => a[0] - b[0]);
    kept[name] = points.slice(-bounds.pointsPerField);
  }
  return kept;
}

/**
 * Reads a device's telemetry history from InfluxDB with InfluxQL through the
 * v1 `/query` endpoint: InfluxDB 1.x serves it natively, InfluxDB 2.x through
 * its 1.x compatibility API, with the bucket name as the database (virtual
 * DBRP mapping) and `Authorization: Token` (README "Telemetry and InfluxDB").
 * stop() aborts the queries in flight.
 */
export class InfluxHistory {
  private readonly stopping = new AbortController();

  constructor(
    private readonly target: InfluxHistoryTarget,
    private readonly bounds: InfluxHistoryBounds = DEFAULT_INFLUX_HISTORY_BOUNDS,
  ) {}

  /** The device's numeric fields over the window ending at `now`; throws when InfluxDB fails, times out or answers an error. */
  async read(uid: string, now: number): Promise<TelemetrySeries> {
    const from = now - this.bounds.windowMs;
    const params = new URLSearchParams({ db: this.target.bucket, q: historyQuery(uid, from, now, this.bounds.slotMs), epoch: 'ms' });
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.target.token !== '') headers.authorization = `Token ${this.target.token}`;
    const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(this.target.timeoutMs)]);
    let response: Response;
    try {
      response = await fetch(`${this.target.url.replace(/\/+$/, '')}/query?${params.toString()}`, { headers, signal });
    } catch (error) {
      throw new Error(`InfluxDB query failed: ${describe(error, this.target.timeoutMs)}`, { cause: error });
    }
    const text = await readBounded(response, signal);
    if (!response.ok) throw new Error(`InfluxDB query failed: HTTP ${response.status}${errorOf(text)}`);
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch (error) {
      throw new Error(`InfluxDB query answered something that is not JSON (HTTP ${response.status})`, { cause: error });
    }
    return { from, to: now, fields: parseHistory(answer, this.bounds) };
  }

  stop(): void {
    this.stopping.abort(new Error('the admin runner is stopping'));
  }
}

async function readBounded(response: Response, signal: AbortSignal): Promise<string> {
  const length = Number(response.headers.get('content-length') ?? 0);
  if (length > MAX_ANSWER_BYTES) {
    await response.body?.cancel();
    throw new Error(`InfluxDB query answer too large (${length} bytes)`);
  }
  try {
    const text = await response.text();
    if (text.length > MAX_ANSWER_BYTES) throw new Error(`InfluxDB query answer too large (${text.length} characters)`);
    return text;
  } catch (error) {
    throw new Error(`InfluxDB query failed reading the answer: ${describe(error, signal.aborted ? 0 : undefined)}`, { cause: error });
  }
}

/** ` : <message>` of a JSON error body (`{"error": "..."}` in 1.x, `{"message": "..."}` in 2.x), else its start. */
function errorOf(text: string): string {
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown };
    const message = typeof body.error === 'string' ? body.error : typeof body.message === 'string' ? body.message : undefined;
    if (message !== undefined) return `: ${message}`;
  } catch {
    // Not JSON: the plain text below says more than the parse error.
  }
  const plain = text.trim().slice(0, 200);
  return plain === '' ? '' : `: ${plain}`;
}

function describe(error: unknown, timeoutMs: number | undefined): string {
  if (error instanceof DOMException && error.name === 'TimeoutError') return `no answer within ${timeoutMs ?? '?'} ms`;
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  if (typeof cause?.code === 'string') return `${cause.code}${typeof cause.message === 'string' ? `: ${cause.message}` : ''}`;
  return error instanceof Error ? error.message : String(error);
}
