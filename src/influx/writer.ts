import { performance } from 'node:perf_hooks';
import type { Logger } from '../logger.js';
import { EveryNthPerKey, shouldLog } from '../util/log-sampling.js';
import { SerialQueue } from '../util/serial-queue.js';
import { WaitList } from '../util/wait-list.js';
import type { WriteOutcome } from './http-sink.js';
import type { DropReason, InfluxMetrics } from './metrics.js';
import type { Telemetry } from '../events.js';
import { telemetryToLine, type Precision } from './points.js';
import type { Spool, SpoolRecord } from './spool.js';
import { LineBatch, LineBuffer } from './line-buffer.js';
import { Settlement } from './settlement.js';

/** Where batches go; InfluxHttpSink in production. */
export interface LineSink {
  write(batch: LineBatch, precision: Precision, signal?: AbortSignal): Promise<WriteOutcome>;
}

export interface InfluxWriterOptions {
  sink: LineSink;
  spool: Spool;
  precision: Precision;
  batchSize: number;
  flushIntervalMs: number;
  /** Points held in memory; beyond that the buffer moves to the spool. */
  maxBufferPoints: number;
  /** Attempts for a batch held in memory before it moves to the spool. */
  maxRetries: number;
  retryInitialMs: number;
  retryMaxMs: number;
  logger: Logger;
  metrics: InfluxMetrics;
  /** For the retry jitter; Math.random by default. */
  random?: () => number;
  /** Told the newest ingest-log sequence number whose points are all written, spooled or dropped (see Settlement). */
  onSettled?: (seq: number) => void;
}

const MESSAGES: Record<DropReason, string> = {
  invalid: 'point cannot be written to InfluxDB; dropped it',
  rejected: 'InfluxDB rejected a point; dropped it',
  spool_full: 'the Influx spool is full; dropped points',
};

/** The batch being written: from the buffer, or the spool's oldest record. */
interface HeadBatch {
  /** Lines not yet confirmed; shrinks when part of a rejected batch was written. */
  batch: LineBatch;
  precision: Precision;
  /** Set when the batch came from the spool: acknowledged once every line is done. */
  record?: SpoolRecord;
  attempts: number;
  /** Points of a batch from memory not yet settled (the written part of a partly written batch included). */
  unsettled: number;
}

/**
 * Batches points for InfluxDB and makes sure none is lost on the way.
 *
 * Order and durability: the spool (oldest) comes before the memory buffer
 * (newest). While the spool holds anything, new points join it at each flush
 * and are written from there, so they reach InfluxDB in the order they came.
 *
 * - Healthy: a batch is written when `batchSize` points are buffered or
 *   `flushIntervalMs` has passed.
 * - Server down, 5xx, 429 (and 401/403/404): the same batch is retried with
 *   exponential back-off and jitter (Retry-After is honoured). After
 *   `maxRetries` attempts the batch and the buffer move to the spool, which is
 *   retried at most every `retryMaxMs` until the server is back.
 * - Buffer full while the server keeps up with no failures: the producer
 *   waits until a batch has been written (back-pressure through the broker to
 *   the devices). Spooling there would only move the backlog to disk and make
 *   every later point pay for the disk too.
 * - Buffer full while writes fail or the spool holds data: the buffer moves
 *   to the spool at once (the producer waits for the disk).
 * - Spool full: points are dropped, counted as `spool_full` and logged.
 * - 400/413/422: the batch is split in halves until the bad points are found;
 *   those are dropped, counted as `rejected` and logged with the server's
 *   reason; the good ones are written.
 * - Stop: one last attempt for what is in memory while the time allows (only
 *   when the server looked healthy), then the rest goes to the spool.
 */
export class InfluxWriter {
  private readonly buffer: LineBuffer;
  /** Producers waiting in accept() for the buffer to drain below maxBufferPoints. */
  private readonly roomWaiters = new WaitList();
  private readonly fullBatch: number;
  /** Points taken out of memory by spill() and not yet counted as spooled or dropped. */
  private spilling = 0;
  private head: HeadBatch | undefined;
  private failures = 0;
  private retryAt = 0;
  private lastFlushAt = Date.now();
  private outageStartedAt = 0;
  private readonly lock = new SerialQueue();
  private readonly abort = new AbortController();
  private wakeUp: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private closing = false;
  private readonly dropsLogged = new EveryNthPerKey<DropReason>(100);
  private readonly random: () => number;
  private readonly settlement: Settlement;

  constructor(private readonly options: InfluxWriterOptions) {
    this.random = options.random ?? Math.random;
    this.settlement = new Settlement(options.onSettled ?? (() => undefined));
    this.buffer = new LineBuffer(options.batchSize);
    // A buffer limit below the batch size must not wait for the flush interval once full.
    this.fullBatch = Math.min(options.batchSize, options.maxBufferPoints);
  }

  /** Points in memory, the batch being written and points on their way to the spool included. */
  get bufferedPoints(): number {
    return this.buffer.length + this.spilling + (this.head && !this.head.record ? this.head.batch.count : 0);
  }

  async start(): Promise<void> {
    if (this.loop) return;
    await this.options.spool.open();
    if (!this.options.spool.isEmpty) {
      this.options.logger.info({ spoolBytes: this.options.spool.pendingBytes }, 'replaying points spooled by an earlier run');
    }
    this.loop = this.run();
  }

  /**
   * Takes serialized points. Returns nothing when they are buffered, or a
   * promise when the buffer is full: it resolves once there is room again (or
   * the points are spooled). Every telemetry message comes through here, so
   * the common case allocates no promise.
   */
  accept(lines: readonly string[], seq?: number): Promise<void> | undefined {
    if (this.closing || !this.loop) throw new Error('the Influx writer is not running');
    this.settlement.accepted(lines.length, seq);
    if (lines.length === 0) return undefined;
    this.options.metrics.accepted += lines.length;
    const wasEmpty = this.buffer.length === 0;
    this.buffer.push(lines);
    return this.afterPush(wasEmpty);
  }

  /**
   * `accept` for one device telemetry point, written into the buffer as
   * bytes without building its line as a string first (points.ts). Throws
   * InvalidPointError as telemetryToLine does, before anything is taken.
   */
  acceptTelemetry(uid: string, telemetry: Telemetry, receivedAtMs: number, precision: Precision, seq?: number): Promise<void> | undefined {
    if (this.closing || !this.loop) throw new Error('the Influx writer is not running');
    const wasEmpty = this.buffer.length === 0;
    if (!this.buffer.pushTelemetry(uid, telemetry, receivedAtMs, precision)) this.buffer.push([telemetryToLine(uid, telemetry, receivedAtMs, precision)]);
    this.settlement.accepted(1, seq);
    this.options.metrics.accepted++;
    return this.afterPush(wasEmpty);
  }

  /** After points went into the buffer: wakes the loop for a first point or a full batch; the back-pressure promise when full. */
  private afterPush(wasEmpty: boolean): Promise<void> | undefined {
    if (wasEmpty || this.buffer.length >= this.fullBatch) {
      // The loop sleeps without a deadline while there is nothing to do, or until the flush interval.
      this.wake();
    }
    return this.buffer.length >= this.options.maxBufferPoints ? this.makeRoom() : undefined;
  }

  private async makeRoom(): Promise<void> {
    while (this.buffer.length >= this.options.maxBufferPoints) {
      if (this.keepingUp()) await this.roomWaiters.wait();
      else await this.lock.run(() => this.spill('memory buffer full'));
    }
  }

  /** Writes succeed and nothing waits on disk: a full buffer only means producers are faster than the server. */
  private keepingUp(): boolean {
    return !this.closing && this.failures === 0 && this.options.spool.isEmpty;
  }

  /** After every step: producers re-check the buffer (it shrank, or the writer now fails and they spool). */
  private notifyRoom(): void {
    this.roomWaiters.wakeAll();
  }

  /** Stops within about `timeoutMs`: flushes what it can, spools the rest, closes the spool. Safe twice. */
  async stop(timeoutMs: number): Promise<void> {
    const loop = this.loop;
    if (!loop || this.closing) return;
    this.closing = true;
    const deadline = Date.now() + timeoutMs;
    // A write still running at the deadline is cut off; its batch goes to the spool.
    const cutOff = setTimeout(() => this.abort.abort(), timeoutMs);
    try {
      this.wake();
      await loop;
      await this.lock.run(() => this.finalFlush(deadline));
    } finally {
      clearTimeout(cutOff);
      await this.options.spool.close();
    }
  }

  private async run(): Promise<void> {
    while (!this.closing) {
      const waitMs = this.dueInMs();
      if (waitMs > 0) {
        await this.sleep(waitMs);
        continue;
      }
      try {
        await this.lock.run(() => this.step());
        this.notifyRoom();
      } catch (error) {
        // Disk trouble in the spool, most likely. Keep the points in memory and try again later.
        this.failures++;
        this.retryAt = Date.now() + this.backoffMs(0);
        this.options.logger.error({ err: error }, 'Influx writer step failed; trying again after a back-off');
        this.notifyRoom();
      }
    }
    // Producers still waiting now spool their points (keepingUp() is false while closing).
    this.notifyRoom();
  }

  private dueInMs(): number {
    const now = Date.now();
    const spoolEmpty = this.options.spool.isEmpty;
    let flushIn = Number.POSITIVE_INFINITY;
    if (this.buffer.length >= this.fullBatch) flushIn = 0;
    else if (this.buffer.length > 0) flushIn = Math.max(0, this.lastFlushAt + this.options.flushIntervalMs - now);
    if (this.retryAt > now) {
      // While backing off, new points still join the spool on time when it holds older ones.
      return spoolEmpty ? this.retryAt - now : Math.min(this.retryAt - now, flushIn);
    }
    if (this.head || !spoolEmpty) return 0;
    return flushIn;
  }

  /** One unit of work: pick the oldest batch and try to write it. Runs under the lock. */
  private async step(): Promise<void> {
    const spool = this.options.spool;
    const now = Date.now();
    const flushDue = this.buffer.length >= this.fullBatch || (this.buffer.length > 0 && now - this.lastFlushAt >= this.options.flushIntervalMs);
    if (this.retryAt > now) {
      // Backing off: no write now, only new points to the spool behind older ones.
      if (!spool.isEmpty && flushDue) {
        this.lastFlushAt = now;
        await this.spill();
      }
      return;
    }
    if (!this.head) {
      if (!spool.isEmpty) {
        const record = await spool.peek();
        if (!record) {
          if (!spool.isEmpty) {
            this.options.logger.error({ spoolBytes: spool.pendingBytes }, 'the spool reports data but has no readable record; pausing');
            this.retryAt = Date.now() + this.options.retryMaxMs;
          }
          return;
        }
        this.head = { batch: LineBatch.of(record.lines), precision: record.precision, record, attempts: 0, unsettled: 0 };
      } else if (flushDue) {
        this.lastFlushAt = now;
        this.head = this.memoryBatch();
      } else {
        return;
      }
    }
    const outcome = await this.deliver(this.head);
    if (outcome) await this.onRetryable(this.head, outcome);
    if (!spool.isEmpty && flushDue) {
      // Older points wait in the spool: queue up behind them, on disk. After the
      // write above, so a batch it took out of a full spool makes room first.
      this.lastFlushAt = now;
      await this.spill();
    }
  }

  /**
   * Writes a batch. Rejected data is split until the bad points are isolated.
   * Returns undefined when every line is done (written or dropped), else the
   * failure that calls for a retry (`batch.batch` then holds what is left).
   */
  private async deliver(batch: HeadBatch): Promise<Extract<WriteOutcome, { kind: 'retry' }> | undefined> {
    const parts: LineBatch[] = [batch.batch];
    batch.attempts++;
    for (;;) {
      const part = parts[0];
      if (part === undefined) break;
      const started = performance.now();
      const outcome = await this.writeOnce(part, batch.precision);
      this.options.metrics.writeSeconds.observe({ outcome: outcome.kind }, (performance.now() - started) / 1000);
      if (outcome.kind === 'retry') {
        batch.batch = LineBatch.concat(parts);
        return outcome;
      }
      parts.shift();
      if (outcome.kind === 'written') {
        this.options.metrics.written.inc(part.count);
      } else if (part.count === 1) {
        this.drop('rejected', 1, { status: outcome.status, reason: outcome.reason, line: part.body().slice(0, 300) });
      } else {
        const lines = part.lines();
        const middle = Math.ceil(lines.length / 2);
        parts.unshift(LineBatch.of(lines.slice(0, middle)), LineBatch.of(lines.slice(middle)));
      }
    }
    if (batch.record) await this.options.spool.ack(batch.record);
    this.head = undefined;
    this.settlement.settled(batch.unsettled);
    if (this.failures > 0) {
      this.options.logger.info({ failedAttempts: this.failures, downMs: Date.now() - this.outageStartedAt }, 'InfluxDB writes succeed again');
    }
    this.failures = 0;
    this.retryAt = 0;
    return undefined;
  }

  /**
   * One request with its own abort signal, tied to the writer's: the HTTP
   * client adds a listener per request to the signal it gets, so sharing the
   * writer's signal would pile those up.
   */
  private async writeOnce(batch: LineBatch, precision: Precision): Promise<WriteOutcome> {
    const request = new AbortController();
    const cancel = () => request.abort();
    if (this.abort.signal.aborted) request.abort();
    else this.abort.signal.addEventListener('abort', cancel, { once: true });
    try {
      return await this.options.sink.write(batch, precision, request.signal);
    } finally {
      this.abort.signal.removeEventListener('abort', cancel);
    }
  }

  private async onRetryable(batch: HeadBatch, outcome: Extract<WriteOutcome, { kind: 'retry' }>): Promise<void> {
    this.failures++;
    if (this.failures === 1) this.outageStartedAt = Date.now();
    this.options.metrics.retried.inc(batch.batch.count);
    const delayMs = this.backoffMs(outcome.retryAfterMs);
    this.retryAt = Date.now() + delayMs;
    const details = { status: outcome.status, reason: outcome.reason, points: batch.batch.count, failedAttempts: this.failures, retryInMs: delayMs };
    // Refusals such as 401 need an operator; say so each time. Outages: the first failure, then every 10th.
    const refused = outcome.status === 401 || outcome.status === 403 || outcome.status === 404;
    if (refused) this.options.logger.error(details, 'InfluxDB refuses the writes (check url, org, bucket and token); points are kept and retried');
    else if (shouldLog(this.failures, 10)) this.options.logger.warn(details, 'InfluxDB write failed; retrying');
    if (!batch.record && batch.attempts > this.options.maxRetries) {
      this.options.logger.warn({ points: this.bufferedPoints }, 'InfluxDB still unavailable after the configured retries; moving points to the spool');
      await this.spill();
    }
  }

  /** Moves the in-memory points (the batch being retried first) to the spool, in order. Runs under the lock. */
  private async spill(why?: string): Promise<void> {
    const lines: string[] = [];
    if (this.head && !this.head.record) {
      // What of the batch was written before a retry failed is done; the rest is spooled below, first.
      this.settlement.settled(this.head.unsettled - this.head.batch.count);
      for (const line of this.head.batch.lines()) lines.push(line);
      this.head = undefined;
    }
    for (const line of this.buffer.takeAll()) lines.push(line);
    if (lines.length === 0) return;
    if (why) this.options.logger.warn({ points: lines.length }, `${why}; moving points to the spool`);
    let start = 0;
    try {
      for (; start < lines.length; start += this.options.batchSize) {
        // Still in memory until counted below, so buffered + spooled + dropped always adds up.
        this.spilling = lines.length - start;
        const chunk = lines.slice(start, start + this.options.batchSize);
        if (await this.options.spool.append(chunk, this.options.precision)) this.options.metrics.spooled.inc(chunk.length);
        else this.drop('spool_full', chunk.length, { spoolBytes: this.options.spool.pendingBytes });
        this.settlement.settled(chunk.length);
      }
    } catch (error) {
      // The disk failed us: what was not spooled goes back to memory, ahead of newer points.
      this.buffer.unshift(lines.slice(start));
      throw error;
    } finally {
      this.spilling = 0;
    }
  }

  private memoryBatch(): HeadBatch {
    const batch = this.buffer.takeBatch();
    return { batch, precision: this.options.precision, attempts: 0, unsettled: batch.count };
  }

  /** At stop: one attempt per batch while the server looked healthy and time remains, then spool the rest. */
  private async finalFlush(deadline: number): Promise<void> {
    const healthy = this.options.spool.isEmpty && this.failures === 0;
    while (healthy && !this.abort.signal.aborted && Date.now() < deadline) {
      if (!this.head) {
        if (this.buffer.length === 0) break;
        this.head = this.memoryBatch();
      }
      const outcome = await this.deliver(this.head);
      if (outcome) {
        this.options.logger.warn({ reason: outcome.reason }, 'InfluxDB write failed during shutdown; spooling the rest');
        break;
      }
    }
    await this.spill();
  }

  /** Counts points given up and logs the first of each reason, then every 100th. */
  drop(reason: DropReason, points: number, details: Record<string, unknown>): void {
    this.options.metrics.dropped.inc({ reason }, points);
    const { count, log } = this.dropsLogged.note(reason);
    if (log) {
      const message = MESSAGES[reason];
      this.options.logger.warn({ ...details, dropReason: reason, points, occurrences: count }, message);
    }
  }

  /** Exponential with "equal jitter": half fixed, half random, so instances do not retry in step. */
  private backoffMs(retryAfterMs: number): number {
    const { retryInitialMs, retryMaxMs } = this.options;
    const exponential = Math.min(retryMaxMs, retryInitialMs * 2 ** Math.min(30, Math.max(0, this.failures - 1)));
    const jittered = exponential / 2 + (exponential / 2) * this.random();
    return Math.round(Math.min(retryMaxMs, Math.max(jittered, retryAfterMs)));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(timer);
        this.wakeUp = undefined;
        resolve();
      };
      if (Number.isFinite(ms)) timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }

  private wake(): void {
    this.wakeUp?.();
  }
}
