import type { CampaignCommandRequest, ErrorInfo, EventOf } from '../events.js';

/**
 * Who drives the campaigns. A standalone instance always does; in cluster
 * mode (src/cluster/lease-keeper.ts) only the holder of a Redis lease does,
 * and the others keep their campaigns runner idle but for forwarding what
 * their devices do (`ObservationRelay`).
 */
export interface DrivingSeat {
  /** This instance's id, as `holder()` names it. */
  readonly instanceId: string;
  /**
   * Starts contending for the seat. `onChange(true)` when this instance takes
   * it; `onChange(false)` the moment it may no longer act as driver (lease lost,
   * expired, or given up), before any further decision could be written.
   */
  start(onChange: (driving: boolean) => void): Promise<void>;
  /** Stops contending and gives the seat up, so another instance takes it without waiting for the TTL. */
  stop(): Promise<void>;
  /** Whether this instance may write decisions now: checked before each batch (the fence). */
  readonly held: boolean;
  /** The instance driving now, if any. */
  holder(): Promise<string | undefined>;
}

/** The device events the campaigns watch; non-driving instances forward theirs to the driver. */
export const OBSERVED_TYPES = ['DeviceConnected', 'DeviceDisconnected', 'TelemetryReceived', 'OtaRequest', 'DeviceFirmwareUpdated'] as const;
export type ObservedEvent = EventOf<(typeof OBSERVED_TYPES)[number]>;

/** What the driver answered to a campaign command another instance forwarded. */
export type CommandAnswer = { result: unknown } | { error: ErrorInfo };

/**
 * Carries device events from the instances their devices are on to the
 * driving instance, and campaign commands an operator sent to another
 * instance to the driver and its answer back.
 */
export interface ObservationRelay {
  /** Opens the relay's connections (every instance, driving or not, so health shows them). */
  open(): Promise<void>;
  /** Starts receiving what other instances forward: device events, and commands to run (only the driver listens). */
  listen(deliver: (event: ObservedEvent) => void, run: (request: CampaignCommandRequest) => Promise<CommandAnswer>): Promise<void>;
  /** Follower: has the driver run a command and waits for its answer (UNAVAILABLE when none drives or it does not answer in time). */
  ask(request: CampaignCommandRequest): Promise<CommandAnswer>;
  /** Stops receiving. */
  unlisten(): Promise<void>;
  /** Sends one event to the driver; fire and forget (failures are logged and counted by the relay). */
  forward(event: ObservedEvent): void;
  /** Driver: tells the others a campaign changed (created, finished), so they re-read whose events to forward now. */
  announceChange(): void;
  /** Follower: called when the driver announced a change. */
  onChange(listener: () => void): void;
  /** Closes the relay's connections. */
  close(): Promise<void>;
}

export function isObserved(event: { type: string }): event is ObservedEvent {
  return (OBSERVED_TYPES as readonly string[]).includes(event.type);
}
