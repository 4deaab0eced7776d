import { createHash, randomUUID, type Hash } from 'node:crypto';
import { mkdir, open, readdir, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { AdminError } from './protocol.js';

interface Upload {
  id: string;
  owner: string;
  file: string;
  handle: FileHandle;
  size: number;
  sha256?: string;
  /** Bytes accepted so far; chunks must arrive in order. */
  received: number;
  hash: Hash;
  /** Writes not yet on disk; `finish` waits for them. */
  writes: Set<Promise<void>>;
}

export interface FinishedUpload {
  file: string;
  size: number;
  sha256: string;
}

const FILE_PREFIX = 'admin-';
/** Uploads one connection may have open at once. */
const MAX_UPLOADS_PER_OWNER = 4;

/**
 * Firmware uploads in chunks over the admin socket, written straight to
 * `<store.path>/uploads/` so a large image never sits in memory. The finished
 * file goes to the OTA runner as `source: {kind: 'file'}`.
 */
export class UploadManager {
  private readonly uploads = new Map<string, Upload>();

  constructor(
    readonly dir: string,
    private readonly maxBytes: number,
  ) {}

  /** Creates the folder and removes files a previous run left behind (nothing is in flight at start). */
  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    for (const name of await readdir(this.dir)) {
      if (name.startsWith(FILE_PREFIX)) await rm(path.join(this.dir, name), { force: true });
    }
  }

  async begin(owner: string, size: number, sha256?: string): Promise<{ uploadId: string }> {
    if (size > this.maxBytes) throw new AdminError('INVALID_ARGUMENT', `size ${size} exceeds the upload limit of ${this.maxBytes} bytes`);
    let open_ = 0;
    for (const upload of this.uploads.values()) if (upload.owner === owner) open_++;
    if (open_ >= MAX_UPLOADS_PER_OWNER) throw new AdminError('TOO_MANY_PENDING', `at most ${MAX_UPLOADS_PER_OWNER} uploads per connection at once`);
    const id = randomUUID();
    const file = path.join(this.dir, `${FILE_PREFIX}${id}.bin`);
    const handle = await open(file, 'wx', 0o600);
    const upload: Upload = { id, owner, file, handle, size, received: 0, hash: createHash('sha256'), writes: new Set() };
    if (sha256 !== undefined) upload.sha256 = sha256.toLowerCase();
    this.uploads.set(id, upload);
    return { uploadId: id };
  }

  /** Appends a chunk at `offset`, which must be where the previous chunk ended. */
  async chunk(owner: string, uploadId: string, offset: number, data: Uint8Array): Promise<{ received: number }> {
    const upload = this.find(owner, uploadId);
    if (offset !== upload.received) throw new AdminError('INVALID_ARGUMENT', `expected offset ${upload.received}, got ${offset}`);
    if (upload.received + data.byteLength > upload.size) {
      throw new AdminError('INVALID_ARGUMENT', `chunk ends at ${upload.received + data.byteLength}, past the announced size ${upload.size}`);
    }
    // Claim the range and hash synchronously, so pipelined chunks stay in order.
    upload.received += data.byteLength;
    upload.hash.update(data);
    const write = upload.handle.write(data, 0, data.byteLength, offset).then(() => undefined);
    upload.writes.add(write);
    try {
      await write;
    } finally {
      upload.writes.delete(write);
    }
    return { received: upload.received };
  }

  /** Completes an upload; the caller owns the file from here and removes it with `discard`. */
  async finish(owner: string, uploadId: string): Promise<FinishedUpload> {
    const upload = this.find(owner, uploadId);
    if (upload.received !== upload.size) throw new AdminError('INVALID_ARGUMENT', `upload incomplete: ${upload.received} of ${upload.size} bytes`);
    this.uploads.delete(uploadId);
    await Promise.all(upload.writes);
    await upload.handle.close();
    const sha256 = upload.hash.digest('hex');
    if (upload.sha256 !== undefined && upload.sha256 !== sha256) {
      await rm(upload.file, { force: true });
      throw new AdminError('INVALID_ARGUMENT', `sha256 mismatch: announced ${upload.sha256}, received ${sha256}`);
    }
    return { file: upload.file, size: upload.size, sha256 };
  }

  async abort(owner: string, uploadId: string): Promise<void> {
    const upload = this.find(owner, uploadId);
    await this.remove(upload);
  }

  /** Removes an upload if it is still open (a REST body cut short); a finished or unknown one is left alone. */
  async drop(uploadId: string): Promise<void> {
    const upload = this.uploads.get(uploadId);
    if (upload) await this.remove(upload);
  }

  /** Removes every unfinished upload of a closed connection. */
  async abortOwner(owner: string): Promise<void> {
    for (const upload of [...this.uploads.values()]) if (upload.owner === owner) await this.remove(upload);
  }

  async stop(): Promise<void> {
    for (const upload of [...this.uploads.values()]) await this.remove(upload);
  }

  async discard(file: string): Promise<void> {
    await rm(file, { force: true });
  }

  get active(): number {
    return this.uploads.size;
  }

  private find(owner: string, uploadId: string): Upload {
    const upload = this.uploads.get(uploadId);
    // Another connection's upload id reads as unknown: ids are not shared.
    if (!upload || upload.owner !== owner) throw new AdminError('NOT_FOUND', `no upload ${uploadId} on this connection`);
    return upload;
  }

  private async remove(upload: Upload): Promise<void> {
    this.uploads.delete(upload.id);
    await Promise.allSettled(upload.writes);
    await upload.handle.close();
    await rm(upload.file, { force: true });
  }
}
