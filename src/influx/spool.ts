import { mkdir, open, readdir, rename, rm, stat, writeFile, readFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { syncDirectory } from '../util/fs.js';
import { SerialQueue } from '../util/serial-queue.js';
import { crc32 } from 'node:zlib';
import type { Precision } from './points.js';

/**
 * A durable FIFO of line-protocol batches on disk, bounded in bytes.
 *
 * Layout of the spool directory:
 * - `segment-<seq>.spool`: append-only files of records, oldest `seq` first.
 *   A record is `[u32 length][u32 crc32][payload]` (big endian), payload =
 *   `<precision>\n<line>\n<line>...` in UTF-8. Each append is fsync'd before it
 *   counts as spooled.
 * - `cursor.json`: `{segment, offset}` of the first record not yet written to
 *   InfluxDB, replaced atomically (write, fsync, rename) after every ack.
 *
 * A crash between a successful write and the cursor update replays that one
 * record after the restart (at-least-once; see README "Delivery guarantee").
 * A record that fails its checksum (a torn append at a crash, a damaged disk)
 * ends its segment: the reader reports it and moves on to the next segment.
 */
export interface SpoolRecord {
  readonly precision: Precision;
  readonly lines: readonly string[];
  readonly segment: number;
  readonly offset: number;
  /** Size on disk, header included. */
  readonly bytes: number;
}

export interface SpoolOptions {
  dir: string;
  /** Upper bound for records not yet acknowledged. */
  maxBytes: number;
  /** A new segment starts once the current one reaches this size. */
  segmentBytes?: number;
  /** Told when the reader skips damaged data, with the bytes it gave up. */
  onCorrupt?: (info: { segment: number; offset: number; bytes: number; reason: string }) => void;
}

interface Cursor {
  segment: number;
  offset: number;
}

const HEADER_BYTES = 8;
const SEGMENT_PATTERN = /^segment-(\d{12})\.spool$/;
const PRECISIONS: readonly string[] = ['ns', 'us', 'ms', 's'];

export class Spool {
  private readonly queue = new SerialQueue();
  private readonly segmentBytes: number;
  /** Sizes of the segment files, oldest first; the last one takes appends. */
  private readonly segments = new Map<number, number>();
  private cursor: Cursor = { segment: 1, offset: 0 };
  private appendHandle: { segment: number; handle: FileHandle } | undefined;
  private pending = 0;
  private peeked: SpoolRecord | undefined;
  private opened = false;

  constructor(private readonly options: SpoolOptions) {
    this.segmentBytes = options.segmentBytes ?? Math.max(64 * 1024, Math.min(16 * 1024 * 1024, Math.floor(options.maxBytes / 8)));
  }

  /** Bytes spooled and not yet acknowledged. */
  get pendingBytes(): number {
    return this.pending;
  }

  get isEmpty(): boolean {
    return this.pending === 0;
  }

  /** Finds the segments left by an earlier run and where its reader stopped. */
  open(): Promise<void> {
    return this.queue.run(async () => {
      if (this.opened) return;
      await mkdir(this.options.dir, { recursive: true });
      const names = await readdir(this.options.dir);
      const found = names
        .map((name) => SEGMENT_PATTERN.exec(name)?.[1])
        .filter((seq): seq is string => seq !== undefined)
        .map(Number)
        .sort((a, b) => a - b);
      const saved = await this.readCursor();
      for (const seq of found) {
        // Segments before the cursor were fully written before a crash kept them from being deleted.
        if (saved && seq < saved.segment) {
          await rm(this.segmentPath(seq), { force: true });
          continue;
        }
        this.segments.set(seq, (await stat(this.segmentPath(seq))).size);
      }
      const first = this.firstSegment();
      if (saved && first === saved.segment) this.cursor = { segment: saved.segment, offset: Math.min(saved.offset, this.segments.get(first) ?? 0) };
      else this.cursor = { segment: first ?? (saved ? saved.segment : 1), offset: 0 };
      let total = 0;
      for (const size of this.segments.values()) total += size;
      this.pending = total - this.cursor.offset;
      this.opened = true;
    });
  }

  /**
   * Appends one batch. Resolves true once it is on disk, false when it would
   * take the spool over its size limit (nothing is written then).
   */
  append(lines: readonly string[], precision: Precision): Promise<boolean> {
    return this.queue.run(async () => {
      this.assertOpen();
      if (lines.length === 0) return true;
      const record = encodeRecord(lines, precision);
      if (this.pending + record.length > this.options.maxBytes) return false;
      const target = await this.appendTarget();
      await target.handle.write(record);
      await target.handle.datasync();
      this.segments.set(target.segment, (this.segments.get(target.segment) ?? 0) + record.length);
      this.pending += record.length;
      return true;
    });
  }

  /** The oldest record not yet acknowledged, without removing it. */
  peek(): Promise<SpoolRecord | undefined> {
    return this.queue.run(async () => {
      this.assertOpen();
      this.peeked ??= await this.readHead();
      return this.peeked;
    });
  }

  /** Removes the record `peek` returned, durably; the next `peek` returns the one after it. */
  ack(record: SpoolRecord): Promise<void> {
    return this.queue.run(async () => {
      this.assertOpen();
      if (record.segment !== this.cursor.segment || record.offset !== this.cursor.offset) {
        throw new Error(`spool ack out of order: record at ${record.segment}:${record.offset}, cursor at ${this.cursor.segment}:${this.cursor.offset}`);
      }
      this.peeked = undefined;
      this.pending -= record.bytes;
      await this.advance({ segment: record.segment, offset: record.offset + record.bytes });
    });
  }

  close(): Promise<void> {
    return this.queue.run(async () => {
      const target = this.appendHandle;
      this.appendHandle = undefined;
      this.opened = false;
      this.peeked = undefined;
      this.segments.clear();
      if (target) await target.handle.close();
    });
  }

  private async readHead(): Promise<SpoolRecord | undefined> {
    for (;;) {
      const { segment, offset } = this.cursor;
      const size = this.segments.get(segment);
      if (size === undefined) return undefined;
      if (offset >= size) {
        // Left behind by a crash between the cursor update and the deletion, or empty.
        await this.advance({ segment, offset: size });
        continue;
      }
      const result = await this.readRecord(segment, offset, size);
      if (typeof result !== 'string') return result;
      const lost = size - offset;
      this.pending -= lost;
      this.options.onCorrupt?.({ segment, offset, bytes: lost, reason: result });
      // Nothing after a damaged record in this segment can be trusted; appends go to a fresh one.
      await this.advance({ segment, offset: size });
    }
  }

  /** Reads one record, or returns why it cannot be read. */
  private async readRecord(segment: number, offset: number, size: number): Promise<SpoolRecord | string> {
    if (size - offset < HEADER_BYTES) return 'truncated record header';
    const handle = await open(this.segmentPath(segment), 'r');
    try {
      const header = Buffer.alloc(HEADER_BYTES);
      await handle.read(header, 0, HEADER_BYTES, offset);
      const length = header.readUInt32BE(0);
      const checksum = header.readUInt32BE(4);
      if (length > size - offset - HEADER_BYTES) return 'truncated record';
      const payload = Buffer.alloc(length);
      await handle.read(payload, 0, length, offset + HEADER_BYTES);
      if (crc32(payload) !== checksum) return 'checksum mismatch';
      const [precision, ...lines] = payload.toString('utf8').split('\n');
      if (precision === undefined || !PRECISIONS.includes(precision)) return 'unknown precision';
      return { precision: precision as Precision, lines, segment, offset, bytes: HEADER_BYTES + length };
    } finally {
      await handle.close();
    }
  }

  /**
   * Moves the read cursor. A segment read to its end is deleted (the appending
   * one too: the next append starts a fresh file). The cursor file is replaced
   * first, so a crash in between leaves a segment that `open` deletes.
   */
  private async advance(to: Cursor): Promise<void> {
    const finished = to.offset >= (this.segments.get(to.segment) ?? 0);
    const next = finished ? { segment: this.nextSegment(to.segment) ?? to.segment + 1, offset: 0 } : to;
    await this.writeCursor(next);
    this.cursor = next;
    if (!finished) return;
    if (this.appendHandle?.segment === to.segment) await this.closeAppendHandle();
    this.segments.delete(to.segment);
    await rm(this.segmentPath(to.segment), { force: true });
  }

  private async appendTarget(): Promise<{ segment: number; handle: FileHandle }> {
    const current = this.appendHandle;
    if (current && (this.segments.get(current.segment) ?? 0) < this.segmentBytes) return current;
    if (current) await this.closeAppendHandle();
    const last = this.lastSegment();
    const segment = last === undefined ? this.cursor.segment : last + 1;
    const handle = await open(this.segmentPath(segment), 'a');
    this.appendHandle = { segment, handle };
    if (!this.segments.has(segment)) this.segments.set(segment, 0);
    await syncDirectory(this.options.dir);
    return this.appendHandle;
  }

  private async closeAppendHandle(): Promise<void> {
    const target = this.appendHandle;
    this.appendHandle = undefined;
    if (target) await target.handle.close();
  }

  private async readCursor(): Promise<Cursor | undefined> {
    let text: string;
    try {
      text = await readFile(this.cursorPath(), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const parsed = JSON.parse(text) as Partial<Cursor>;
    if (!Number.isSafeInteger(parsed.segment) || !Number.isSafeInteger(parsed.offset)) throw new Error(`spool cursor ${this.cursorPath()} is damaged: ${text}`);
    return { segment: parsed.segment as number, offset: parsed.offset as number };
  }

  private async writeCursor(cursor: Cursor): Promise<void> {
    const temporary = `${this.cursorPath()}.tmp`;
    await writeFile(temporary, JSON.stringify(cursor), { flush: true });
    await rename(temporary, this.cursorPath());
    await syncDirectory(this.options.dir);
  }

  private firstSegment(): number | undefined {
    let first: number | undefined;
    for (const seq of this.segments.keys()) if (first === undefined || seq < first) first = seq;
    return first;
  }

  private lastSegment(): number | undefined {
    let last: number | undefined;
    for (const seq of this.segments.keys()) if (last === undefined || seq > last) last = seq;
    return last;
  }

  private nextSegment(after: number): number | undefined {
    let next: number | undefined;
    for (const seq of this.segments.keys()) if (seq > after && (next === undefined || seq < next)) next = seq;
    return next;
  }

  private segmentPath(seq: number): string {
    return path.join(this.options.dir, `segment-${String(seq).padStart(12, '0')}.spool`);
  }

  private cursorPath(): string {
    return path.join(this.options.dir, 'cursor.json');
  }

  private assertOpen(): void {
    if (!this.opened) throw new Error('the spool is not open');
  }
}

function encodeRecord(lines: readonly string[], precision: Precision): Buffer {
  const payload = Buffer.from(`${precision}\n${lines.join('\n')}`, 'utf8');
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32BE(payload.length, 0);
  header.writeUInt32BE(crc32(payload), 4);
  return Buffer.concat([header, payload]);
}
