import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';

/** Where a generated API key lives when `admin.api_key` is unset. */
export function apiKeyFile(storePath: string): string {
  return path.join(storePath, 'admin-api-key');
}

export interface ResolvedApiKey {
  key: string;
  /** Set when the key came from (or was just written to) the key file. */
  file?: string;
  generated: boolean;
}

/**
 * The configured key, or the one in `<store.path>/admin-api-key`, generating it
 * (mode 0600, never overwritten) on first start.
 */
export async function resolveApiKey(configured: string | undefined, storePath: string): Promise<ResolvedApiKey> {
  if (configured !== undefined && configured !== '') return { key: configured, generated: false };
  const file = apiKeyFile(storePath);
  const existing = await readKeyFile(file);
  if (existing !== undefined) return { key: existing, file, generated: false };
  await mkdir(storePath, { recursive: true });
  const key = randomBytes(32).toString('base64url');
  try {
    // 'wx': two instances starting on one store must not overwrite each other's key.
    await writeFile(file, `${key}\n`, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const raced = await readKeyFile(file);
    if (raced === undefined) throw new Error(`${file} exists but holds no key`, { cause: error });
    return { key: raced, file, generated: false };
  }
  return { key, file, generated: true };
}

export async function readKeyFile(file: string): Promise<string | undefined> {
  try {
    const text = (await readFile(file, 'utf8')).trim();
    return text === '' ? undefined : text;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Checks candidate keys in constant time: both sides are hashed first, so the
 * comparison is between equal-length digests and leaks neither length nor prefix.
 */
export class ApiKeyVerifier {
  private readonly digest: Buffer;

  constructor(key: string) {
    this.digest = sha256(key);
  }

  matches(candidate: string): boolean {
    return timingSafeEqual(this.digest, sha256(candidate));
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * The key a CLI or script sent in a header: `Authorization: Bearer <key>` or
 * `ApiKey: <key>`. Browsers cannot set headers; they log in with the first message.
 * Never read from the query string (it ends up in logs and browser history).
 */
export function keyFromHeaders(request: IncomingMessage): string | undefined {
  const authorization = request.headers.authorization;
  if (authorization !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    return match?.[1] ?? '';
  }
  const apiKey = request.headers.apikey;
  if (typeof apiKey === 'string') return apiKey.trim();
  return undefined;
}

export interface AuthLimiterOptions {
  failuresPerWindow: number;
  windowMs: number;
  /** Addresses tracked at once; the oldest is forgotten first, so a flood of addresses cannot grow memory. */
  maxTracked?: number;
  now?: () => number;
}

/** Counts failed logins per remote address in a fixed window and refuses an address past the limit. */
export class AuthLimiter {
  private readonly failures = new Map<string, { count: number; windowStart: number }>();
  private readonly now: () => number;
  private readonly maxTracked: number;

  constructor(private readonly options: AuthLimiterOptions) {
    this.now = options.now ?? Date.now;
    this.maxTracked = options.maxTracked ?? 10_000;
  }

  /** True when this address may try (again). */
  allows(address: string): boolean {
    const entry = this.current(address);
    return entry === undefined || entry.count < this.options.failuresPerWindow;
  }

  recordFailure(address: string): void {
    const entry = this.current(address);
    if (entry) {
      entry.count++;
      return;
    }
    if (this.failures.size >= this.maxTracked) {
      const oldest = this.failures.keys().next();
      if (oldest.done !== true) this.failures.delete(oldest.value);
    }
    this.failures.set(address, { count: 1, windowStart: this.now() });
  }

  /** Seconds until the address may try again (for Retry-After). */
  retryAfterSeconds(address: string): number {
    const entry = this.current(address);
    if (!entry) return 0;
    return Math.max(1, Math.ceil((entry.windowStart + this.options.windowMs - this.now()) / 1000));
  }

  private current(address: string): { count: number; windowStart: number } | undefined {
    const entry = this.failures.get(address);
    if (entry && this.now() - entry.windowStart >= this.options.windowMs) {
      this.failures.delete(address);
      return undefined;
    }
    return entry;
  }
}
