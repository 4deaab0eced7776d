/** The calls the orchestrator makes on each load generator worker. */

export interface ConnectArgs {
  group: string;
  host: string;
  port: number;
  uids: string[];
  keepalive: number;
  /** TLS handshakes + CONNECTs outstanding at once in this worker. */
  concurrency: number;
  /** `{uid}` is replaced by the device's uid, e.g. `{uid}/app/s/#`. */
  subscribe?: { pattern: string; qos: 0 | 1 };
  timeoutMs: number;
}

export interface ConnectResult {
  connected: number;
  failed: number;
  /** A few failure reasons, not all. */
  errors: string[];
  elapsedMs: number;
}

/** Device `i` of the group publishes with `plans[i % plans.length]`. */
export interface PublishPlan {
  qos: 0 | 1;
  /** Topic is `<uid>/app/p/<target>`; for `telemetry`, `<uid>/tel/p` (target only labels the counts). */
  target: string;
  /** `telemetry`: a Pyrinas telemetry CBOR map instead of timestamped filler. */
  kind?: 'app' | 'telemetry';
  /** QoS 1 messages a device may have unacknowledged. */
  window: number;
}

export interface PublishArgs {
  group: string;
  plans: PublishPlan[];
  /** `unthrottled`: as fast as acks (QoS 1) or the socket (QoS 0) allow; `paced`: `ratePerSec` for this worker. */
  mode: 'unthrottled' | 'paced';
  ratePerSec?: number;
  durationMs: number;
  maxPerDevice: number;
  payloadSize: number;
  /** How long to wait for outstanding PUBACKs after sending stops. */
  ackTimeoutMs: number;
}

export interface PublishResult {
  /** Messages written, per target. */
  sent: Record<string, number>;
  /** PUBACKs received, per target (QoS 1 only). */
  acked: Record<string, number>;
  /** QoS 1 messages still unacknowledged when the run ended. */
  unacked: number;
  /** Paced mode: messages that were due but skipped because a device's window was full. */
  skipped: number;
  /** CLOCK_MONOTONIC ms. */
  startMs: number;
  stopMs: number;
  /** Devices whose connection dropped during the run, with a few reasons. */
  disconnects: number;
  /** Devices already disconnected when the run started (they send nothing). */
  closedAtStart: number;
  reasons: string[];
}

export interface ReceiveResult {
  received: number;
  firstMs: number;
  lastMs: number;
  disconnects: number;
}

/** Scenario 7 over MQTT: each device fetches the whole image in `chunkSize` DownloadBytes requests, one at a time. */
export interface OtaMqttArgs {
  group: string;
  imageId: string;
  size: number;
  chunkSize: number;
  /** A chunk not answered within this time fails the device. */
  chunkTimeoutMs: number;
}

/** Scenario 7 over HTTPS: each device fetches the whole image in `rangeSize` Range requests on one keep-alive connection. */
export interface OtaHttpArgs {
  uids: string[];
  /** `https://127.0.0.1:<port>/images/<id>` */
  url: string;
  size: number;
  rangeSize: number;
  requestTimeoutMs: number;
}

export interface DownloadResult {
  devices: number;
  /** Devices that got every byte, checked against the expected length per chunk. */
  completed: number;
  bytes: number;
  requests: number;
  errors: string[];
  startMs: number;
  endMs: number;
}
