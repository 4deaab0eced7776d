/**
 * Revoked devices and certificates (README "Revocation"). An entry names a
 * whole device (`uid`: every certificate and its password) or one certificate
 * (`serial`: a rotation revokes only the old one, after a grace period).
 */
export interface Revocation {
  uid?: string;
  /** Lower-case hex without leading zeros (`normalizeSerial`). */
  serial?: string;
  reason: string;
  /** When it was recorded, ms since the epoch. */
  at: number;
  /** Who asked: the admin key name and channel (`ops (rest)`, `default (cli)`), `cli` (the embedded store, server stopped), `rotation`. */
  by: string;
  /** Refused from this time on (later than `at` for a rotation's grace period). */
  effectiveAt: number;
}

/** What a connecting (or connected) device presents. */
export interface Presented {
  uid: string;
  /** The client certificate's serial (any case, any leading zeros). */
  serial?: string;
  /** The client certificate in DER, to match it against a CRL's issuer. */
  raw?: Buffer;
}

/**
 * Sessions to close now: a device revoked or kicked, a certificate whose grace
 * period ended, or a changed CRL (`recheck`: every session is checked again).
 */
export type Notice = { kind: 'revoked'; uid: string } | { kind: 'kick'; uid: string } | { kind: 'recheck' };

export function normalizeSerial(serial: string): string {
  const hex = serial.toLowerCase().replace(/[^0-9a-f]/g, '');
  return hex.replace(/^0+(?=.)/, '');
}

/** Where an entry is stored in the KvStore. */
export function revocationKey(entry: Pick<Revocation, 'uid' | 'serial'>): string {
  if (entry.serial !== undefined) return `revocations/serial/${entry.serial}`;
  if (entry.uid !== undefined) return `revocations/uid/${entry.uid}`;
  throw new Error('a revocation names a uid or a serial');
}

export const REVOCATIONS_PREFIX = 'revocations/';
