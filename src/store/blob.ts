import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';

/**
 * Where firmware bytes live: content-addressed by SHA-256 (hex, lower case), so
 * equal images are stored once. Metadata (ids, versions, links) stays in the
 * KvStore; a blob is only bytes.
 *
 * Implementations must make `put` atomic: a blob is either complete and
 * verified or not visible at all, even when the process dies mid-write.
 * The embedded one is `FileBlobStore`; a Redis one can implement the same.
 */
export interface BlobInfo {
  sha256: string;
  size: number;
}

export interface BlobPutOptions {
  /** Refuse (and discard) sources larger than this many bytes. */
  maxBytes?: number;
}

export interface BlobStore {
  /** Prepares storage and removes leftovers of interrupted writes. */
  open(): Promise<void>;
  /** Closes cached handles. Safe to call twice. */
  close(): Promise<void>;
  /** Stores the bytes of `source`; visible only once complete. Returns its address. */
  put(source: AsyncIterable<Uint8Array> | Uint8Array, options?: BlobPutOptions): Promise<BlobInfo>;
  /** Size of a stored blob, or undefined when absent. */
  stat(sha256: string): Promise<BlobInfo | undefined>;
  /** Reads exactly `[start, end)`; only that range is read from storage. */
  readRange(sha256: string, start: number, end: number): Promise<Buffer>;
  /** Streams `[start, end)` (the whole blob without a range). */
  createReadStream(sha256: string, range?: { start: number; end: number }): Readable;
  /** Removes a blob; absent blobs are fine. */
  delete(sha256: string): Promise<void>;
  /** Every stored blob address, for sweeping blobs no image references. */
  list(): AsyncIterable<string>;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function isSha256Hex(value: string): boolean {
  return SHA256_HEX.test(value);
}

/** Thrown for a read of bytes the blob does not have, or of a blob that is absent, or a source over the limit. */
export class BlobRangeError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = 'BlobRangeError';
  }
}

/**
 * What every `put` does to its source on the way to storage: hash it, count it,
 * and refuse it past `maxBytes`, so the implementations differ only in where
 * the chunks go.
 */
export class BlobDigest {
  private readonly hash = createHash('sha256');
  private size = 0;

  constructor(private readonly maxBytes?: number) {}

  async *chunks(source: AsyncIterable<Uint8Array> | Uint8Array): AsyncGenerator<Uint8Array> {
    for await (const chunk of source instanceof Uint8Array ? [source] : source) {
      this.size += chunk.byteLength;
      if (this.maxBytes !== undefined && this.size > this.maxBytes) {
        throw new BlobRangeError(`blob is larger than the limit of ${this.maxBytes} bytes`);
      }
      this.hash.update(chunk);
      yield chunk;
    }
  }

  /** Call once, after `chunks` is exhausted. */
  result(): BlobInfo {
    return { sha256: this.hash.digest('hex'), size: this.size };
  }
}
