import type { Telemetry } from '../events.js';
import { telemetryLineMaxBytes, writeTelemetryLine, type Precision } from './points.js';

/**
 * The lines of one write request as UTF-8 bytes, newline-separated (line
 * protocol escapes newlines inside values, so a raw newline only ever ends a
 * line).
 *
 * Why bytes: a point waits in memory until its batch is written, long enough
 * to survive a couple of young-generation collections. As strings (a tree of
 * concatenated pieces per line) those points were promoted to the old
 * generation: 390 MB in 9 s of scenario 8, a quarter of the broker's CPU in
 * the garbage collector. As bytes outside the JS heap they cost the collector
 * nothing, and the request body is ready without a join.
 */
export class LineBatch {
  constructor(
    readonly text: Buffer,
    readonly count: number,
  ) {}

  static of(lines: readonly string[]): LineBatch {
    return new LineBatch(Buffer.from(lines.join('\n'), 'utf8'), lines.length);
  }

  /** Several batches as one, in order. */
  static concat(batches: readonly LineBatch[]): LineBatch {
    const nonEmpty = batches.filter((batch) => batch.count > 0);
    if (nonEmpty.length === 1 && nonEmpty[0]) return nonEmpty[0];
    const parts: Buffer[] = [];
    let count = 0;
    for (const batch of nonEmpty) {
      if (parts.length > 0) parts.push(NEWLINE);
      parts.push(batch.text);
      count += batch.count;
    }
    return new LineBatch(Buffer.concat(parts), count);
  }

  /** The request body. */
  body(): string {
    return this.text.toString('utf8');
  }

  /** The single lines again: only for the rare paths (a rejected batch being split, spooling). */
  lines(): string[] {
    return this.count === 0 ? [] : this.body().split('\n');
  }
}

const NEWLINE = Buffer.from('\n');
const MIN_CAPACITY = 16 * 1024;
/** A UTF-16 code unit never takes more than 3 bytes in UTF-8. */
const MAX_BYTES_PER_CODE_UNIT = 3;

/**
 * Points waiting in memory, encoded as they arrive into ready-made batches of
 * at most `batchSize` lines. Taking the oldest batch is O(1).
 */
export class LineBuffer {
  private sealed: LineBatch[] = [];
  private open: Buffer;
  private openBytes = 0;
  private openCount = 0;
  private count = 0;

  constructor(private readonly batchSize: number) {
    this.open = Buffer.allocUnsafe(MIN_CAPACITY);
  }

  get length(): number {
    return this.count;
  }

  push(lines: readonly string[]): void {
    for (const line of lines) {
      this.reserve(line.length * MAX_BYTES_PER_CODE_UNIT + 1);
      if (this.openCount > 0) this.open[this.openBytes++] = 0x0a;
      this.openBytes += this.open.write(line, this.openBytes, 'utf8');
      this.openCount++;
      this.count++;
      if (this.openCount >= this.batchSize) this.seal();
    }
  }

  /**
   * One telemetry point written straight into the buffer (points.ts
   * writeTelemetryLine); false, with nothing pushed, when it takes the
   * string path (telemetryToLine and `push`).
   */
  pushTelemetry(uid: string, telemetry: Telemetry, receivedAtMs: number, precision: Precision): boolean {
    this.reserve(telemetryLineMaxBytes(uid, telemetry) + 1);
    const separator = this.openCount > 0 ? 1 : 0;
    const written = writeTelemetryLine(this.open, this.openBytes + separator, uid, telemetry, receivedAtMs, precision);
    if (written < 0) return false;
    if (separator === 1) this.open[this.openBytes] = 0x0a;
    this.openBytes += separator + written;
    this.openCount++;
    this.count++;
    if (this.openCount >= this.batchSize) this.seal();
    return true;
  }

  /** The oldest batch (at most batchSize lines; empty when nothing is buffered). */
  takeBatch(): LineBatch {
    if (this.sealed.length === 0) this.seal();
    const batch = this.sealed.shift() ?? new LineBatch(Buffer.alloc(0), 0);
    this.count -= batch.count;
    return batch;
  }

  /** Everything, oldest first, as single lines. */
  takeAll(): string[] {
    this.seal();
    const all = this.sealed.flatMap((batch) => batch.lines());
    this.sealed = [];
    this.count = 0;
    return all;
  }

  /** Puts lines back in front of what is buffered (a failed spill returns them here). */
  unshift(lines: readonly string[]): void {
    if (lines.length === 0) return;
    const rest = this.takeAll();
    this.push(lines);
    this.push(rest);
  }

  private seal(): void {
    if (this.openCount === 0) return;
    this.sealed.push(new LineBatch(this.open.subarray(0, this.openBytes), this.openCount));
    // The next batch most likely needs about as much room as this one.
    this.open = Buffer.allocUnsafe(Math.max(MIN_CAPACITY, Math.ceil(this.openBytes * 1.125)));
    this.openBytes = 0;
    this.openCount = 0;
  }

  private reserve(bytes: number): void {
    if (this.openBytes + bytes <= this.open.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.open.length * 2, this.openBytes + bytes));
    this.open.copy(grown, 0, 0, this.openBytes);
    this.open = grown;
  }
}
