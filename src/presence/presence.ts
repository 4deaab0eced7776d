import type { AuthMethod } from '../events.js';

/** A device that is online: the connection that stands for it now. */
export interface PresenceEntry {
  uid: string;
  /** The instance holding the connection (`Presence.instanceId` for this one). */
  instance: string;
  clientId: string;
  connectedAt: number;
  remoteAddress: string;
  authMethod: AuthMethod;
}

/** Told about every change of a device's entry; `entry` undefined: it went offline. */
export type PresenceListener = (uid: string, entry: PresenceEntry | undefined, previous: PresenceEntry | undefined) => void;

/**
 * Who is online: the one answer every runner reads (the OTA runner's pushes to
 * online group members, the admin fleet view, an application). A device is
 * online while at least one of its connections is open; in cluster mode that
 * is a connection on any instance.
 */
export interface Presence {
  get(uid: string): PresenceEntry | undefined;
  isOnline(uid: string): boolean;
  entries(): IterableIterator<PresenceEntry>;
  /** Devices online. */
  readonly size: number;
  /** This instance's id, as found in `PresenceEntry.instance`. */
  readonly instanceId: string;
  /** Whether entries may come from other instances (cluster mode). */
  readonly cluster: boolean;
  /** Returns the unsubscribe function. */
  onChange(listener: PresenceListener): () => void;
}

/** A device connection opened on this instance, as the MQTT gateway reports it. */
export interface DeviceConnection {
  uid: string;
  clientId: string;
  remoteAddress: string;
  authMethod: AuthMethod;
  /** When it connected, ms since the epoch. */
  at: number;
}

/**
 * The writing side, for the MQTT gateway only, and the lifecycle, for Nucleon.
 * Connections are told apart by identity, not by client id: a session takeover
 * reconnects with the same client id before the old connection's goodbye.
 */
export interface PresenceService extends Presence {
  /**
   * A connection opened. Returns its entry, which stands for this connection
   * (by identity) until it is handed to `disconnected`: a value the caller
   * keeps, not a closure per connection.
   */
  connected(connection: DeviceConnection): PresenceEntry;
  /** The connection `entry` stands for closed (a second call does nothing). */
  disconnected(entry: PresenceEntry): void;
  /** Device connections open on this instance (a device may briefly hold two). */
  readonly connections: number;
  start(): Promise<void>;
  /** Safe to call twice. */
  stop(): Promise<void>;
}
