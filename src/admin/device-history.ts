import type { AuthMethod } from '../events.js';

/** The bounds of the per-device history kept by the admin runner (README "Device history"). */
export interface HistoryBounds {
  sessions: number;
  firmware: number;
  messages: number;
  /** Bytes of an app message's payload kept to show on request; the rest is cut (`payloadTruncated`). */
  payloadBytes: number;
  /** Devices with a history; past it the device that was least recently active loses its history first. */
  devices: number;
}

/** About 85 MB when all 10,000 devices have full histories (test/unit/console-api.test.ts measures it with CONSOLE_FIGURES_DEVICES=10000). */
export const DEFAULT_HISTORY_BOUNDS: HistoryBounds = { sessions: 20, firmware: 10, messages: 20, payloadBytes: 128, devices: 10_000 };

export interface SessionEntry {
  connectedAt?: number;
  disconnectedAt?: number;
  reason?: string;
  remoteAddress?: string;
  authMethod?: AuthMethod;
  instance?: string;
  clientId?: string;
}

export interface FirmwareEntry {
  version: string;
  at: number;
  source: 'telemetry' | 'ota';
}

export interface MessageEntry {
  at: number;
  target: string;
  size: number;
  /** The first `payloadBytes` bytes as base64: one string costs a fraction of a Uint8Array object per message. */
  payload: string;
  payloadTruncated: boolean;
}

export interface CertificateIdentity {
  serial: string;
  subject: string;
  notAfter: number;
}

/**
 * A session as kept: every field declared up front, so all sessions share one
 * object shape (an object literal that got `disconnectedAt` and `reason` later
 * measured about 400 bytes a session at 10,000 devices).
 */
class StoredSession {
  disconnectedAt: number | undefined = undefined;
  reason: string | undefined = undefined;

  constructor(
    readonly connectedAt: number | undefined,
    readonly clientId: string | undefined,
    readonly remoteAddress: string | undefined,
    readonly authMethod: AuthMethod | undefined,
    readonly instance: string | undefined,
  ) {}

  entry(): SessionEntry {
    const entry: SessionEntry = {};
    if (this.connectedAt !== undefined) entry.connectedAt = this.connectedAt;
    if (this.disconnectedAt !== undefined) entry.disconnectedAt = this.disconnectedAt;
    if (this.reason !== undefined) entry.reason = this.reason;
    if (this.remoteAddress !== undefined) entry.remoteAddress = this.remoteAddress;
    if (this.authMethod !== undefined) entry.authMethod = this.authMethod;
    if (this.instance !== undefined) entry.instance = this.instance;
    if (this.clientId !== undefined) entry.clientId = this.clientId;
    return entry;
  }
}

interface History {
  /** Oldest first; read newest first. */
  sessions: StoredSession[];
  firmware: FirmwareEntry[];
  messages: MessageEntry[];
  certificate?: CertificateIdentity;
  again: boolean;
}

/**
 * What the device page shows beyond the fleet record: sessions with their
 * disconnect reasons, firmware changes, the last app messages and the
 * certificate a device last logged in with. In memory on the instance the
 * device is connected to (in a cluster each instance has the sessions it
 * held), bounded per device and in the number of devices (CLOCK order, as
 * TelemetryRings).
 */
export class DeviceHistory {
  private readonly devices = new Map<string, History>();

  constructor(private readonly bounds: HistoryBounds = DEFAULT_HISTORY_BOUNDS) {}

  connected(uid: string, session: Omit<SessionEntry, 'disconnectedAt' | 'reason'>, certificate?: CertificateIdentity): void {
    const history = this.of(uid);
    push(history.sessions, new StoredSession(session.connectedAt, session.clientId, session.remoteAddress, session.authMethod, session.instance), this.bounds.sessions);
    if (certificate) history.certificate = certificate;
  }

  disconnected(uid: string, clientId: string, at: number, reason: string): void {
    const history = this.of(uid);
    // The newest open session of this connection; a takeover's goodbye may come after the new hello.
    for (let i = history.sessions.length - 1; i >= 0; i--) {
      const session = history.sessions[i] as StoredSession;
      if (session.disconnectedAt === undefined && (session.clientId === undefined || session.clientId === clientId)) {
        session.disconnectedAt = at;
        session.reason = reason;
        return;
      }
    }
    // Its hello was before this history began (a restart, an evicted history).
    const session = new StoredSession(undefined, clientId, undefined, undefined, undefined);
    session.disconnectedAt = at;
    session.reason = reason;
    push(history.sessions, session, this.bounds.sessions);
  }

  firmware(uid: string, version: string, at: number, source: FirmwareEntry['source']): void {
    const known = this.devices.get(uid)?.firmware.at(-1);
    if (known?.version === version) return;
    push(this.of(uid).firmware, { version, at, source }, this.bounds.firmware);
  }

  message(uid: string, target: string, payload: Uint8Array, at: number): void {
    const kept = Buffer.from(payload.buffer, payload.byteOffset, Math.min(payload.byteLength, this.bounds.payloadBytes));
    push(this.of(uid).messages, { at, target, size: payload.byteLength, payload: kept.toString('base64'), payloadTruncated: kept.byteLength < payload.byteLength }, this.bounds.messages);
  }

  read(uid: string): { sessions: SessionEntry[]; firmware: FirmwareEntry[]; messages: MessageEntry[]; certificate?: CertificateIdentity } {
    const history = this.devices.get(uid);
    if (!history) return { sessions: [], firmware: [], messages: [] };
    return {
      sessions: history.sessions.map((session) => session.entry()).reverse(),
      firmware: [...history.firmware].reverse(),
      messages: [...history.messages].reverse(),
      ...(history.certificate ? { certificate: history.certificate } : {}),
    };
  }

  forget(uid: string): void {
    this.devices.delete(uid);
  }

  get size(): number {
    return this.devices.size;
  }

  private of(uid: string): History {
    const known = this.devices.get(uid);
    if (known) {
      known.again = true;
      return known;
    }
    const history: History = { sessions: [], firmware: [], messages: [], again: false };
    this.devices.set(uid, history);
    // CLOCK order with one iterator (see TelemetryRings.evict): each device is passed over at most twice.
    let passes = this.devices.size * 2;
    for (const [oldUid, old] of this.devices) {
      if (this.devices.size <= this.bounds.devices || passes-- <= 0) break;
      this.devices.delete(oldUid);
      if (old.again) {
        old.again = false;
        this.devices.set(oldUid, old);
      }
    }
    return history;
  }
}

/** Appends and drops the oldest past `max`. */
function push<T>(list: T[], entry: T, max: number): void {
  list.push(entry);
  if (list.length > max) list.splice(0, list.length - max);
}
