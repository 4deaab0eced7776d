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

export const DEFAULT_HISTORY_BOUNDS: HistoryBounds = { sessions: 50, firmware: 20, messages: 50, payloadBytes: 256, devices: 20_000 };

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
  payload: Uint8Array;
  payloadTruncated: boolean;
}

export interface CertificateIdentity {
  serial: string;
  subject: string;
  notAfter: number;
}

interface History {
  /** Oldest first; read newest first. */
  sessions: SessionEntry[];
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
    push(history.sessions, { ...session }, this.bounds.sessions);
    if (certificate) history.certificate = certificate;
  }

  disconnected(uid: string, clientId: string, at: number, reason: string): void {
    const history = this.of(uid);
    // The newest open session of this connection; a takeover's goodbye may come after the new hello.
    for (let i = history.sessions.length - 1; i >= 0; i--) {
      const session = history.sessions[i] as SessionEntry;
      if (session.disconnectedAt === undefined && (session.clientId === undefined || session.clientId === clientId)) {
        session.disconnectedAt = at;
        session.reason = reason;
        return;
      }
    }
    // Its hello was before this history began (a restart, an evicted history).
    push(history.sessions, { disconnectedAt: at, reason, clientId }, this.bounds.sessions);
  }

  firmware(uid: string, version: string, at: number, source: FirmwareEntry['source']): void {
    const known = this.devices.get(uid)?.firmware.at(-1);
    if (known?.version === version) return;
    push(this.of(uid).firmware, { version, at, source }, this.bounds.firmware);
  }

  message(uid: string, target: string, payload: Uint8Array, at: number): void {
    const kept = payload.byteLength > this.bounds.payloadBytes ? payload.slice(0, this.bounds.payloadBytes) : payload.slice();
    push(this.of(uid).messages, { at, target, size: payload.byteLength, payload: kept, payloadTruncated: kept.byteLength < payload.byteLength }, this.bounds.messages);
  }

  read(uid: string): { sessions: SessionEntry[]; firmware: FirmwareEntry[]; messages: MessageEntry[]; certificate?: CertificateIdentity } {
    const history = this.devices.get(uid);
    if (!history) return { sessions: [], firmware: [], messages: [] };
    return {
      sessions: history.sessions.map((s) => ({ ...s })).reverse(),
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
    let passes = this.devices.size * 2;
    while (this.devices.size > this.bounds.devices && passes-- > 0) {
      const oldest = this.devices.entries().next();
      if (oldest.done === true) break;
      const [oldUid, old] = oldest.value;
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
