/*
 * Combines the LevelDB writes of one event-loop turn into one `batch()`.
 *
 * aedes-persistence-level writes each step of a persistent session's QoS 1
 * message on its own (queue it, record its packet id twice, delete both at
 * PUBACK): every put and del was one trip through libuv's thread pool and one
 * append to LevelDB's log (bench scenario 10: 317 µs of broker CPU per
 * message). Here the writes issued until the check phase of the loop turn
 * (a `setImmediate`) wait in one pending batch and are written together.
 *
 * - A caller's promise settles only when the batch holding its writes is
 *   written (resolved) or has failed (rejected with the batch's error):
 *   what a caller awaited is in LevelDB's log (written, not fsynced, as
 *   with a lone put), so a PUBACK sent after it still survives kill -9.
 * - One caller's writes (one `write(ops)`) are never split between batches,
 *   so a multi-key update stays atomic.
 * - One batch is written at a time: writes issued meanwhile wait for it and
 *   go out together when it completes. Only a pending batch that reaches
 *   `maxOps` is written at once, beside the one in flight, so a batch holds at
 *   most `maxOps` operations plus one caller's last write, and waiting
 *   callers are bounded by what the broker has in flight (aedes' windows).
 *   A write issued after another caller's promise settled goes into a later
 *   batch, so writes that depend on each other keep their order.
 * - Until its batch is written, a write is visible to `pendingValue(key)`, so a
 *   read issued in between sees it (read-your-writes, as LevelDB gives).
 */

export type WriteOp = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

/** What the combiner needs of the database: an atomic batch of puts and dels. */
export interface BatchTarget {
  batch(ops: WriteOp[]): Promise<void>;
}

export interface WriteCombinerOptions {
  /** Operations per batch before it is written without waiting for the turn to end. */
  maxOps: number;
}

/** A read of `pendingValue(key)`: the value a written-but-unconfirmed put holds, or undefined for a del. */
export type PendingValue = { value: Uint8Array | undefined } | undefined;

interface Waiter {
  resolve(): void;
  reject(error: unknown): void;
}

interface Batch {
  ops: WriteOp[];
  waiters: Waiter[];
  /** Called when the batch has settled either way (see `flushed`). */
  onSettled: Array<() => void>;
}

export class WriteCombiner {
  private pending: Batch | undefined;
  /** Batches being written: one, or more when a full batch was written beside it. */
  private readonly inFlight = new Set<Batch>();
  private turnScheduled = false;
  /** The newest value each key's not yet written op gives it (and the batch that holds that op). */
  private readonly unwritten = new Map<string, { value: Uint8Array | undefined; batch: Batch }>();

  constructor(
    private readonly target: BatchTarget,
    private readonly options: WriteCombinerOptions,
  ) {
    if (!Number.isInteger(options.maxOps) || options.maxOps < 1) throw new RangeError(`maxOps must be a positive integer (got ${options.maxOps})`);
  }

  /** Queues `ops` as one unit; resolves when the batch holding them is written. */
  write(ops: WriteOp[]): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    const batch = (this.pending ??= { ops: [], waiters: [], onSettled: [] });
    for (const op of ops) {
      batch.ops.push(op);
      this.unwritten.set(op.key, { value: op.type === 'put' ? op.value : undefined, batch });
    }
    const done = new Promise<void>((resolve, reject) => batch.waiters.push({ resolve, reject }));
    if (batch.ops.length >= this.options.maxOps) this.writePending();
    else if (!this.turnScheduled) {
      this.turnScheduled = true;
      setImmediate(() => {
        this.turnScheduled = false;
        if (this.inFlight.size === 0) this.writePending();
      });
    }
    return done;
  }

  /** The value of `key` a queued or in-flight write gives it; undefined when none touches it. */
  pendingValue(key: string): PendingValue {
    const entry = this.unwritten.get(key);
    return entry === undefined ? undefined : { value: entry.value };
  }

  /** Operations queued or being written. */
  get size(): number {
    return this.unwritten.size;
  }

  /**
   * Resolves when every write issued before this call has settled, written or
   * failed (for a clear that must follow them, or a close); later writes are
   * not waited for, so a steady stream of them cannot hold it back.
   */
  flushed(): Promise<void> {
    const batches = [...this.inFlight];
    if (this.pending !== undefined) batches.push(this.pending);
    return Promise.all(batches.map((batch) => new Promise<void>((resolve) => batch.onSettled.push(resolve)))).then(() => undefined);
  }

  private writePending(): void {
    const batch = this.pending;
    if (batch === undefined) return;
    this.pending = undefined;
    this.inFlight.add(batch);
    let written: Promise<void>;
    try {
      written = this.target.batch(batch.ops);
    } catch (error) {
      written = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    written.then(
      () => this.settle(batch, undefined),
      (error: unknown) => this.settle(batch, error ?? new Error('batch write failed')),
    );
  }

  private settle(batch: Batch, error: unknown): void {
    this.inFlight.delete(batch);
    for (const op of batch.ops) {
      if (this.unwritten.get(op.key)?.batch === batch) this.unwritten.delete(op.key);
    }
    for (const waiter of batch.waiters) {
      if (error === undefined) waiter.resolve();
      else waiter.reject(error);
    }
    for (const resolve of batch.onSettled) resolve();
    // What waited for this batch goes out now, in one write.
    if (this.inFlight.size === 0) this.writePending();
  }
}
