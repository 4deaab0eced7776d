import { mkdir } from 'node:fs/promises';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { DeviceEvent, LogPosition } from '../events.js';
import type { Logger } from '../logger.js';
import { everyNth } from '../util/log-sampling.js';
import { WaitList } from '../util/wait-list.js';
import { readCursors, writeCursors, type Cursors } from './cursors.js';
import { loadLogId } from './log-id.js';
import type { DeviceMessage } from './record.js';
import { SegmentLog, SPACED_BELOW_RECORDS, type BatchStats, type Durability, type LogReader, type SegmentLogOptions } from './segment-log.js';
import { LEASE_SIZE, readLease, writeLease } from './seq-lease.js';

export type Acknowledge = () => void;

export interface IngestLogOptions {
  dir: string;
  durability: Durability;
  /** Bytes on disk (segments plus what is being written) past which appends wait (back-pressure). */
  maxBytes: number;
  segmentBytes: number;
  /** The shortest time between the starts of two disk writes (ms): SegmentLogOptions.commitSpacingMs. */
  commitSpacingMs?: number;
  /** How long a batch of QoS 0 messages only may wait for its write at light load (ms): SegmentLogOptions.unawaitedDelayMs. */
  qos0CommitDelayMs?: number;
  /** How often committed cursors are saved and finished segments deleted. */
  cursorSaveMs?: number;
  logger: Logger;
  metrics: Registry;
  /** Numbers per sequence lease (default LEASE_SIZE; tests use small ones). */
  leaseSize?: number;
  /** Tests only: how a batch is written (slow or failing writes). */
  writeAt?: SegmentLogOptions['writeAt'];
}

/** What the broker tells the log about its durable runners, at each cursor save. */
export interface CursorSource {
  /** Committed sequence number of each registered durable runner. */
  committed(): Map<string, number>;
  /** The same for durable runners that have unregistered (they still commit while they stop). */
  retired(): Map<string, number>;
}

/** The per-runner view of `/metrics`, the admin protocol and the dashboard. */
export interface IngestStats {
  logId: string;
  durability: Durability;
  headSeq: number;
  firstSeq: number;
  bytes: number;
  maxBytes: number;
  segments: number;
  full: boolean;
  failing: boolean;
  runners: { name: string; committed: number; lagEvents: number; registered: boolean }[];
}

class Position implements LogPosition {
  constructor(
    private readonly logId: string,
    readonly seq: number,
    readonly replay: boolean,
  ) {}

  get id(): string {
    return `${this.logId}:${this.seq}`;
  }
}

/**
 * The durable ingest log under the event broker (README "Durable ingest"):
 * every device message is appended here before its PUBACK, and each durable
 * runner is fed from it and keeps a cursor, so a crash replays what a runner
 * had not yet dealt with.
 *
 * - `append` takes a decoded event with its raw message and numbers it; the
 *   broker hands it to the runners at once, and its acknowledgement runs
 *   once its batch is on disk (so the PUBACK still means durable, while the
 *   runners do not wait for the disk). A crash can lose an event a runner
 *   has seen (its device was not acknowledged and sends it again); its
 *   number is never used again (see seq-lease.ts), and cursors are saved no
 *   further than the durable head.
 * - Cursors are saved every `cursorSaveMs`; a segment is deleted once every
 *   cursor has passed it. Cursors of runners that are not registered (a
 *   runner removed from the config, or one added after start) are kept, but
 *   when the log is full they are dropped first rather than holding devices
 *   back, logged at warn and counted.
 * - Size limit: past `maxBytes`, or while a write fails, `hasRoom` is false;
 *   devices are then held back unacknowledged (the gateway's pause), never
 *   dropped.
 */
export class IngestLog {
  private readonly segments: SegmentLog;
  private id = '';
  private recoveredHead = 0;
  /** Numbers skipped at open after a crash (nothing is in them): left out of lag counts. */
  private gap = { first: 0, last: -1 };
  /** The highest number that may be handed out (on disk in `seq-lease`). */
  private leaseEnd = 0;
  private extendingLease: Promise<void> | undefined;
  private leaseRetry: NodeJS.Timeout | undefined;
  private readonly logLeaseError = everyNth(100);
  /** Acknowledgements of appended records not yet durable, in sequence order from `pendingFirst`. */
  private pendingAcks: (Acknowledge | undefined)[] = [];
  private pendingFirst = 1;
  private readonly durableWaiters = new WaitList();
  private stored: Cursors = {};
  /** Set when the cursors file could not be read: where every runner without a cursor starts. */
  private fallbackCursor: number | undefined;
  /** Final positions of runners that unregistered, not yet saved. */
  private readonly retired = new Map<string, number>();
  private source: CursorSource | undefined;
  private saveTimer: NodeJS.Timeout | undefined;
  private saving: Promise<void> = Promise.resolve();
  private readonly roomWaiters = new WaitList();
  private opened = false;
  private readonly metrics: ReturnType<typeof createMetrics>;
  private readonly logWriteError = everyNth(100);
  private readonly leaseSize: number;

  /** Set by the broker: told after each batch is durable and acknowledged. */
  onDurable: () => void = () => undefined;

  constructor(private readonly options: IngestLogOptions) {
    this.leaseSize = options.leaseSize ?? LEASE_SIZE;
    this.metrics = createMetrics(options.metrics, this);
    this.segments = new SegmentLog({
      dir: options.dir,
      durability: options.durability,
      segmentBytes: options.segmentBytes,
      commitSpacingMs: options.commitSpacingMs,
      unawaitedDelayMs: options.qos0CommitDelayMs,
      onDamage: (report) => {
        this.metrics.damaged.inc({ what: report.reason === 'torn or damaged tail cut' ? 'torn_tail' : 'record' });
        this.metrics.damagedBytes.inc(report.bytes);
        options.logger.error(report, 'damaged data in the ingest log (a write torn by a crash, or a damaged disk); skipped it');
      },
      onWriteError: (error, attempt) => {
        this.metrics.writeErrors.inc();
        if (this.logWriteError()) options.logger.error({ err: error, attempt }, 'writing the ingest log failed; devices are held back while it is retried');
      },
      onSpareError: (error) => options.logger.warn({ err: error }, 'zero-filling the next ingest log segment ahead failed; appends extend the file instead (slower)'),
      onDurable: (lastSeq, stats) => this.durable(lastSeq, stats),
      ...(options.writeAt ? { writeAt: options.writeAt } : {}),
    });
  }

  get logId(): string {
    return this.id;
  }

  get durability(): Durability {
    return this.options.durability;
  }

  /** The last sequence number on disk. */
  get headSeq(): number {
    return this.segments.durableSeq;
  }

  /** The last sequence number appended, durable or still being written. */
  get appendedSeq(): number {
    return this.segments.nextSeq - 1;
  }

  /** The head when the log was opened: events up to it that are handed out again are replays. */
  get replayedThrough(): number {
    return this.recoveredHead;
  }

  get firstSeq(): number {
    return this.segments.firstSeq;
  }

  /** False while the log is over its size limit or a write is failing: devices wait (whenRoom). */
  get hasRoom(): boolean {
    return !this.segments.failing && this.segments.retainedBytes + this.segments.pendingBytes < this.options.maxBytes && this.appendedSeq < this.leaseEnd;
  }

  /** Events from just after `fromSeq` through `toSeq`, not counting numbers skipped at open. */
  distance(fromSeq: number, toSeq: number): number {
    if (toSeq <= fromSeq) return 0;
    const skipped = Math.max(0, Math.min(toSeq, this.gap.last) - Math.max(fromSeq + 1, this.gap.first) + 1);
    return toSeq - fromSeq - skipped;
  }

  async open(): Promise<void> {
    this.id = await loadLogId(await ensureDir(this.options.dir));
    const recovery = await this.segments.open();
    this.recoveredHead = recovery.nextSeq - 1;
    const start = await this.resumeNumbering(recovery.nextSeq);
    this.pendingFirst = start;
    const { cursors, problem } = await readCursors(this.options.dir);
    if (problem) this.options.logger.error({ problem }, 'the ingest log cursors cannot be read; every runner starts from the oldest segment (duplicates, nothing lost)');
    this.stored = cursors ?? {};
    // Without trustworthy cursors every runner starts from the oldest record: duplicates, nothing lost.
    if (problem) this.fallbackCursor = this.segments.firstSeq - 1;
    // A cursor level with the head (or, after a power cut in "write" mode, ahead of what survived) goes on after the gap.
    for (const [name, seq] of Object.entries(this.stored)) if (seq >= this.recoveredHead) this.stored[name] = start - 1;
    this.opened = true;
    this.saveTimer = setInterval(() => void this.saveCursors(), this.options.cursorSaveMs ?? 200);
    this.saveTimer.unref();
    const info = { logId: this.id, durability: this.options.durability, ...recovery, nextSeq: start, cursors: this.stored };
    if (recovery.damagedRecords > 0 || recovery.truncatedBytes > 0) this.options.logger.warn(info, 'ingest log recovered with damage cut or skipped');
    else this.options.logger.info(info, 'ingest log open');
  }

  /** The committed position saved for a runner by an earlier run, if any. */
  savedCursor(name: string): number | undefined {
    return this.stored[name] ?? this.fallbackCursor;
  }

  setCursorSource(source: CursorSource): void {
    this.source = source;
  }


  /**
   * The first number of this run: after the last record and after the lease
   * of the run before (a crash may have lost events handed out up to it).
   * Writes the new lease before anything is handed out.
   */
  private async resumeNumbering(nextOnDisk: number): Promise<number> {
    let lease: number | undefined;
    try {
      lease = await readLease(this.options.dir);
    } catch (error) {
      // Not knowing what the last run handed out: skip well past anything it could have.
      this.options.logger.error({ err: error }, 'the ingest log sequence lease cannot be read; numbering goes on two leases past the last record');
      lease = nextOnDisk - 1 + 2 * this.leaseSize;
    }
    const start = Math.max(nextOnDisk, (lease ?? 0) + 1);
    if (start > nextOnDisk) {
      this.segments.skipTo(start);
      this.gap = { first: nextOnDisk, last: start - 1 };
      this.options.logger.info({ lastRecord: nextOnDisk - 1, nextSeq: start }, 'the ingest log was not closed cleanly: numbers handed out before the crash are not used again');
    }
    this.leaseEnd = start - 1 + this.leaseSize;
    await writeLease(this.options.dir, this.leaseEnd);
    return start;
  }

  /**
   * Appends an event's message and sets its position; `ack` runs once it is
   * durable. The caller hands the event on. Check `hasRoom` first.
   */
  append(event: DeviceEvent, message: DeviceMessage, ack: Acknowledge | undefined): void {
    // A QoS 0 message has no acknowledgement waiting for the disk: at light load (fewer than a batch's worth
    // not durable yet) its batch may wait for more (qos0CommitDelayMs). Beyond that every message counts as
    // awaited, since connections then wait for the disk before they read on, and routing waits for it too.
    const awaited = message.qos !== 0 || this.appendedSeq - this.headSeq >= SPACED_BELOW_RECORDS;
    const seq = this.segments.append(message, awaited);
    event.log = new Position(this.id, seq, false);
    this.pendingAcks.push(ack);
    if (seq > this.leaseEnd - this.leaseSize / 2) this.extendLease();
  }

  /** Moves the lease on ahead of the appends (one synced write per half lease); appends past it wait. */
  private extendLease(): void {
    if (this.extendingLease || !this.opened) return;
    const next = this.appendedSeq + this.leaseSize;
    this.extendingLease = writeLease(this.options.dir, next)
      .then(
        () => {
          this.leaseEnd = Math.max(this.leaseEnd, next);
          if (this.roomWaiters.size > 0 && this.hasRoom) this.roomWaiters.wakeAll();
        },
        (error: unknown) => {
          if (this.logLeaseError()) this.options.logger.error({ err: error }, 'writing the ingest log sequence lease failed; retrying every second (devices wait once the lease is used up)');
          // Appends stop once the lease is used up, so a retry cannot wait for the next append (none while closing).
          if (this.saveTimer === undefined) return;
          this.leaseRetry ??= setTimeout(() => {
            this.leaseRetry = undefined;
            this.extendLease();
          }, 1000);
        },
      )
      .finally(() => {
        this.extendingLease = undefined;
      });
  }

  /** Resolves at the next batch made durable (or when the log closes). */
  whenDurable(): Promise<void> {
    return this.opened ? this.durableWaiters.wait() : Promise.resolve();
  }

  /** The position of an event read back from disk. */
  position(seq: number): LogPosition {
    return new Position(this.id, seq, seq <= this.recoveredHead);
  }

  /** Resolves when `hasRoom` may be true again (check again), or rejects when `signal` aborts. */
  whenRoom(signal?: AbortSignal): Promise<void> {
    if (this.hasRoom) return Promise.resolve();
    const room = this.roomWaiters.wait(signal);
    // Full with nothing to free (every cursor current): unregistered cursors may be what pins it.
    if (!signal?.aborted) void this.saveCursors();
    return room;
  }

  reader(fromSeq: number): LogReader {
    return this.segments.reader(fromSeq);
  }

  stats(): IngestStats {
    const committed = this.source?.committed() ?? new Map<string, number>();
    const names = new Set([...committed.keys(), ...Object.keys(this.stored)]);
    return {
      logId: this.id,
      durability: this.options.durability,
      headSeq: this.headSeq,
      firstSeq: this.firstSeq,
      bytes: this.segments.retainedBytes + this.segments.pendingBytes,
      maxBytes: this.options.maxBytes,
      segments: this.segments.segmentCount,
      full: !this.hasRoom,
      failing: this.segments.failing,
      runners: [...names].sort().map((name) => {
        const seq = committed.get(name) ?? this.stored[name] ?? 0;
        return { name, committed: seq, lagEvents: this.distance(seq, this.headSeq), registered: committed.has(name) };
      }),
    };
  }

  /** Waits for what is being written, saves the cursors, closes the files. */
  async close(timeoutMs: number): Promise<void> {
    if (!this.opened) return;
    clearInterval(this.saveTimer);
    this.saveTimer = undefined;
    clearTimeout(this.leaseRetry);
    this.leaseRetry = undefined;
    await this.segments.close(timeoutMs);
    await this.saving;
    await this.saveCursors(true);
    await this.extendingLease;
    // Everything handed out is on disk: the next run numbers on without a gap.
    if (this.appendedSeq === this.headSeq) await writeLease(this.options.dir, this.appendedSeq);
    this.opened = false;
    this.roomWaiters.wakeAll();
    this.durableWaiters.wakeAll();
  }

  private durable(lastSeq: number, stats: BatchStats): void {
    this.metrics.batches.inc();
    this.metrics.records.inc(stats.records);
    this.metrics.batchBytes.observe(stats.bytes);
    this.metrics.writeSeconds.observe(stats.writeMs / 1000);
    this.metrics.commitSeconds.observe(stats.commitMs / 1000);
    const to = lastSeq - this.pendingFirst + 1;
    this.pendingFirst = lastSeq + 1;
    const acks = this.pendingAcks;
    // A new list rather than splice (copying only the few of the batches still being written): kept
    // until a later compaction, every entry survived young-generation GCs and was promoted, and minor
    // GC took 3 to 6 times as long as in "memory" mode (bench scenario 4, GC lines).
    this.pendingAcks = acks.slice(to);
    for (let i = 0; i < to; i++) acks[i]?.();
    this.onDurable();
    if (this.durableWaiters.size > 0) this.durableWaiters.wakeAll();
    if (this.roomWaiters.size > 0 && this.hasRoom) this.roomWaiters.wakeAll();
  }

  /** Saves changed cursors, then deletes the segments every cursor has passed. */
  private saveCursors(closing = false): Promise<void> {
    this.saving = this.saving.then(async () => {
      if (!this.opened) return;
      const committed = this.source?.committed() ?? new Map<string, number>();
      const next: Cursors = { ...this.stored };
      // Runners see events before they are durable: a position past the durable head is saved as the head.
      const head = this.headSeq;
      for (const [name, seq] of this.source?.retired() ?? []) next[name] = Math.min(seq, head);
      for (const [name, seq] of committed) next[name] = Math.min(seq, head);
      if (!this.hasRoom && !closing) this.dropUnregistered(next, committed);
      if (!sameCursors(next, this.stored)) {
        await writeCursors(this.options.dir, next);
        this.stored = next;
      }
      const values = Object.values(this.stored);
      // With no durable runner at all, nothing needs the data once it is durable.
      const oldest = values.length === 0 ? this.headSeq : Math.min(...values);
      const freed = await this.segments.deleteThrough(oldest);
      if (freed > 0 && this.hasRoom) this.roomWaiters.wakeAll();
    });
    this.saving = this.saving.catch((error: unknown) => this.options.logger.error({ err: error }, 'saving the ingest log cursors failed; retrying'));
    return this.saving;
  }

  /** The log is full: cursors of runners that are not registered must not hold devices back. */
  private dropUnregistered(next: Cursors, registered: Map<string, number>): void {
    for (const name of Object.keys(next)) {
      if (registered.has(name)) continue;
      this.options.logger.warn({ runner: name, committed: next[name], headSeq: this.headSeq }, 'the ingest log is full: dropped the cursor of a runner that is not registered (it starts from the head if it comes back)');
      this.metrics.cursorsDropped.inc();
      delete next[name];
    }
  }
}

function sameCursors(a: Cursors, b: Cursors): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}

async function ensureDir(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  return dir;
}

function createMetrics(registry: Registry, log: IngestLog) {
  const registers = [registry];
  new Gauge({
    name: 'nucleon_ingest_log_bytes',
    help: 'Bytes in the ingest log (segments and the batch being written)',
    registers,
    collect() {
      this.set(log.stats().bytes);
    },
  });
  new Gauge({
    name: 'nucleon_ingest_log_segments',
    help: 'Segment files of the ingest log',
    registers,
    collect() {
      this.set(log.stats().segments);
    },
  });
  new Gauge({
    name: 'nucleon_ingest_log_full',
    help: '1 while the ingest log is over its size limit or a write is failing (devices are held back)',
    registers,
    collect() {
      this.set(log.hasRoom ? 0 : 1);
    },
  });
  new Gauge({
    name: 'nucleon_ingest_head_seq',
    help: 'Sequence number of the newest durable record',
    registers,
    collect() {
      this.set(log.headSeq);
    },
  });
  new Gauge({
    name: 'nucleon_ingest_lag_events',
    help: 'Events in the ingest log a durable runner has not committed yet',
    labelNames: ['runner'],
    registers,
    collect() {
      this.reset();
      for (const runner of log.stats().runners) this.set({ runner: runner.name }, runner.lagEvents);
    },
  });
  return {
    batches: new Counter({ name: 'nucleon_ingest_batches_total', help: 'Group commits (one write, and one fdatasync for "fsync")', registers }),
    records: new Counter({ name: 'nucleon_ingest_records_total', help: 'Device messages made durable', registers }),
    batchBytes: new Histogram({ name: 'nucleon_ingest_batch_bytes', help: 'Bytes per group commit', buckets: [256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304], registers }),
    commitSeconds: new Histogram({
      name: 'nucleon_ingest_commit_seconds',
      help: 'From the first append of a batch until it is durable',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1],
      registers,
    }),
    writeSeconds: new Histogram({
      name: 'nucleon_ingest_write_seconds',
      help: 'The write of one batch (with "fsync" durability an O_DSYNC write: until the data is on disk)',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1],
      registers,
    }),
    damaged: new Counter({ name: 'nucleon_ingest_damaged_total', help: 'Damaged stretches found in the ingest log (torn tails cut, damaged records skipped)', labelNames: ['what'], registers }),
    damagedBytes: new Counter({ name: 'nucleon_ingest_damaged_bytes_total', help: 'Bytes of the ingest log skipped or cut as damaged', registers }),
    writeErrors: new Counter({ name: 'nucleon_ingest_write_errors_total', help: 'Failed writes or syncs of the ingest log (each retried)', registers }),
    cursorsDropped: new Counter({ name: 'nucleon_ingest_cursors_dropped_total', help: 'Cursors of unregistered runners dropped because the log was full', registers }),
  };
}
