import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { NucleonError } from '../errors.js';
import { randomSecret } from '../util/secret.js';
import { isValidUid } from '../protocol/index.js';
import type { KvStore } from '../store/index.js';

/**
 * Password credentials for MQTT logins, scrypt-hashed in the KvStore. Devices
 * (`devices/cred/<uid>`) and service accounts (`service/<name>`) are kept apart:
 * a service account has wider rights (README "ACL"), so a device password can
 * never log in as one.
 */

export type CredentialKind = 'device' | 'service';

interface StoredCredential {
  algorithm: 'scrypt';
  /** scrypt cost parameters, stored so they can be raised later without breaking old hashes. */
  N: number;
  r: number;
  p: number;
  salt: string;
  hash: string;
  createdAt: string;
}

export interface CredentialInfo {
  name: string;
  createdAt: string;
}

// OWASP's scrypt minimum (N=2^17 is recommended for interactive logins, but
// devices reconnect in bursts after an outage; 2^14 keeps a login near 30 ms).
const COST = { N: 16384, r: 8, p: 1 } as const;
const KEY_LENGTH = 32;
const SALT_BYTES = 16;
const MAX_PASSWORD_BYTES = 1024;

function scrypt(password: Buffer, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCallback(password, salt, KEY_LENGTH, { ...options, maxmem: 64 * 1024 * 1024 }, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

/**
 * Shortest password `add` accepts (device and service account alike): a
 * 5-character password falls to the login guard's budget of guesses in days.
 * Passwords stored before this bound still verify.
 */
export const MIN_PASSWORD_LENGTH = 12;

/** A generated password: 24 random bytes, base64url (32 characters). */
export function generatePassword(): string {
  return randomSecret(24);
}

export class CredentialStore {
  private readonly prefix: string;
  /** Hashed once per process: verifying an unknown name costs as much as a known one. */
  private decoy: Promise<StoredCredential> | undefined;

  constructor(
    private readonly store: KvStore,
    readonly kind: CredentialKind,
  ) {
    this.prefix = kind === 'device' ? 'devices/cred/' : 'service/';
  }

  /** Sets (or replaces) the password; generates one when none is given. Returns it. */
  async add(name: string, password?: string): Promise<string> {
    this.checkName(name);
    const secret = password ?? generatePassword();
    const length = [...secret].length;
    if (length < MIN_PASSWORD_LENGTH) {
      throw new NucleonError('INVALID_ARGUMENT', `the password is ${length} characters long, at least ${MIN_PASSWORD_LENGTH} are required (leave it out, or pass --generate, to have one generated)`);
    }
    if (Buffer.byteLength(secret) > MAX_PASSWORD_BYTES) throw new NucleonError('INVALID_ARGUMENT', `the password must be at most ${MAX_PASSWORD_BYTES} bytes`);
    await this.store.put(this.key(name), await hash(secret));
    return secret;
  }

  /** Returns false when there was nothing to remove. */
  async remove(name: string): Promise<boolean> {
    this.checkName(name);
    const existed = (await this.store.get(this.key(name))) !== undefined;
    if (existed) await this.store.del(this.key(name));
    return existed;
  }

  async has(name: string): Promise<boolean> {
    return isValidUid(name) && (await this.store.get(this.key(name))) !== undefined;
  }

  /** Constant-time check; false for unknown names, after the same amount of work. */
  async verify(name: string, password: string | Buffer): Promise<boolean> {
    const secret = typeof password === 'string' ? Buffer.from(password) : password;
    const stored = isValidUid(name) ? await this.store.get<StoredCredential>(this.key(name)) : undefined;
    const target = stored ?? (await (this.decoy ??= hash(generatePassword())));
    if (secret.length > MAX_PASSWORD_BYTES) return false;
    const expected = Buffer.from(target.hash, 'base64');
    const actual = await scrypt(secret, Buffer.from(target.salt, 'base64'), { N: target.N, r: target.r, p: target.p });
    return timingSafeEqual(actual, expected) && stored !== undefined;
  }

  async list(): Promise<CredentialInfo[]> {
    const result: CredentialInfo[] = [];
    for await (const [key, value] of this.store.entries<StoredCredential>(this.prefix)) {
      result.push({ name: key.slice(this.prefix.length), createdAt: value.createdAt });
    }
    return result;
  }

  private key(name: string): string {
    return `${this.prefix}${name}`;
  }

  private checkName(name: string): void {
    if (!isValidUid(name)) {
      const what = this.kind === 'device' ? 'device uid' : 'service account name';
      throw new NucleonError('INVALID_ARGUMENT', `invalid ${what} ${JSON.stringify(name)}: expected 1 to 64 of A-Z a-z 0-9 _ -`);
    }
  }
}

async function hash(password: string): Promise<StoredCredential> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scrypt(Buffer.from(password), salt, COST);
  return { algorithm: 'scrypt', ...COST, salt: salt.toString('base64'), hash: key.toString('base64'), createdAt: new Date().toISOString() };
}

export function deviceCredentials(store: KvStore): CredentialStore {
  return new CredentialStore(store, 'device');
}

export function serviceCredentials(store: KvStore): CredentialStore {
  return new CredentialStore(store, 'service');
}
