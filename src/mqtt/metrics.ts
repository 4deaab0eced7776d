import { Counter, Gauge, type Registry } from 'prom-client';

/** The MQTT runner's metrics; per-message counts are plain numbers collected at scrape time. */
export class MqttMetrics {
  /** Device messages ingested, per kind: plain numbers on the hot path, read at scrape time. */
  readonly received: Record<'app' | 'tel' | 'ota', number> = { app: 0, tel: 0, ota: 0 };
  /** Every PUBLISH clients sent and every one they were sent (for $SYS/broker/messages/…). */
  publishesIn = 0;
  publishesOut = 0;
  readonly sent: Counter<'kind'>;
  readonly malformedTopics: Counter<'reason'>;
  readonly badPayloads: Counter<'kind' | 'reason'>;
  readonly telemetryUnknownKeys: Counter;
  readonly telemetryFieldsRefused: Counter<'field'>;
  readonly aclDenied: Counter<'action' | 'reason'>;
  readonly connections: Counter<'listener'>;
  readonly refused: Counter<'reason'>;
  readonly disconnects: Counter<'reason'>;
  readonly offlineDropped: Counter;
  readonly overloaded: Counter<'where'>;
  readonly sendFailures: Counter<'kind'>;
  readonly staleWills: Counter<'result'>;
  /** Device messages routed to subscribers before they were durable because the disk was slow (disk-waits.ts); rare, so a Counter. */
  readonly routedBeforeDurable: Counter;

  constructor(registry: Registry, connected: () => { devices: number; services: number; anonymous: number; paused: number }) {
    const registers = [registry];
    const received = this.received;
    new Counter({
      name: 'nucleon_mqtt_messages_received_total',
      help: 'Device messages ingested, per kind',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (const kind of ['app', 'tel', 'ota'] as const) this.inc({ kind }, received[kind]);
      },
    });
    this.routedBeforeDurable = new Counter({
      name: 'nucleon_mqtt_routed_before_durable_total',
      help: 'Device messages routed to MQTT subscribers before their ingest-log write was durable, because they waited for the disk several times longer than usual (their acknowledgement still waited)',
      registers,
    });
    this.sent = new Counter({ name: 'nucleon_mqtt_messages_sent_total', help: 'Server messages published to devices, per kind', labelNames: ['kind'], registers });
    this.malformedTopics = new Counter({ name: 'nucleon_mqtt_malformed_topics_total', help: 'Device publishes to topics that do not parse, per reason', labelNames: ['reason'], registers });
    this.badPayloads = new Counter({ name: 'nucleon_mqtt_bad_payloads_total', help: 'Device payloads that do not decode, per kind and reason', labelNames: ['kind', 'reason'], registers });
    // No key label: devices choose the keys, so a label would let them grow the series without bound.
    this.telemetryUnknownKeys = new Counter({ name: 'nucleon_mqtt_telemetry_unknown_keys_total', help: 'Telemetry keys neither built in nor in [[telemetry.fields]], left out of the point', registers });
    this.telemetryFieldsRefused = new Counter({
      name: 'nucleon_mqtt_telemetry_fields_refused_total',
      help: 'Configured telemetry fields left out of a point because the value had another type, per configured field name',
      labelNames: ['field'],
      registers,
    });
    this.aclDenied = new Counter({ name: 'nucleon_mqtt_acl_denied_total', help: 'Publishes and subscriptions the ACL refused', labelNames: ['action', 'reason'], registers });
    this.connections = new Counter({ name: 'nucleon_mqtt_connections_total', help: 'Connections accepted, per listener', labelNames: ['listener'], registers });
    this.refused = new Counter({ name: 'nucleon_mqtt_refused_total', help: 'Connections refused, per reason', labelNames: ['reason'], registers });
    this.disconnects = new Counter({ name: 'nucleon_mqtt_disconnects_total', help: 'Client disconnections, per reason', labelNames: ['reason'], registers });
    this.offlineDropped = new Counter({ name: 'nucleon_mqtt_offline_dropped_total', help: 'Messages not queued for an offline client whose queue was full', registers });
    this.overloaded = new Counter({ name: 'nucleon_mqtt_overloaded_total', help: 'Messages refused because the event broker or the router was full', labelNames: ['where'], registers });
    this.staleWills = new Counter({
      name: 'nucleon_mqtt_stale_wills_total',
      help: 'Wills of clients of an earlier run (or a dead cluster instance), published under their identity or dropped, per result',
      labelNames: ['result'],
      registers,
    });
    this.sendFailures = new Counter({ name: 'nucleon_mqtt_send_failures_total', help: 'Server messages that could not be published, per kind', labelNames: ['kind'], registers });
    new Gauge({
      name: 'nucleon_mqtt_connected_clients',
      help: 'Clients connected now, per kind',
      labelNames: ['kind'],
      registers,
      collect() {
        const now = connected();
        this.set({ kind: 'device' }, now.devices);
        this.set({ kind: 'service' }, now.services);
        this.set({ kind: 'anonymous' }, now.anonymous);
      },
    });
    new Gauge({
      name: 'nucleon_mqtt_paused_clients',
      help: 'Clients whose socket is not read now because a runner inbox is full (back-pressure)',
      registers,
      collect() {
        this.set(connected().paused);
      },
    });
  }
}
