/**
 * The one Event union that flows through the EventBroker.
 *
 * Adding an event is one edit here plus the runners that accept it; the
 * exhaustive switches elsewhere (see `assertNever`) make the compiler list them.
 */

/** Telemetry as a device reports it on `<uid>/tel/p` (Pyrinas field names). */
export interface Telemetry {
  version?: string;
  rsrp?: number;
  rssi_hub?: number;
  rssi_client?: number;
  /** Fields configured in `[[telemetry.fields]]`, by their configured name (README "Custom telemetry fields"). */
  extra?: Record<string, TelemetryExtraValue>;
}

export type TelemetryFieldType = 'int' | 'float' | 'bool' | 'string';

/** An extra field's value with its configured type, so InfluxDB gets the same field type whatever the value (an int in a float field stays a float). */
export type TelemetryExtraValue = { type: 'int' | 'float'; value: number } | { type: 'bool'; value: boolean } | { type: 'string'; value: string };

export interface InfluxPoint {
  measurement: string;
  tags: Record<string, string>;
  fields: Record<string, number | string | boolean>;
  /** Milliseconds since the epoch; the writer's clock when absent. */
  timestampMs?: number;
}

export type OtaCommand = 'Check' | 'Done' | 'DownloadBytes';

export interface OtaVersion {
  major: number;
  minor: number;
  patch: number;
  commit: number;
  /** The short git hash, e.g. `g965b9df` (8 ASCII characters on the wire). */
  hash: string;
}

/** The package a device is told about on `<uid>/ota/s` (never carries the bytes). */
export interface OtaPackage {
  id: string;
  version: OtaVersion;
  size: number;
  /** RFC 3339, e.g. `2026-11-01T12:00:00Z`. */
  dateAdded: string;
  /** Where firmware that pulls over HTTP(S) can fetch the bytes; not sent to Pyrinas firmware. */
  url?: string;
}

export interface OtaChunk {
  startPos: number;
  endPos: number;
  data: Uint8Array;
  len: number;
}

export type ImageType = 'primary' | 'secondary';

export interface ImageInfo {
  id: string;
  version: OtaVersion;
  size: number;
  sha256: string;
  imageType: ImageType;
  dateAdded: string;
  description?: string;
}

export interface GroupInfo {
  name: string;
  imageId?: string;
  devices: string[];
}

export type AuthMethod = 'certificate' | 'password' | 'anonymous' | 'service';

export interface ErrorInfo {
  /** Stable, documented code such as `NOT_FOUND` or `INVALID_ARGUMENT`. */
  code: string;
  message: string;
}

/** Where the bytes of a new image come from. */
export type ImageSource = { kind: 'bytes'; data: Uint8Array } | { kind: 'file'; path: string };

/** How far a device has come with its firmware. */
export interface DeviceFirmwareState {
  uid: string;
  reportedVersion?: string;
  lastCheckAt?: string;
  assignedImageId?: string;
  /** Bytes served of `downloadImageId` (MQTT chunks and HTTP ranges together; retries count again). */
  bytesServed: number;
  /** The image the device last downloaded from; `bytesServed` restarts at 0 when it changes. */
  downloadImageId?: string;
  lastDownloadAt?: string;
  doneAt?: string;
  doneImageId?: string;
}

// ---- OTA campaigns (src/campaigns, README "Campaigns") ----------------------

/**
 * The bytes a campaign's devices may be served, MQTT chunks and HTTP ranges
 * together, while they download `imageId`. Set again whole when it changes;
 * other devices and other images are not limited by it.
 */
export interface DownloadBudget {
  campaignId: string;
  imageId: string;
  bytesPerSecond: number;
  /** A request that would wait longer than this is not served now: no reply over MQTT, 503 with Retry-After over HTTP. */
  maxDelayMs: number;
  devices: string[];
}

/** Where a device stands in a campaign; `healthy` and `failed` are final. */
export type CampaignDeviceStateName = 'pending' | 'notified' | 'downloading' | 'downloaded' | 'rebooting' | 'confirmed' | 'healthy' | 'failed';

/** Why a device failed in a campaign (README "Campaigns" says how each is detected). */
export type CampaignFailReason = 'download_timeout' | 'no_reconnect' | 'version_reverted' | 'boot_loop' | 'telemetry_silent' | 'device_rejected' | 'link_refused';

/** One device of a campaign, as stored under `campaign/device/<id>/<uid>`. */
export interface CampaignDeviceStatus {
  uid: string;
  /** Index into the campaign's stages (the canary stage, when there is one, is 0). */
  stage: number;
  state: CampaignDeviceStateName;
  /** The image it was linked to when the campaign was created: where a rollback takes it. */
  previousImageId?: string;
  /** Times in ms since the epoch. */
  notifiedAt?: number;
  downloadedAt?: number;
  /** When it went offline or reconnected after the download (the reboot). */
  rebootAt?: number;
  confirmedAt?: number;
  /** Its first old-version report after the reboot: a revert unless it asks for more of the image within `health.revertGraceMs`. */
  revertSeen?: { at: number; version: string };
  lastTelemetryAt?: number;
  settledAt?: number;
  /** Bytes served of the campaign image so far, and that as a percentage of its size. */
  bytes?: number;
  percent?: number;
  /** Connections opened since the download, inside the boot-loop window. */
  recentConnects?: number[];
  reason?: CampaignFailReason;
  /** What failed, in words (e.g. the refused link's error). */
  detail?: string;
  /** Set when an abort with rollback linked it back. */
  rolledBackTo?: string;
}

export type CampaignState = 'running' | 'paused' | 'aborted' | 'completed';

/** A campaign as events and the admin protocol show it. */
export interface CampaignSummary {
  id: string;
  imageId: string;
  state: CampaignState;
  /** The stage being rolled out (index into `stages`). */
  stage: number;
  /** `soakMs`: how long the stage runs at least (the dashboard's earliest-end estimate needs it). */
  stages: { label: string; devices: number; soakMs: number; startedAt?: number }[];
  /** Devices per state, over the whole campaign. */
  counts: Record<CampaignDeviceStateName, number>;
  /** Why it is in its state now: `created`, `operator`, `abort_rule`, `gate_not_met`, `stage_passed`, `all_stages_passed`. */
  reason: string;
  createdAt: number;
  updatedAt: number;
}

/** What an operator (admin `campaigns.*`) or library code asks of the campaigns runner. */
export type CampaignCommandRequest =
  | { command: 'create'; spec: unknown }
  | { command: 'list' }
  | { command: 'show'; id: string; devices?: boolean }
  | { command: 'pause'; id: string }
  | { command: 'resume'; id: string }
  | { command: 'abort'; id: string; rollback?: boolean }
  | { command: 'promote'; id: string };

/**
 * Where a device event sits in the durable ingest log (README "Durable
 * ingest"). An event read back after a restart carries the same position as
 * when it was first handed out, so a handler can drop a duplicate. Events are
 * handed out before they are durable; one lost in a crash had a number that
 * is never given to another message.
 */
export interface LogPosition {
  /** The log's own id and the record's sequence number, `<log>:<seq>`: unique across instances, stable across restarts. */
  readonly id: string;
  readonly seq: number;
  /** Read back from disk after a restart: it may have been handled before the crash. */
  readonly replay: boolean;
}

/**
 * How a runner consumes device events of the ingest log:
 * - `handled`: its cursor moves past an event once `handle()` has resolved for it;
 * - `manual`: the runner commits itself (`EventBroker.commit`) once an event is
 *   really dealt with (written to InfluxDB or to its own durable spool, say).
 * A runner without `durable` gets device events live only: nothing is replayed
 * to it and it never holds the log back (the admin runner's live views).
 */
export type DurableMode = 'handled' | 'manual';

/** What a runner gives the broker when it registers. */
export interface RunnerInbox {
  /** Called once per event, in order; the next event waits for a returned promise. */
  handle(event: Event): void | Promise<void>;
  /** Overrides the configured inbox size for this runner. */
  capacity?: number;
  /** Consume device events from the ingest log with a durable cursor (see DurableMode). */
  durable?: DurableMode;
}

export type Event =
  | {
      type: 'NewRunner';
      name: string;
      accepts: readonly EventType[];
      inbox: RunnerInbox;
      /**
       * Types delivered to it as well that it only watches and does not handle
       * (the admin's view of app messages): they do not make `accepts()` true,
       * and with no runner accepting them they still count as unrouted.
       */
      observes?: readonly EventType[];
    }
  // Application data, device <-> the user's app runner.
  | { type: 'ApplicationRequest'; uid: string; target: string; payload: Uint8Array; receivedAt: number; log?: LogPosition }
  | { type: 'ApplicationResponse'; uid: string; target: string; payload: Uint8Array }
  | { type: 'ApplicationManagementRequest'; correlationId: string; target: string; payload: unknown }
  | { type: 'ApplicationManagementResponse'; correlationId: string; payload?: unknown; error?: ErrorInfo }
  // Telemetry.
  | { type: 'TelemetryReceived'; uid: string; telemetry: Telemetry; receivedAt: number; log?: LogPosition }
  | { type: 'InfluxDataSave'; points: InfluxPoint[] }
  // OTA, device side.
  | { type: 'OtaRequest'; uid: string; cmd: OtaCommand; id?: string; startPos?: number; endPos?: number; receivedAt: number; log?: LogPosition }
  | { type: 'OtaResponse'; uid: string; package: OtaPackage | null }
  | { type: 'OtaDownloadResponse'; uid: string; chunk: OtaChunk }
  | { type: 'DeviceFirmwareUpdated'; state: DeviceFirmwareState }
  // OTA, management side. Every request carries a correlation id; its answer is an
  // OtaCommandResult or the matching *Response with the same id.
  | { type: 'OtaNewPackage'; correlationId: string; id: string; imageType: ImageType; description?: string; source: ImageSource }
  | { type: 'OtaDeletePackage'; correlationId: string; id: string }
  | { type: 'OtaLink'; correlationId: string; deviceUid?: string; group?: string; imageId?: string; force?: boolean }
  | { type: 'OtaUnlink'; correlationId: string; deviceUid?: string; group?: string }
  | { type: 'OtaCommandResult'; correlationId: string; result?: unknown; error?: ErrorInfo }
  | { type: 'OtaImageListRequest'; correlationId: string }
  | { type: 'OtaImageListResponse'; correlationId: string; images: ImageInfo[] }
  | { type: 'OtaGroupListRequest'; correlationId: string }
  | { type: 'OtaGroupListResponse'; correlationId: string; groups: GroupInfo[] }
  // A campaign's byte budget (README "Campaigns"), set by the campaigns runner, applied by the OTA serving paths.
  | { type: 'OtaBudgetSet'; budget: DownloadBudget }
  | { type: 'OtaBudgetCleared'; campaignId: string }
  // Device presence.
  | {
      type: 'DeviceConnected';
      uid: string;
      clientId: string;
      remoteAddress: string;
      authMethod: AuthMethod;
      cleanSession: boolean;
      at: number;
      /** The client certificate it logged in with (authMethod `certificate`). */
      certificate?: { serial: string; subject: string; notAfter: number };
    }
  | { type: 'DeviceDisconnected'; uid: string; clientId: string; reason: string; at: number }
  // ACL rules set live (admin acl.rules.set): the MQTT runner reloads them, on every cluster instance.
  | { type: 'AclRulesChanged'; at: number }
  // A service account added or removed live (admin service-accounts.*): every cluster instance closes a removed one's sessions.
  | { type: 'ServiceAccountsChanged'; name: string; change: 'added' | 'removed'; at: number }
  // OTA campaigns: management by correlation id, and every change as a notice.
  | { type: 'CampaignCommand'; correlationId: string; request: CampaignCommandRequest }
  | { type: 'CampaignCommandResult'; correlationId: string; result?: unknown; error?: ErrorInfo }
  | { type: 'CampaignDeviceState'; campaignId: string; device: CampaignDeviceStatus; previous: CampaignDeviceStateName; at: number }
  | { type: 'CampaignStateChanged'; campaign: CampaignSummary; at: number };

export type EventType = Event['type'];

/** What device data becomes: the events that go through the ingest log. */
export type DeviceEvent = Extract<Event, { log?: LogPosition }>;
export const DEVICE_EVENT_TYPES = ['ApplicationRequest', 'TelemetryReceived', 'OtaRequest'] as const satisfies readonly DeviceEvent['type'][];
type MissingDeviceEventTypes = Exclude<DeviceEvent['type'], (typeof DEVICE_EVENT_TYPES)[number]>;
const _allDeviceEventTypesListed: MissingDeviceEventTypes extends never ? true : MissingDeviceEventTypes = true;
void _allDeviceEventTypesListed;
export type EventOf<K extends EventType> = Extract<Event, { type: K }>;

/** Every event type, for validation of `accepts` lists and for metrics labels. */
export const EVENT_TYPES = [
  'NewRunner',
  'ApplicationRequest',
  'ApplicationResponse',
  'ApplicationManagementRequest',
  'ApplicationManagementResponse',
  'TelemetryReceived',
  'InfluxDataSave',
  'OtaRequest',
  'OtaResponse',
  'OtaDownloadResponse',
  'DeviceFirmwareUpdated',
  'OtaNewPackage',
  'OtaDeletePackage',
  'OtaLink',
  'OtaUnlink',
  'OtaCommandResult',
  'OtaImageListRequest',
  'OtaImageListResponse',
  'OtaGroupListRequest',
  'OtaGroupListResponse',
  'OtaBudgetSet',
  'OtaBudgetCleared',
  'DeviceConnected',
  'DeviceDisconnected',
  'AclRulesChanged',
  'ServiceAccountsChanged',
  'CampaignCommand',
  'CampaignCommandResult',
  'CampaignDeviceState',
  'CampaignStateChanged',
] as const satisfies readonly EventType[];

// Fails to compile when EVENT_TYPES misses a member of the union.
type MissingEventTypes = Exclude<EventType, (typeof EVENT_TYPES)[number]>;
const _allEventTypesListed: MissingEventTypes extends never ? true : MissingEventTypes = true;
void _allEventTypesListed;

export function assertNever(value: never): never {
  throw new Error(`unhandled variant: ${JSON.stringify(value)}`);
}
