/**
 * Bounded latency recording: a fixed reservoir (uniform sample once full), so a
 * long run cannot grow memory, and exact percentiles while it is not full.
 */
export interface LatencySummary {
  count: number;
  /** Microseconds. */
  p50: number;
  p99: number;
  max: number;
  /** Samples below zero: a clock error between processes, which makes the figures untrustworthy. */
  negative: number;
}

export class LatencyRecorder {
  private readonly samples: Float64Array;
  private seen = 0;
  private maxUs = 0;
  private negative = 0;

  constructor(capacity = 1 << 20) {
    this.samples = new Float64Array(capacity);
  }

  record(us: number): void {
    if (us > this.maxUs) this.maxUs = us;
    if (us < 0) this.negative++;
    if (this.seen < this.samples.length) {
      this.samples[this.seen] = us;
    } else {
      const slot = Math.floor(Math.random() * (this.seen + 1));
      if (slot < this.samples.length) this.samples[slot] = us;
    }
    this.seen++;
  }

  reset(): void {
    this.seen = 0;
    this.maxUs = 0;
    this.negative = 0;
  }

  summary(): LatencySummary {
    const n = Math.min(this.seen, this.samples.length);
    if (n === 0) return { count: 0, p50: Number.NaN, p99: Number.NaN, max: Number.NaN, negative: 0 };
    const sorted = this.samples.slice(0, n).sort();
    const at = (q: number) => sorted[Math.min(n - 1, Math.ceil(q * n) - 1)] ?? Number.NaN;
    return { count: this.seen, p50: at(0.5), p99: at(0.99), max: this.maxUs, negative: this.negative };
  }
}

/**
 * Milliseconds on CLOCK_MONOTONIC, which every process on the machine shares.
 * `process.hrtime()` reads that clock exactly and costs one small array rather
 * than a BigInt per message (that cost lands on the broker under test).
 * (Anchoring `performance.now()` to hrtime once was tried and drifted by up to
 * 1 ms between processes: the first `performance` access loads perf_hooks.)
 */
export function monotonicMs(): number {
  const [seconds, nanoseconds] = process.hrtime();
  return seconds * 1000 + nanoseconds / 1e6;
}

/** Offset of the send timestamp (float64, big-endian, `monotonicMs()`) in every bench payload. */
export const TIMESTAMP_OFFSET = 0;

const timestampBytes = new Uint8Array(8);
const timestampView = new DataView(timestampBytes.buffer);

/**
 * Microseconds since the timestamp a device wrote into `payload`, or NaN when
 * it has none. Called for every message inside the broker under test (the
 * in-process app runner): the 8 bytes are copied into one reused view rather
 * than a DataView made per message (about 100 → 20 ns).
 */
export function latencyUs(payload: Uint8Array, nowMs: number): number {
  if (payload.length < TIMESTAMP_OFFSET + 8) return Number.NaN;
  for (let i = 0; i < 8; i++) timestampBytes[i] = payload[TIMESTAMP_OFFSET + i] ?? 0;
  return (nowMs - timestampView.getFloat64(0)) * 1000;
}
