import { constants, write } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { syncDirectory } from '../util/fs.js';
import { WaitList } from '../util/wait-list.js';
import { decodeRecord, encodeRecord, HEADER_BYTES, MAX_BODY_BYTES, recordSize, type DeviceMessage, type LogRecord } from './record.js';

/**
 * The ingest log on disk: numbered segment files of checksummed records
 * (src/ingest/record.ts), appended by group commit.
 *
 * - Group commit: `append` only encodes into the batch being filled and
 *   returns the record's sequence number. One write (with "fsync", an O_DSYNC
 *   write, which returns once the data is on disk) takes the whole batch; while it runs the next batch fills, so
 *   however many devices publish, durability costs one syscall pair per
 *   batch. A write that is slow (a sync in the disk's tail) lets the next
 *   batch start beside it, at the next place in the same segment; batches
 *   become durable in order all the same: `onDurable(lastSeq)` reports each
 *   once it and every batch before it are on disk. (After a power cut that
 *   kept the second write and not the first, recovery counts the first as
 *   damage and hands on the second's records: never acknowledged, so at
 *   most a device's resend doubles them.)
 * - Spacing (`commitSpacingMs`): under light load (the batch being filled
 *   has fewer than SPACED_BELOW_RECORDS records) two writes start at least
 *   this far apart. A write costs the event loop about 40 us and the thread
 *   pool 100-200 us of CPU here (thread-pool trip, O_DSYNC write, the turn
 *   that completes it), whatever it carries; at 5,000 msg/s a write came
 *   every 3-6 messages. A timer fires a millisecond late or more, so an
 *   append that comes once the spacing has passed starts the write. Off by
 *   default: runners get a message when it is appended and connections read
 *   on under light load, yet at 2 ms the p99 device -> app latency (bench
 *   scenario 4, "fsync") rose from about 1 to 2-7 ms, for a reason not yet
 *   found (README "Commit spacing").
 * - Unawaited batches (`unawaitedDelayMs`): a record appended with
 *   `awaited` false has nothing waiting for it to be durable (a QoS 0
 *   message: no acknowledgement, and at light load it reaches runners and
 *   subscribers on append). A batch of only such records, fewer than
 *   SPACED_BELOW_RECORDS, is written this long after its first record
 *   instead of at once, so at light load many QoS 0 messages share one
 *   write instead of one write each (the write's thread-pool trip and
 *   completion cost the same whatever it carries). A record someone waits
 *   for, or a full batch, starts the write at once as before.
 * - Segments: `<first seq, 16 digits>.seg`. A new one starts when the current
 *   one has reached `segmentBytes`; whole segments are deleted once every
 *   reader has passed them (`deleteThrough`).
 * - Recovery (`open`): the last segment is read through; a torn tail (a
 *   record cut off by a crash) is cut, a damaged record is counted and the
 *   scan resynchronises on the next record whose checksum holds. Damage in
 *   older segments is found, counted and skipped the same way when they are
 *   read.
 * - A failed write or sync keeps its batch and retries it (the same bytes at
 *   the same place, so nothing torn is left behind) with a growing back-off;
 *   meanwhile `failing` is true and the ingest path holds devices back.
 */
export type Durability = 'fsync' | 'write';

export interface DamageReport {
  segment: string;
  offset: number;
  bytes: number;
  reason: string;
}

export interface SegmentLogOptions {
  dir: string;
  durability: Durability;
  /** A new segment starts at the next batch once the current one has this many bytes. */
  segmentBytes: number;
  /** Told about each damaged or torn stretch of a segment, once. */
  onDamage?: (report: DamageReport) => void;
  /** Told about each failed write or sync (the batch is retried). */
  onWriteError?: (error: Error, attempt: number) => void;
  /** Told when zero-filling the next segment ahead failed (appends then extend the file, slower). */
  onSpareError?: (error: Error) => void;
  /** Told after each batch is durable: its last sequence number and figures. */
  onDurable?: (lastSeq: number, stats: BatchStats) => void;
  /**
   * The shortest time between the starts of two writes when the log is not
   * behind (ms; 0: the next write starts as soon as the last one ended). See
   * "Spacing" in the comment above SegmentLog.
   */
  commitSpacingMs?: number;
  /** How long a batch that no one waits for may wait before its write starts (ms; 0: at once). See "Unawaited batches" above. */
  unawaitedDelayMs?: number;
  /** Writes a batch at a position (tests put slow or failing writes here); by default the whole buffer, in as many writes as it takes. */
  writeAt?: (handle: FileHandle, buffer: Buffer, length: number, position: number) => Promise<void>;
}

export interface BatchStats {
  bytes: number;
  records: number;
  /** The write, which with "fsync" (O_DSYNC) includes reaching the disk. */
  writeMs: number;
  /** From the batch's first append until it was durable. */
  commitMs: number;
}

export interface Recovery {
  /** First sequence number still on disk (equals `nextSeq` when the log is empty). */
  firstSeq: number;
  nextSeq: number;
  segments: number;
  bytes: number;
  /** Records found damaged in the last segment (torn tail excluded). */
  damagedRecords: number;
  /** Bytes cut from the end of the last segment (a torn tail or damage after the last good record). */
  truncatedBytes: number;
}

interface Segment {
  firstSeq: number;
  file: string;
  size: number;
  /** `[seq, offset]` every INDEX_EVERY bytes or so, for readers that start in the middle. */
  index: number[];
}

const SEGMENT_PATTERN = /^(\d{16})\.seg$/;
const SPARE_NAME = 'next.seg.tmp';
/** The spare segment is written and synced this much at a time (see prepareSpare). */
const SPARE_CHUNK_BYTES = 1024 * 1024;
const INDEX_EVERY = 64 * 1024;
const INITIAL_BATCH_BYTES = 1024 * 1024;
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 5000;
const READ_CHUNK_BYTES = 256 * 1024;
/** Batches written at once at most (see `flush`). */
const MAX_IN_FLIGHT = 2;
/**
 * A write in flight this much longer than usual (the running average) lets
 * the next batch start beside it: only a write in the disk's tail, never
 * the usual one (that would double the syncs, and their CPU, for nothing).
 */
const OVERLAP_AFTER_TIMES_USUAL = 3;
const OVERLAP_AFTER_MIN_MS = 1;
/**
 * Spacing holds a batch back only while it has fewer records than this: it
 * is for light load (a few messages per write), and a batch this large starts
 * at once, so on a fast disk under load the spacing never lets messages pile
 * up to where connections stop reading ahead and routing waits for the disk
 * (128 waiting, READ_AHEAD_BELOW in src/mqtt/publish-path.ts).
 */
export const SPACED_BELOW_RECORDS = 64;

class Batch {
  buffer: Buffer;
  length = 0;
  records = 0;
  firstSeq = 0;
  lastSeq = 0;
  startedAt = 0;
  /** Whether any record in it was appended with `awaited` (then it is written at once). */
  awaited = false;
  /** `[seq, offset in batch]` at index points. */
  index: number[] = [];
  /** Where the batch goes, once placed; a retry writes the same bytes to the same place. */
  target: { segment: Segment; handle: FileHandle } | undefined;
  offset = 0;
  written = false;
  failures = 0;
  startedWriting = 0;
  writtenAt = 0;
  /** Settles when the write (with its retries) has ended, written or given up. */
  writing: Promise<void> = Promise.resolve();

  constructor(bytes: number) {
    this.buffer = Buffer.allocUnsafe(bytes);
  }

  reset(): void {
    this.length = 0;
    this.records = 0;
    this.awaited = false;
    this.index = [];
    this.target = undefined;
    this.offset = 0;
    this.written = false;
    this.failures = 0;
  }
}

export class SegmentLog {
  private readonly segments: Segment[] = [];
  private active: { segment: Segment; handle: FileHandle } | undefined;
  private filling = new Batch(INITIAL_BATCH_BYTES);
  /** Batches being written, in sequence order; they become durable in this order. */
  private readonly inFlight: Batch[] = [];
  private readonly freeBatches: Batch[] = [];
  /** End of the active segment including the batches placed in it and still being written. */
  private placedEnd = 0;
  private flushScheduled = false;
  private overlapTimer: NodeJS.Timeout | undefined;
  /** Set while the filling batch is held back: by the spacing since the last write started, or as an unawaited batch. */
  private holdTimer: NodeJS.Timeout | undefined;
  private lastWriteStarted = Number.NEGATIVE_INFINITY;
  /** Running average of a write's duration (ms). */
  private usualWriteMs = 0;
  private closed = true;
  private seq = 1;
  private durable = 0;
  /** Bytes of the active segment that are durable (readers read up to here). */
  private durableOffset = 0;
  private bytes = 0;
  /** Bytes appended since the last index point. */
  private sinceIndexed = 0;
  private readonly wakeRetries = new Set<() => void>();
  /** The next segment while it is being zero-filled ahead of time ("fsync"); close waits for it. */
  private spareWriting: Promise<void> | undefined;
  /** Its path once it is written and synced, until a new segment takes it. */
  private spareFile: string | undefined;
  private readonly reported = new Set<string>();
  private readonly readHandles = new Map<string, FileHandle>();
  /** Woken each time a write ends (durable or given up). */
  private readonly progress = new WaitList();

  constructor(private readonly options: SegmentLogOptions) {}

  /** The sequence number the next append gets. */
  get nextSeq(): number {
    return this.seq;
  }

  /** The last sequence number on disk (0: none yet). */
  get durableSeq(): number {
    return this.durable;
  }

  /** The first sequence number still on disk. */
  get firstSeq(): number {
    return this.segments[0]?.firstSeq ?? this.seq;
  }

  /** Bytes in the segment files (what the size limit counts), the batch being filled excluded. */
  get retainedBytes(): number {
    return this.bytes;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  /** Bytes appended and not yet durable. */
  get pendingBytes(): number {
    let bytes = this.filling.length;
    for (const batch of this.inFlight) bytes += batch.length;
    return bytes;
  }

  /** A write or sync failed and is being retried. */
  get failing(): boolean {
    return this.inFlight.some((batch) => batch.failures > 0);
  }

  async open(): Promise<Recovery> {
    await mkdir(this.options.dir, { recursive: true });
    const names = (await readdir(this.options.dir))
      .map((name) => ({ name, match: SEGMENT_PATTERN.exec(name) }))
      .filter((entry): entry is { name: string; match: RegExpExecArray } => entry.match !== null)
      .sort((a, b) => Number(a.match[1]) - Number(b.match[1]));
    for (const { name, match } of names) {
      const file = path.join(this.options.dir, name);
      this.segments.push({ firstSeq: Number(match[1]), file, size: (await stat(file)).size, index: [] });
    }
    let damagedRecords = 0;
    let truncatedBytes = 0;
    const last = this.segments.at(-1);
    if (last) {
      const scan = await this.scanTail(last);
      damagedRecords = scan.damaged;
      truncatedBytes = scan.torn;
      this.seq = scan.nextSeq;
      const handle = await open(last.file, this.appendFlags(false));
      // Cut what follows the last good record: a torn write, or the zeros of a segment prepared ahead.
      if (last.size > scan.end) {
        await handle.truncate(scan.end);
        if (this.options.durability === 'fsync') await handle.datasync();
        last.size = scan.end;
      }
      this.active = { segment: last, handle };
      this.durableOffset = last.size;
      this.placedEnd = last.size;
    }
    this.durable = this.seq - 1;
    for (const segment of this.segments) this.bytes += segment.size;
    this.closed = false;
    await rm(path.join(this.options.dir, SPARE_NAME), { force: true });
    this.prepareSpare();
    return { firstSeq: this.firstSeq, nextSeq: this.seq, segments: this.segments.length, bytes: this.bytes, damagedRecords, truncatedBytes };
  }

  /**
   * Numbers the next record `seq` (only forward, before the first append):
   * the ingest log leaves a gap after a crash so that no number handed out
   * before it is used again. Nothing is in the gap, so it counts as durable.
   */
  skipTo(seq: number): void {
    if (this.filling.records > 0 || this.inFlight.length > 0) throw new Error('skipTo: records are being written');
    if (seq <= this.seq) return;
    this.seq = seq;
    this.durable = seq - 1;
  }

  /**
   * Adds a record to the batch being filled and returns its sequence number.
   * It is durable once `onDurable` reports a sequence number at or past it.
   * `awaited` false: nothing waits for it to be durable, so its batch may be
   * held back (`unawaitedDelayMs`).
   */
  append(message: DeviceMessage, awaited = true): number {
    if (this.closed) throw new Error('the ingest log is closed');
    const batch = this.filling;
    const size = recordSize(message);
    if (batch.length + size > batch.buffer.length) this.grow(batch, batch.length + size);
    const seq = this.seq++;
    if (batch.records === 0) {
      batch.firstSeq = seq;
      batch.startedAt = performance.now();
    }
    batch.lastSeq = seq;
    this.sinceIndexed += size;
    if (this.sinceIndexed >= INDEX_EVERY) {
      batch.index.push(seq, batch.length);
      this.sinceIndexed = 0;
    }
    batch.length += encodeRecord(batch.buffer, batch.length, seq, message);
    batch.records++;
    if (awaited) batch.awaited = true;
    this.scheduleFlush();
    return seq;
  }

  /** Resolves once everything appended so far is durable (or the log closed). */
  async flushed(): Promise<void> {
    while (!this.closed) {
      if (this.filling.records > 0) this.flushUrgently();
      if (this.inFlight.length === 0 && this.filling.records === 0) return;
      await this.progress.wait();
    }
  }

  /** Reads records from `fromSeq` on; see LogReader. */
  reader(fromSeq: number): LogReader {
    return new LogReader(this, Math.max(fromSeq, this.firstSeq));
  }

  /**
   * Deletes whole segments whose every record is at or before `seq`; the one
   * being appended to only when `seq` is the durable head and no write is
   * running. Returns the bytes freed.
   */
  async deleteThrough(seq: number): Promise<number> {
    let freed = 0;
    while (this.segments.length > 1) {
      const first = this.segments[0];
      const second = this.segments[1];
      if (!first || !second || second.firstSeq - 1 > seq) break;
      this.segments.shift();
      this.bytes -= first.size;
      freed += first.size;
      await this.forget(first);
    }
    // Everything durable is consumed: the segment being appended to goes too (the next batch starts a new one),
    // else a log filled by one large segment could never make room.
    const active = this.active;
    if (active && seq >= this.durable && this.inFlight.length === 0 && active.segment.size > 0 && this.segments.at(-1) === active.segment) {
      this.active = undefined;
      this.placedEnd = 0;
      this.segments.pop();
      this.bytes -= active.segment.size;
      freed += active.segment.size;
      await active.handle.close();
      await this.forget(active.segment);
    }
    return freed;
  }

  private async forget(segment: Segment): Promise<void> {
    const handle = this.readHandles.get(segment.file);
    this.readHandles.delete(segment.file);
    await handle?.close();
    await rm(segment.file, { force: true });
  }

  /**
   * Writes what is pending (for at most `timeoutMs` while writes fail: those
   * records were never acknowledged), then closes every file. Safe twice.
   */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.closed) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.flushed(), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    this.closed = true;
    clearTimeout(this.overlapTimer);
    clearTimeout(this.holdTimer);
    for (const wake of this.wakeRetries) wake();
    await Promise.all(this.inFlight.map((batch) => batch.writing));
    await this.spareWriting;
    // Left on disk; the next open removes it and writes a new one.
    this.spareFile = undefined;
    const handles = [this.active?.handle, ...this.readHandles.values()];
    this.active = undefined;
    this.readHandles.clear();
    for (const handle of handles) await handle?.close();
  }

  // ---- reading (LogReader) ------------------------------------------------

  /** @internal The segment holding `seq`, and where to start scanning for it. */
  locate(seq: number): { segment: Segment; offset: number } | undefined {
    let found: Segment | undefined;
    for (const segment of this.segments) {
      if (segment.firstSeq > seq) break;
      found = segment;
    }
    if (!found) return undefined;
    let offset = 0;
    for (let i = 0; i < found.index.length; i += 2) {
      const at = found.index[i] ?? 0;
      if (at > seq) break;
      offset = found.index[i + 1] ?? 0;
    }
    return { segment: found, offset };
  }

  /** @internal The segment after `segment`, if any. */
  nextSegment(segment: Segment): Segment | undefined {
    const at = this.segments.indexOf(segment);
    return at >= 0 ? this.segments[at + 1] : this.segments[0];
  }

  /** @internal Bytes of `segment` a reader may read: up to the durable end for the active one. */
  readableEnd(segment: Segment): number {
    return this.active?.segment === segment ? this.durableOffset : segment.size;
  }

  /** @internal Whether `segment` is still in the log (not deleted). */
  holds(segment: Segment): boolean {
    return this.segments.includes(segment);
  }

  /** @internal */
  async readAt(segment: Segment, offset: number, length: number): Promise<Buffer> {
    let handle = this.readHandles.get(segment.file);
    if (!handle) {
      handle = await open(segment.file, 'r');
      this.readHandles.set(segment.file, handle);
      // Readers move forward: keep the handles of the last few segments only.
      if (this.readHandles.size > 4) {
        const [oldest, oldHandle] = this.readHandles.entries().next().value as [string, FileHandle];
        this.readHandles.delete(oldest);
        await oldHandle.close();
      }
    }
    const buffer = Buffer.allocUnsafe(length);
    const { bytesRead } = await handle.read(buffer, 0, length, offset);
    return bytesRead === length ? buffer : buffer.subarray(0, bytesRead);
  }

  /** @internal Reports a damaged stretch once (readers may meet it again). */
  reportDamage(report: DamageReport): void {
    const key = `${report.segment}:${report.offset}`;
    if (this.reported.has(key)) return;
    if (this.reported.size > 10_000) this.reported.clear();
    this.reported.add(key);
    this.options.onDamage?.(report);
  }

  // ---- writing ------------------------------------------------------------

  /**
   * "fsync" opens segments with O_DSYNC: each write returns once its data (and
   * the size needed to read it) is on the disk, as write + fdatasync would, in
   * one system call and one thread-pool trip. Measured on this machine's ext4:
   * 184 µs of CPU per durable write against 269 µs for write + fdatasync, the
   * same latency (p50 0.54 ms).
   */
  private appendFlags(create: boolean): number {
    const flags = constants.O_RDWR | (create ? constants.O_CREAT | constants.O_TRUNC : 0);
    return this.options.durability === 'fsync' ? flags | constants.O_DSYNC : flags;
  }

  private grow(batch: Batch, needed: number): void {
    const bigger = Buffer.allocUnsafe(Math.max(needed, batch.buffer.length * 2));
    batch.buffer.copy(bigger, 0, 0, batch.length);
    batch.buffer = bigger;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.overlapTimer !== undefined || this.inFlight.length >= MAX_IN_FLIGHT) return;
    // Held back: its timer starts the batch, or an append that comes once the hold has passed or ends it
    // (a timer fires a millisecond late or more; an append at 5,000 msg/s comes every 0.2 ms).
    if (this.holdTimer !== undefined && this.holdLeftMs() > 0) return;
    this.flushScheduled = true;
    // After this turn's other socket reads: every device's message of this turn joins the batch.
    setImmediate(this.flush);
  }

  /**
   * Starts writing the batch being filled: at once when nothing is being
   * written; beside the write in flight only once that one is in the tail
   * (OVERLAP_AFTER_TIMES_USUAL): the batch behind a slow sync need not wait
   * for its end, and becomes durable right after it. Only in the same
   * segment, and never beside a failing write.
   */
  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.filling.records === 0 || this.closed || this.inFlight.length >= MAX_IN_FLIGHT) return;
    const ahead = this.inFlight.at(-1);
    if (ahead === undefined) {
      const wait = this.holdLeftMs();
      if (wait > 0) {
        this.holdTimer ??= setTimeout(this.afterHold, Math.ceil(wait));
        return;
      }
    } else {
      // An unawaited batch is in no hurry: it goes once the write ahead has ended.
      if (this.unawaitedLeftMs() > 0) return;
      const active = this.active;
      // The batch ahead must be placed in the active segment, with room after it, and not failing.
      if (ahead.target === undefined || ahead.target !== active || ahead.failures > 0 || this.placedEnd >= this.options.segmentBytes) return;
      const wait = ahead.startedWriting + Math.max(OVERLAP_AFTER_MIN_MS, OVERLAP_AFTER_TIMES_USUAL * this.usualWriteMs) - performance.now();
      if (wait > 0) {
        this.overlapTimer ??= setTimeout(() => {
          this.overlapTimer = undefined;
          this.flush();
        }, Math.ceil(wait));
        return;
      }
    }
    this.startWrite();
  };

  /** How long the batch being filled is still held back (0 or less: not at all; a batch of SPACED_BELOW_RECORDS never is). */
  private holdLeftMs(): number {
    if (this.filling.records >= SPACED_BELOW_RECORDS) return 0;
    const spacingMs = this.options.commitSpacingMs ?? 0;
    const spacingLeft = spacingMs > 0 ? this.lastWriteStarted + spacingMs - performance.now() : 0;
    return Math.max(spacingLeft, this.unawaitedLeftMs());
  }

  /** How long the batch being filled may still wait as one no one waits for (0 or less: it may not). */
  private unawaitedLeftMs(): number {
    const delayMs = this.options.unawaitedDelayMs ?? 0;
    const batch = this.filling;
    if (delayMs <= 0 || batch.awaited || batch.records >= SPACED_BELOW_RECORDS) return 0;
    return batch.startedAt + delayMs - performance.now();
  }

  private readonly afterHold = (): void => {
    this.holdTimer = undefined;
    this.flush();
  };

  /** Writes the filling batch now, whatever the spacing (flushed, close). */
  private flushUrgently(): void {
    if (this.filling.records === 0 || this.closed || this.inFlight.length > 0) {
      this.flush();
      return;
    }
    this.startWrite();
  }

  private startWrite(): void {
    clearTimeout(this.overlapTimer);
    this.overlapTimer = undefined;
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    if ((this.options.commitSpacingMs ?? 0) > 0) this.lastWriteStarted = performance.now();
    const batch = this.filling;
    this.filling = this.freeBatches.pop() ?? new Batch(INITIAL_BATCH_BYTES);
    this.inFlight.push(batch);
    batch.writing = this.writeBatch(batch);
  }

  private async writeBatch(batch: Batch): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        if (batch.target === undefined) {
          batch.target = await this.target(batch);
          batch.offset = this.placedEnd;
          this.placedEnd += batch.length;
        }
        batch.startedWriting = performance.now();
        await (this.options.writeAt ?? writeFully)(batch.target.handle, batch.buffer, batch.length, batch.offset);
        batch.writtenAt = performance.now();
        this.usualWriteMs += ((batch.writtenAt - batch.startedWriting) - this.usualWriteMs) / 32;
        batch.written = true;
        batch.failures = 0;
        break;
      } catch (error) {
        batch.failures++;
        this.options.onWriteError?.(error instanceof Error ? error : new Error(String(error)), attempt);
        if (this.closed) break;
        await new Promise<void>((resolve) => {
          const wake = () => {
            clearTimeout(timer);
            this.wakeRetries.delete(wake);
            resolve();
          };
          const timer = setTimeout(wake, Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(attempt - 1, 10)));
          this.wakeRetries.add(wake);
        });
        if (this.closed) break;
      }
    }
    this.commitWritten();
    if (this.filling.records > 0 && !this.closed) this.flush();
  }

  /** Commits the written batches at the front, in order: a batch is durable only once all before it are. */
  private commitWritten(): void {
    while (this.inFlight[0]?.written) {
      const batch = this.inFlight.shift() as Batch;
      const target = batch.target as { segment: Segment };
      this.commitBatch(target.segment, batch);
      const stats = { bytes: batch.length, records: batch.records, writeMs: batch.writtenAt - batch.startedWriting, commitMs: performance.now() - batch.startedAt };
      this.options.onDurable?.(batch.lastSeq, stats);
      batch.reset();
      if (this.freeBatches.length < MAX_IN_FLIGHT) this.freeBatches.push(batch);
    }
    if (this.closed) this.inFlight.length = 0;
    this.progress.wakeAll();
  }

  /** The segment this batch goes to: the active one, or a new one named by the batch's first seq. */
  private async target(batch: Batch): Promise<{ segment: Segment; handle: FileHandle }> {
    const active = this.active;
    // An empty segment takes the batch whatever its size.
    if (active && (this.placedEnd < this.options.segmentBytes || this.placedEnd === 0)) return active;
    const file = path.join(this.options.dir, `${String(batch.firstSeq).padStart(16, '0')}.seg`);
    const spare = this.takeSpare();
    if (spare) await rename(spare, file);
    const handle = await open(file, this.appendFlags(spare === undefined));
    const segment: Segment = { firstSeq: batch.firstSeq, file, size: 0, index: [] };
    if (this.options.durability === 'fsync') await syncDirectory(this.options.dir);
    this.prepareSpare();
    if (active) await active.handle.close();
    this.segments.push(segment);
    this.active = { segment, handle };
    this.durableOffset = 0;
    this.placedEnd = 0;
    return this.active;
  }

  private commitBatch(segment: Segment, batch: Batch): void {
    for (let i = 0; i < batch.index.length; i += 2) segment.index.push(batch.index[i] ?? 0, segment.size + (batch.index[i + 1] ?? 0));
    segment.size += batch.length;
    this.bytes += batch.length;
    this.durableOffset = segment.size;
    this.durable = batch.lastSeq;
  }

  /** Reads the last segment through: where its good records end, and the next sequence number. */
  private async scanTail(segment: Segment): Promise<{ end: number; nextSeq: number; damaged: number; torn: number }> {
    const handle = await open(segment.file, 'r');
    let data: Buffer;
    try {
      data = await handle.readFile();
    } finally {
      await handle.close();
    }
    // A segment prepared ahead is zero-filled past its last record: that is its clean end, not damage.
    const dataEnd = nonZeroEnd(data);
    let offset = 0;
    let end = 0;
    let nextSeq = segment.firstSeq;
    let damaged = 0;
    while (offset < dataEnd) {
      const result = decodeRecord(data, offset, dataEnd);
      if (result.kind === 'record' && result.record.seq >= nextSeq) {
        if (segment.index.length === 0 || offset - (segment.index.at(-1) ?? 0) >= INDEX_EVERY) segment.index.push(result.record.seq, offset);
        nextSeq = result.record.seq + 1;
        offset += result.size;
        end = offset;
        continue;
      }
      // Damaged, out of order, or cut off: a good record further on means damage here, none means a torn tail.
      const resumed = resync(data, offset + 1, dataEnd, nextSeq);
      if (resumed === undefined) break;
      damaged++;
      const reason = result.kind === 'damaged' ? result.reason : result.kind === 'incomplete' ? 'length runs past good records' : 'record out of order';
      this.reportDamage({ segment: path.basename(segment.file), offset, bytes: resumed - offset, reason });
      offset = resumed;
    }
    if (end < dataEnd) this.reportDamage({ segment: path.basename(segment.file), offset: end, bytes: dataEnd - end, reason: 'torn or damaged tail cut' });
    return { end, nextSeq, damaged, torn: dataEnd - end };
  }

  /**
   * With "fsync", the next segment is written full of zeros ahead of time (in
   * the background, at open and right after a segment starts, so that a burst
   * after a start finds it ready), so that appends overwrite allocated
   * blocks: an O_DSYNC write then flushes data only, no file size and no
   * block allocation in the journal. Measured on this machine's ext4: p99
   * 0.66 ms and 135 µs of CPU per write, against 1.3 ms and 171 µs for
   * writes that extend the file.
   *
   * Each 1 MiB is synced before the next is written. One sync at the end
   * left 64 MB dirty at once, and on ext4 (data=ordered) any fsync in the
   * meantime (the log's own commits, the store's LevelDB writes) waited for
   * that data to reach the disk: a probe fsyncing a small file every 2 ms
   * beside it waited up to 28-41 ms, against 1.2-17 ms with a sync per MiB
   * (scripts/spare-segment-fsync.ts, three rounds on this VM's ext4).
   */
  private prepareSpare(): void {
    if (this.options.durability !== 'fsync' || this.spareWriting !== undefined || this.spareFile !== undefined || this.closed) return;
    const file = path.join(this.options.dir, SPARE_NAME);
    this.spareWriting = (async () => {
      const handle = await open(file, 'w');
      try {
        const zeros = Buffer.alloc(Math.min(SPARE_CHUNK_BYTES, this.options.segmentBytes));
        for (let at = 0; at < this.options.segmentBytes && !this.closed; at += zeros.length) {
          await handle.write(zeros, 0, Math.min(zeros.length, this.options.segmentBytes - at), at);
          await handle.datasync();
        }
      } finally {
        await handle.close();
      }
      if (!this.closed) this.spareFile = file;
    })()
      .catch(async (error: unknown) => {
        // Tried again when the next segment starts.
        this.options.onSpareError?.(error instanceof Error ? error : new Error(String(error)));
        await rm(file, { force: true });
      })
      .finally(() => {
        this.spareWriting = undefined;
      });
  }

  /** The spare segment if it is ready now (never waits for one being prepared). */
  private takeSpare(): string | undefined {
    const file = this.spareFile;
    this.spareFile = undefined;
    return file;
  }

  /** @internal Whether a spare segment is ready for the next segment (tests). */
  get spareReady(): boolean {
    return this.spareFile !== undefined;
  }
}

/**
 * Reads the log forward from a sequence number, in chunks, for a runner
 * catching up (after a restart, or after falling behind). Reads only what is
 * durable; returns an empty list once it has caught up with the durable end.
 */
export class LogReader {
  private segment: Segment | undefined;
  private offset = 0;

  constructor(
    private readonly log: SegmentLog,
    /** The next sequence number this reader returns. */
    public nextSeq: number,
  ) {}

  /** The next records (up to about `maxBytes`), in order; [] when caught up. */
  async next(maxBytes = READ_CHUNK_BYTES): Promise<LogRecord[]> {
    for (;;) {
      if (this.nextSeq > this.log.durableSeq) return [];
      if (!this.segment || !this.log.holds(this.segment)) {
        const located = this.log.locate(this.nextSeq);
        if (!located) {
          if (this.log.segmentCount === 0) return this.atEnd();
          // Before the oldest segment (the ones before it were deleted): go on from there.
          this.nextSeq = Math.max(this.nextSeq, this.log.firstSeq);
          continue;
        }
        this.segment = located.segment;
        this.offset = located.offset;
      }
      const segment = this.segment;
      const end = this.log.readableEnd(segment);
      if (this.offset >= end) {
        const next = this.log.nextSegment(segment);
        if (!next) return this.atEnd();
        // Sequence numbers missing at the end of a segment were lost to damage: skip them.
        if (next.firstSeq > this.nextSeq) this.nextSeq = next.firstSeq;
        this.segment = next;
        this.offset = 0;
        continue;
      }
      const records = await this.readFrom(segment, end, maxBytes);
      if (records.length > 0) return records;
    }
  }

  /**
   * Everything durable has been read: numbers up to the durable head that
   * were never written (the gap after a crash, or lost to damage) are
   * passed, so `nextSeq` says the reader is level with the head.
   */
  private atEnd(): LogRecord[] {
    this.nextSeq = Math.max(this.nextSeq, this.log.durableSeq + 1);
    return [];
  }

  private async readFrom(segment: Segment, end: number, maxBytes: number): Promise<LogRecord[]> {
    let chunk = await this.log.readAt(segment, this.offset, Math.min(maxBytes, end - this.offset));
    const records: LogRecord[] = [];
    let at = 0;
    while (at < chunk.length) {
      const result = decodeRecord(chunk, at, chunk.length);
      if (result.kind === 'record') {
        if (result.record.seq >= this.nextSeq) {
          records.push(result.record);
          this.nextSeq = result.record.seq + 1;
        }
        at += result.size;
        continue;
      }
      if (result.kind === 'incomplete') {
        if (at > 0) break;
        // One record larger than the chunk: read exactly it.
        const length = chunk.length >= HEADER_BYTES ? chunk.readUInt32LE(0) : 0;
        if (length > 0 && length <= MAX_BODY_BYTES && this.offset + HEADER_BYTES + length <= end) {
          chunk = await this.log.readAt(segment, this.offset, HEADER_BYTES + length);
          if (chunk.length === HEADER_BYTES + length) continue;
        }
        // Cut off before the readable end: damage in the middle of the segment.
        return this.skipDamage(segment, end, 'record cut off');
      }
      if (at > 0) break;
      return this.skipDamage(segment, end, result.reason);
    }
    this.offset += at;
    return records;
  }

  /** Skips a damaged stretch at the reader's offset: on to the next good record of this segment, or its end. */
  private async skipDamage(segment: Segment, end: number, reason: string): Promise<LogRecord[]> {
    const rest = await this.log.readAt(segment, this.offset, end - this.offset);
    const resumed = resync(rest, 1, rest.length, this.nextSeq) ?? rest.length;
    this.log.reportDamage({ segment: path.basename(segment.file), offset: this.offset, bytes: resumed, reason });
    this.offset += resumed;
    return [];
  }
}

/** Where the data of a buffer ends: just after its last non-zero byte (0 for all zeros). */
function nonZeroEnd(data: Buffer): number {
  const CHUNK = 64 * 1024;
  const zeros = Buffer.alloc(CHUNK);
  let end = data.length;
  while (end > 0) {
    const start = Math.max(0, end - CHUNK);
    if (!data.subarray(start, end).equals(zeros.subarray(0, end - start))) break;
    end = start;
  }
  while (end > 0 && data[end - 1] === 0) end--;
  return end;
}

/** The first offset from `from` where a whole, good record with a sequence number of at least `minSeq` starts. */
function resync(data: Buffer, from: number, end: number, minSeq: number): number | undefined {
  for (let at = from; at + HEADER_BYTES <= end; at++) {
    const result = decodeRecord(data, at, end);
    if (result.kind === 'record' && result.record.seq >= minSeq) return at;
  }
  return undefined;
}

/** @internal A batch written whole at `position` (scripts/log-write-cost.ts measures it). */
export async function writeFully(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const bytesWritten = await writeAtFd(handle.fd, buffer, done, length - done, position + done);
    if (bytesWritten === 0) throw new Error('the disk took no bytes');
    done += bytesWritten;
  }
}

/*
 * A commit's write through fs.write's callback on the handle's descriptor
 * rather than FileHandle.write: the same system call in the same thread
 * pool, for 10-17 µs less of the event loop's CPU per write (an O_DSYNC
 * write of 120 bytes on this VM: 40-45 µs against 52-58 in four rounds of
 * scripts/log-write-cost.ts). Under light load every few messages are a
 * commit of their own. The log closes a handle only once no write to it is
 * in flight (close, deleteThrough and a new segment wait for the writes), so
 * the descriptor is never reused under a write.
 */
function writeAtFd(fd: number, buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    write(fd, buffer, offset, length, position, (error, bytesWritten) => {
      if (error) reject(error);
      else resolve(bytesWritten);
    });
  });
}

