// What the console reads from the admin protocol (README "Admin protocol" and
// the console data contract). Written out here rather than imported from
// src/: the browser bundle must not pull in server modules, and these are the
// wire shapes, not the server's internal types; test/unit/console-web.test.ts checks
// at compile time that the server's answer types fit them.

export type OtaStatus = 'none' | 'assigned' | 'downloading' | 'updated';
export type AuthMethod = 'certificate' | 'password' | 'anonymous' | 'service';

export type TelemetryExtraValue = { type: 'int' | 'float'; value: number } | { type: 'bool'; value: boolean } | { type: 'string'; value: string };

export interface Telemetry {
  version?: string;
  rsrp?: number;
  rssi_hub?: number;
  rssi_client?: number;
  extra?: Record<string, TelemetryExtraValue>;
}

export interface FirmwareState {
  uid: string;
  reportedVersion?: string;
  assignedImageId?: string;
  bytesServed: number;
  downloadImageId?: string;
}

export interface DeviceRecord {
  uid: string;
  online: boolean;
  lastSeen: number;
  connectedAt?: number;
  disconnectedAt?: number;
  disconnectReason?: string;
  remoteAddress?: string;
  clientId?: string;
  authMethod?: AuthMethod;
  instance?: string;
  firmwareVersion?: string;
  telemetry?: Telemetry;
  telemetryAt?: number;
  ota?: FirmwareState;
  otaStatus: OtaStatus;
}

export interface DeviceSummary extends DeviceRecord {
  groups: string[];
  revoked: boolean;
}

export type DeviceSort = 'uid' | 'lastSeen' | 'firmware' | 'ota' | 'online';

export interface DeviceSearchArgs {
  q?: string;
  group?: string;
  firmware?: string;
  online?: boolean;
  ota?: OtaStatus;
  sort?: DeviceSort;
  order?: 'asc' | 'desc';
  offset?: number;
  limit?: number;
}

export interface DeviceSearchAnswer {
  total: number;
  offset: number;
  limit: number;
  items: DeviceSummary[];
  facets: { groups: string[]; firmware: string[] };
}

export interface DeviceSession {
  connectedAt?: number;
  disconnectedAt?: number;
  reason?: string;
  remoteAddress?: string;
  authMethod?: string;
  instance?: string;
}

export interface DeviceDetail {
  device: DeviceSummary;
  identity: {
    authMethod?: string;
    certificate?: { serial: string; subject: string; notAfter: number };
    revoked: null | { reason?: string; at: number; by?: string };
    hasPassword: boolean;
  };
  sessions: DeviceSession[];
  firmware: Array<{ version: string; at: number; source: 'telemetry' | 'ota' }>;
  ota: { state: OtaStatus; imageId?: string; version?: string; bytesServed: number; totalBytes?: number; percent?: number };
  /** `source`: InfluxDB ([influx] configured) or the embedded recent store; `error`: why InfluxDB was not used when it is configured. */
  telemetry: { from: number; to: number; fields: Record<string, Array<[number, number]>>; source: 'influx' | 'recent'; error?: string };
  /** `payload`: base64 of at most the first 128 bytes (`payloadTruncated` when there was more); only with payloads: true. */
  messages: Array<{ at: number; target: string; size: number; payload?: unknown; payloadTruncated?: boolean }>;
}

export interface HealthSnapshot {
  at: number;
  instance?: string;
  connections: number;
  counters: { messagesIn: number; messagesOut: number; pointsAccepted: number; pointsWritten: number };
  refusals: Record<string, number>;
  ingest: null | { bytes: number; segments: number; lag: Record<string, number> };
  spoolBytes: number;
  eventLoopLagMs: number;
  rssBytes: number;
  heapUsedBytes: number;
}

export interface ImageInfo {
  id: string;
  size: number;
  sha256: string;
  imageType: 'primary' | 'secondary';
  dateAdded: string;
  description?: string;
}

export interface GroupInfo {
  name: string;
  imageId?: string;
  devices: string[];
}

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  via: string;
  command: string;
  target?: string;
  result: string;
}

/** The kinds `events.subscribe` takes. */
export type LiveKind = 'device' | 'telemetry' | 'ota' | 'campaign' | 'health';

/** A live event frame: `{v, event, data}`. */
export interface LiveEvent {
  name: string;
  // Each view reads the fields of the events it listens to (README "Live events").
  data: Record<string, unknown>;
}
