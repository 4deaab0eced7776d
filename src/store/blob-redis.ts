import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import { connectIfIdle } from '../redis-connections.js';
import { BlobDigest, BlobRangeError, isSha256Hex, type BlobInfo, type BlobPutOptions, type BlobStore } from './blob.js';

export interface RedisBlobStoreOptions {
  /** Key prefix shared with the other Redis users of a cluster, e.g. `nucleon:`. */
  namespace?: string;
  /** An upload that stalls this long is dropped by Redis itself (its temporary key expires). */
  uploadIdleMs?: number;
  /** Bytes gathered before one APPEND; bounds memory per upload and round trips per MiB. */
  appendBytes?: number;
  /** Bytes per GETRANGE when streaming a whole blob or a large range. */
  readBytes?: number;
  /** Closes the connection (it belongs to whoever made it); called once by `close()`. */
  release?: () => Promise<void>;
}

// Makes a finished upload visible, or discards it when the bytes are already stored
// (same address, same bytes). Checks the length so a temporary key that expired
// mid-upload and was started again by a later APPEND can never become a blob.
const FINISH = `
local size = redis.call('STRLEN', KEYS[1])
if size ~= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return -1
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PERSIST', KEYS[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1`;

/**
 * Firmware bytes in Redis for cluster mode, content-addressed like the file
 * store: `<ns>blob:<sha256>` holds the bytes, `<ns>blobs` lists the addresses.
 *
 * An upload is appended to `<ns>blob-tmp:<random>` (expiring while idle, so a
 * crashed instance leaves nothing behind for long) and renamed to its address
 * by one Lua script once its hash is known: a blob is complete or absent.
 * Reads use GETRANGE, so a chunk costs the chunk's bytes, never the image's.
 * Redis strings hold at most 512 MiB, which bounds an image.
 */
export class RedisBlobStore implements BlobStore {
  private readonly namespace: string;
  private readonly uploadIdleMs: number;
  private readonly appendBytes: number;
  private readonly readBytes: number;
  private readonly setKey: string;
  private release: (() => Promise<void>) | undefined;

  constructor(
    private readonly redis: Redis,
    options: RedisBlobStoreOptions = {},
  ) {
    this.release = options.release;
    this.namespace = options.namespace ?? 'nucleon:';
    this.uploadIdleMs = options.uploadIdleMs ?? 60 * 60 * 1000;
    this.appendBytes = options.appendBytes ?? 1024 * 1024;
    this.readBytes = options.readBytes ?? 256 * 1024;
    this.setKey = `${this.namespace}blobs`;
  }

  async open(): Promise<void> {
    await connectIfIdle(this.redis);
  }

  async close(): Promise<void> {
    const release = this.release;
    this.release = undefined;
    await release?.();
  }

  async put(source: AsyncIterable<Uint8Array> | Uint8Array, options: BlobPutOptions = {}): Promise<BlobInfo> {
    const tmpKey = `${this.namespace}blob-tmp:${randomBytes(12).toString('hex')}`;
    const digest = new BlobDigest(options.maxBytes);
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (pendingBytes === 0) return;
      const data = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      await this.redis.multi().append(tmpKey, data).pexpire(tmpKey, this.uploadIdleMs).exec().then(failOnError);
    };
    try {
      // Created empty first, so an empty blob has a key too.
      await this.redis.set(tmpKey, '', 'PX', this.uploadIdleMs);
      for await (const chunk of digest.chunks(source)) {
        pending.push(Buffer.from(chunk));
        pendingBytes += chunk.byteLength;
        if (pendingBytes >= this.appendBytes) await flush();
      }
      await flush();
      const { sha256, size } = digest.result();
      const finished = (await this.redis.eval(FINISH, 3, tmpKey, this.blobKey(sha256), this.setKey, sha256, String(size))) as number;
      if (finished === -1) throw new Error('upload expired in Redis before it was finished (idle longer than the upload timeout)');
      return { sha256, size };
    } catch (error) {
      // The write already failed; that error is the one to report. The key expires anyway.
      await this.redis.del(tmpKey).catch(() => undefined);
      throw error;
    }
  }

  async stat(sha256: string): Promise<BlobInfo | undefined> {
    const key = this.blobKey(sha256);
    const results = await this.redis.multi().exists(key).strlen(key).exec();
    const [exists, size] = failOnError(results) as [number, number];
    return exists === 1 ? { sha256, size } : undefined;
  }

  async readRange(sha256: string, start: number, end: number): Promise<Buffer> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw new BlobRangeError(`invalid range [${start}, ${end})`);
    }
    const key = this.blobKey(sha256);
    if (end === start) {
      if ((await this.redis.exists(key)) === 0) throw new BlobRangeError(`blob ${sha256} is absent`);
      return Buffer.alloc(0);
    }
    // GETRANGE's end is inclusive; ours is not. It returns fewer bytes (or none) past the end.
    const data = await this.redis.getrangeBuffer(key, start, end - 1);
    if (data.length !== end - start) throw new BlobRangeError(`range [${start}, ${end}) is beyond the end of blob ${sha256} (${start + data.length} bytes) or the blob is absent`);
    return data;
  }

  createReadStream(sha256: string, range?: { start: number; end: number }): Readable {
    const key = this.blobKey(sha256);
    const step = this.readBytes;
    const redis = this.redis;
    async function* pieces(): AsyncGenerator<Buffer> {
      const start = range?.start ?? 0;
      let end = range?.end;
      if (end === undefined) {
        const results = failOnError(await redis.multi().exists(key).strlen(key).exec()) as [number, number];
        if (results[0] === 0) throw new BlobRangeError(`blob ${sha256} is absent`);
        end = results[1];
      }
      // Bounded: each turn reads `step` more bytes or stops.
      for (let at = start; at < end; at += step) {
        const upTo = Math.min(end, at + step);
        const data = await redis.getrangeBuffer(key, at, upTo - 1);
        if (data.length !== upTo - at) throw new BlobRangeError(`blob ${sha256} ends before byte ${upTo} or is absent`);
        yield data;
      }
    }
    return Readable.from(pieces(), { objectMode: false });
  }

  async delete(sha256: string): Promise<void> {
    await this.redis.multi().del(this.blobKey(sha256)).srem(this.setKey, sha256).exec().then(failOnError);
  }

  async *list(): AsyncIterable<string> {
    let cursor = '0';
    // SSCAN visits every member present for the whole scan at least once; a Set removes repeats.
    const seen = new Set<string>();
    do {
      const [next, members] = await this.redis.sscan(this.setKey, cursor, 'COUNT', 500);
      cursor = next;
      for (const member of members) {
        if (!isSha256Hex(member) || seen.has(member)) continue;
        seen.add(member);
        yield member;
      }
    } while (cursor !== '0');
  }

  private blobKey(sha256: string): string {
    if (!isSha256Hex(sha256)) throw new BlobRangeError(`not a SHA-256 address: ${JSON.stringify(sha256)}`);
    return `${this.namespace}blob:${sha256}`;
  }
}

/** MULTI/EXEC reports per-command errors in its result list; the first one is thrown. */
function failOnError(results: [Error | null, unknown][] | null): unknown[] {
  if (results === null) throw new Error('Redis transaction was discarded');
  const failed = results.find(([error]) => error !== null);
  if (failed?.[0]) throw failed[0];
  return results.map(([, value]) => value);
}
