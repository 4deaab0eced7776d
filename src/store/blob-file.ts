import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { syncDirectory } from '../util/fs.js';
import { Readable } from 'node:stream';
import { BlobDigest, BlobRangeError, isSha256Hex, type BlobInfo, type BlobPutOptions, type BlobStore } from './blob.js';

/** Read size of streamed blobs (Node's default for file streams). */
const STREAM_CHUNK_BYTES = 64 * 1024;

export interface FileBlobStoreOptions {
  /** Open file handles kept for chunk reads (least recently used are closed first). */
  maxOpenFiles?: number;
  /** Told how many temporary files of interrupted writes `open()` removed. */
  onCleanup?: (removed: number) => void;
  /** Told about failures that have no caller to report to (closing an evicted handle). */
  onError?: (error: unknown, what: string) => void;
}

interface CachedHandle {
  handle: Promise<FileHandle>;
  users: number;
  /** Dropped from the cache; close once the last user is done. */
  retired: boolean;
}

export { BlobRangeError } from './blob.js';

/**
 * Blobs as files: `<dir>/sha256/<first two hex digits>/<sha256>`.
 *
 * A write goes to `<dir>/tmp/<random>.part`, is hashed while it streams, fsynced,
 * then renamed to its address and the directory fsynced. Rename is atomic on
 * one file system, so a crash leaves at most a `.part` file, which `open()`
 * deletes. Bytes are verified by construction: the address is the hash of what
 * was written.
 */
export class FileBlobStore implements BlobStore {
  private readonly blobDir: string;
  private readonly tmpDir: string;
  private readonly maxOpenFiles: number;
  private readonly handles = new Map<string, CachedHandle>();
  private closed = false;

  constructor(
    readonly dir: string,
    private readonly options: FileBlobStoreOptions = {},
  ) {
    this.blobDir = path.join(dir, 'sha256');
    this.tmpDir = path.join(dir, 'tmp');
    this.maxOpenFiles = options.maxOpenFiles ?? 32;
    if (!Number.isInteger(this.maxOpenFiles) || this.maxOpenFiles < 1) throw new RangeError('maxOpenFiles must be a positive integer');
  }

  async open(): Promise<void> {
    this.closed = false;
    await mkdir(this.blobDir, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
    // Only this store writes here, and nothing is being written before open().
    const leftovers = await readdir(this.tmpDir);
    for (const name of leftovers) await rm(path.join(this.tmpDir, name), { force: true, recursive: true });
    this.options.onCleanup?.(leftovers.length);
  }

  async close(): Promise<void> {
    this.closed = true;
    const cached = [...this.handles.values()];
    this.handles.clear();
    for (const entry of cached) {
      entry.retired = true;
      if (entry.users === 0) await closeQuietly(entry.handle);
    }
  }

  async put(source: AsyncIterable<Uint8Array> | Uint8Array, options: BlobPutOptions = {}): Promise<BlobInfo> {
    const tmpPath = path.join(this.tmpDir, `${randomBytes(12).toString('hex')}.part`);
    const digest = new BlobDigest(options.maxBytes);
    let file: FileHandle | undefined = await open(tmpPath, 'wx');
    try {
      for await (const chunk of digest.chunks(source)) await writeAll(file, chunk);
      await file.sync();
      await file.close();
      file = undefined;
      const { sha256, size } = digest.result();
      const finalPath = this.pathOf(sha256);
      await mkdir(path.dirname(finalPath), { recursive: true });
      if (await exists(finalPath)) {
        // Same address means same bytes: keep the stored copy.
        await unlink(tmpPath);
      } else {
        await rename(tmpPath, finalPath);
        await syncDirectory(path.dirname(finalPath));
      }
      return { sha256, size };
    } catch (error) {
      // The write already failed; that error is the one to report, not a failed close.
      if (file) await file.close().catch(() => undefined);
      await rm(tmpPath, { force: true });
      throw error;
    }
  }

  async stat(sha256: string): Promise<BlobInfo | undefined> {
    try {
      const info = await stat(this.pathOf(sha256));
      return { sha256, size: info.size };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async readRange(sha256: string, start: number, end: number): Promise<Buffer> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw new BlobRangeError(`invalid range [${start}, ${end})`);
    }
    const entry = this.acquire(sha256);
    try {
      const handle = await entry.handle;
      // No need to zero it: the buffer is filled completely or thrown away.
      const buffer = Buffer.allocUnsafe(end - start);
      let filled = 0;
      // A read may return fewer bytes than asked; bounded because each turn either fills or stops.
      while (filled < buffer.length) {
        const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, start + filled);
        if (bytesRead === 0) throw new BlobRangeError(`range [${start}, ${end}) is beyond the end of blob ${sha256} (${start + filled} bytes)`);
        filled += bytesRead;
      }
      return buffer;
    } finally {
      await this.release(sha256, entry);
    }
  }

  createReadStream(sha256: string, range?: { start: number; end: number }): Readable {
    const file = this.pathOf(sha256);
    if (!range) return createReadStream(file);
    // fs ranges are inclusive at the end; ours are not. An empty range has no bytes to read.
    if (range.end <= range.start) return Readable.from([]);
    // The default 64 KiB read buffer is wasted on a short range; never read more than it asks for.
    return createReadStream(file, { start: range.start, end: range.end - 1, highWaterMark: Math.min(range.end - range.start, STREAM_CHUNK_BYTES) });
  }

  async delete(sha256: string): Promise<void> {
    const entry = this.handles.get(sha256);
    if (entry) {
      this.handles.delete(sha256);
      entry.retired = true;
      if (entry.users === 0) await closeQuietly(entry.handle);
    }
    await rm(this.pathOf(sha256), { force: true });
  }

  async *list(): AsyncIterable<string> {
    for (const prefix of await readdir(this.blobDir)) {
      for (const name of await readdir(path.join(this.blobDir, prefix))) {
        if (isSha256Hex(name)) yield name;
      }
    }
  }

  private pathOf(sha256: string): string {
    // The address is checked before it becomes a path, so it can never leave the store.
    if (!isSha256Hex(sha256)) throw new BlobRangeError(`not a SHA-256 address: ${JSON.stringify(sha256)}`);
    return path.join(this.blobDir, sha256.slice(0, 2), sha256);
  }

  private acquire(sha256: string): CachedHandle {
    if (this.closed) throw new Error('blob store is closed');
    let entry = this.handles.get(sha256);
    if (entry) {
      // Re-insert: Map order is our least-recently-used order.
      this.handles.delete(sha256);
    } else {
      const handle = open(this.pathOf(sha256), 'r');
      // A failed open is reported to the reader; the cache must not keep it.
      handle.catch(() => undefined);
      entry = { handle, users: 0, retired: false };
    }
    this.handles.set(sha256, entry);
    entry.users++;
    this.evictBeyondLimit();
    return entry;
  }

  private async release(sha256: string, entry: CachedHandle): Promise<void> {
    entry.users--;
    const failed = await entry.handle.then(
      () => false,
      () => true,
    );
    if (failed && this.handles.get(sha256) === entry) {
      this.handles.delete(sha256);
      entry.retired = true;
    }
    if (entry.retired && entry.users === 0 && !failed) await closeQuietly(entry.handle);
  }

  private evictBeyondLimit(): void {
    for (const [key, entry] of this.handles) {
      if (this.handles.size <= this.maxOpenFiles) return;
      this.handles.delete(key);
      entry.retired = true;
      if (entry.users === 0) {
        closeQuietly(entry.handle).catch((error: unknown) => this.options.onError?.(error, 'closing an evicted blob handle'));
      }
    }
  }
}

async function writeAll(file: FileHandle, chunk: Uint8Array): Promise<void> {
  let written = 0;
  while (written < chunk.byteLength) {
    const result = await file.write(chunk, written, chunk.byteLength - written);
    written += result.bytesWritten;
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/** Closing a read-only handle cannot lose data; a failed open has nothing to close. */
async function closeQuietly(handle: Promise<FileHandle>): Promise<void> {
  try {
    await (await handle).close();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'EBADF') throw error;
  }
}
