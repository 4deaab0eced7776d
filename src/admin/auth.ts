import { createHash, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import { NucleonError } from '../errors.js';
import { randomSecret } from '../util/secret.js';
import { addressBlock } from '../util/address-block.js';

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
  const key = randomSecret(32);
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

export type AdminRole = 'admin' | 'read-only';

/** Who sent an admin command: the key's name and role (README "Admin keys and roles"). */
export interface AdminActor {
  name: string;
  role: AdminRole;
}

interface KnownKey extends AdminActor {
  digest: Buffer;
}

/** A key as configured: the secret itself, or the SHA-256 of it (hex). */
export type KeySpec = AdminActor & ({ key: string } | { sha256: string });

/**
 * Checks candidate keys in constant time: the candidate is hashed once and
 * compared with every key's digest, all of them every time, so neither the
 * key's length and prefix nor which key matched shows in the time taken.
 */
export class AdminKeys {
  private readonly keys: readonly KnownKey[];

  constructor(specs: readonly KeySpec[]) {
    this.keys = specs.map((spec) => ({ name: spec.name, role: spec.role, digest: 'key' in spec ? sha256(spec.key) : Buffer.from(spec.sha256, 'hex') }));
  }

  /** The key's actor, or undefined for a wrong key. */
  match(candidate: string): AdminActor | undefined {
    const digest = sha256(candidate);
    let found: KnownKey | undefined;
    for (const key of this.keys) {
      // No early exit: every comparison runs whatever the result.
      const equal = timingSafeEqual(key.digest, digest);
      if (equal && found === undefined) found = key;
    }
    return found ? { name: found.name, role: found.role } : undefined;
  }

  get names(): string[] {
    return this.keys.map((key) => key.name);
  }
}

/** Reads the keys of `admin.keys` given as files (the same rules as the generated key file: trimmed, at least 16 characters). */
export async function loadKeySpecs(keys: readonly { name: string; role: AdminRole; key_file?: string | undefined; key_sha256?: string | undefined }[]): Promise<KeySpec[]> {
  const specs: KeySpec[] = [];
  for (const [index, key] of keys.entries()) {
    if (key.key_sha256 !== undefined) {
      specs.push({ name: key.name, role: key.role, sha256: key.key_sha256.toLowerCase() });
      continue;
    }
    const file = key.key_file ?? '';
    let text: string | undefined;
    try {
      text = await readKeyFile(file);
    } catch (error) {
      throw new NucleonError('CONFIG_INVALID', `admin.keys.${index}.key_file: cannot read ${file} (key "${key.name}"): ${(error as Error).message}`, { cause: error });
    }
    if (text === undefined || text.length < 16) {
      throw new NucleonError('CONFIG_INVALID', `admin.keys.${index}.key_file: ${file} (key "${key.name}") ${text === undefined ? 'does not exist or is empty' : 'holds fewer than 16 characters'}`);
    }
    specs.push({ name: key.name, role: key.role, key: text });
  }
  return specs;
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
  /** Failed logins per address block (see addressBlock) in one window. */
  failuresPerWindow: number;
  /** Failed logins from all addresses together in one window. */
  globalFailuresPerWindow: number;
  windowMs: number;
  /** Blocks tracked at once; the oldest is forgotten first, so a flood of addresses cannot grow memory. */
  maxTracked?: number;
  now?: () => number;
}

interface Window {
  count: number;
  start: number;
}

/**
 * Counts failed logins per address block (IPv4 /24, IPv6 /64, all of loopback
 * as one) and over all addresses, each in a fixed window. Past either limit
 * the address is `limited`: the caller refuses a wrong key with 429 and
 * Retry-After instead of 401, and stops logging each one.
 *
 * It never refuses the right key: the caller checks the key first and only
 * asks here when it was wrong. An attacker on the operator's own block (every
 * local process is on loopback) could otherwise lock the real CLI out at will.
 * The price is that a limited address still learns whether a guess was right,
 * so the limit does not slow guessing; what stops guessing is the key (at
 * least 16 characters; a generated one has 256 random bits). What the limit
 * gives is a bounded, quiet answer to floods of wrong keys and a clear count
 * of them. The global budget keeps that true when the guesses come from more
 * blocks than are tracked.
 */
export class AuthLimiter {
  private readonly blocks = new Map<string, Window>();
  private global: Window = { count: 0, start: Number.NEGATIVE_INFINITY };
  private readonly now: () => number;
  private readonly maxTracked: number;

  constructor(private readonly options: AuthLimiterOptions) {
    this.now = options.now ?? Date.now;
    this.maxTracked = options.maxTracked ?? 10_000;
  }

  /** True while wrong keys from this address get 429: its block or everyone is past the limit. */
  limited(address: string): boolean {
    return this.blockLimited(addressBlock(address)) || this.globalLimited();
  }

  recordFailure(address: string): void {
    const now = this.now();
    if (now - this.global.start >= this.options.windowMs) this.global = { count: 0, start: now };
    this.global.count++;
    const block = addressBlock(address);
    const entry = this.current(block);
    if (entry) {
      entry.count++;
      return;
    }
    if (this.blocks.size >= this.maxTracked) {
      const oldest = this.blocks.keys().next();
      if (oldest.done !== true) this.blocks.delete(oldest.value);
    }
    this.blocks.set(block, { count: 1, start: now });
  }

  /** Seconds until wrong keys from this address are checked again (for Retry-After); 0 when not limited. */
  retryAfterSeconds(address: string): number {
    const block = addressBlock(address);
    const ends: number[] = [];
    if (this.blockLimited(block)) ends.push((this.blocks.get(block)?.start ?? 0) + this.options.windowMs);
    if (this.globalLimited()) ends.push(this.global.start + this.options.windowMs);
    if (ends.length === 0) return 0;
    return Math.max(1, Math.ceil((Math.max(...ends) - this.now()) / 1000));
  }

  /** Blocks tracked now (bounded by maxTracked). */
  get tracked(): number {
    return this.blocks.size;
  }

  private blockLimited(block: string): boolean {
    const entry = this.current(block);
    return entry !== undefined && entry.count >= this.options.failuresPerWindow;
  }

  private globalLimited(): boolean {
    return this.now() - this.global.start < this.options.windowMs && this.global.count >= this.options.globalFailuresPerWindow;
  }

  private current(block: string): Window | undefined {
    const entry = this.blocks.get(block);
    if (entry && this.now() - entry.start >= this.options.windowMs) {
      this.blocks.delete(block);
      return undefined;
    }
    return entry;
  }
}
