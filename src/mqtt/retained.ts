import type { PublishPacket } from 'aedes';
import { Counter, Gauge, type Registry } from 'prom-client';
import { defaultConfig, type Config } from '../config/index.js';
import type { Logger } from '../logger.js';

/** The retained-message bounds of `[mqtt.limits]` (README "Retained messages"). */
export interface RetainedLimits {
  /** Messages under one uid's topics (`<uid>/…`). */
  perDevice: number;
  /** Bytes (topic + payload) under one uid's topics. */
  bytesPerDevice: number;
  total: number;
  bytesTotal: number;
}

/** The bounds when none are given: config.toml's defaults. */
export const DEFAULT_RETAINED_LIMITS: RetainedLimits = retainedLimits(defaultConfig().mqtt.limits);

/** How a session store applies the bounds. */
export interface RetainedStoreOptions {
  policy: RetainedPolicy;
  /** Embedded store: after retained messages were cleared, their key range is compacted at most this often. */
  compactIntervalMs: number;
  /** Embedded store: a compaction finished (error undefined) or failed. */
  onCompacted?: (error: unknown, durationMs: number) => void;
  /** Redis store: a recount after a refusal failed. */
  onResyncFailed?: (error: unknown) => void;
}

/** config.toml's bounds, counted nowhere (a store built without a runner context). */
export function defaultRetainedOptions(): RetainedStoreOptions {
  return { policy: new RetainedPolicy(DEFAULT_RETAINED_LIMITS), compactIntervalMs: defaultConfig().mqtt.limits.retained_compact_interval_ms };
}

export type RetainedRefusal = 'device_messages' | 'device_bytes' | 'total_messages' | 'total_bytes';

export interface RetainedUsage {
  messages: number;
  bytes: number;
}

/** Told about each retained message not kept. */
export type RetainedRefusalListener = (uid: string, topic: string, reason: RetainedRefusal) => void;

/**
 * What to do with one retained publish. `store: false` means: write a clear
 * for the topic (an empty payload, or a refused message: an older message on
 * the topic must not outlive a newer one that was published). `undo` puts the
 * accounting back when the write fails.
 */
export interface RetainedAdmission {
  store: boolean;
  refused?: RetainedRefusal;
  /** A kept message was removed (cleared, or dropped with a refused replacement): its space can be reclaimed. */
  removed: boolean;
  undo(): void;
}

export function retainedLimits(limits: Readonly<Config['mqtt']['limits']>): RetainedLimits {
  return {
    perDevice: limits.retained_per_device,
    bytesPerDevice: limits.retained_bytes_per_device,
    total: limits.retained_total,
    bytesTotal: limits.retained_bytes_total,
  };
}

/**
 * The retained-message bounds, shared by the embedded and the Redis session
 * store, as Mosquitto and EMQX would have them for a fleet: a message over a
 * bound is still delivered to its subscribers, only not retained (EMQX's
 * retainer does the same for `max_retained_messages` and `max_payload_size`;
 * refusing the publish would make a device resend it forever). Replacing a
 * topic's message is allowed at the count bound, since it does not add one.
 *
 * Messages are counted against the uid in the topic's first level: a device
 * can publish only under its own uid, so that is the device, and unlike the
 * publishing client it can be read back from the store after a restart.
 * (A service account's retained messages on `<uid>/…/s/…` count for that uid.)
 *
 * The accounting is in memory: each topic's size, each uid's and the totals.
 * It is bounded by what the store holds, which these bounds keep small, and is
 * rebuilt from the store at start (`rebuild`).
 */
export class RetainedPolicy {
  private topics = new Map<string, number>();
  private devices = new Map<string, RetainedUsage>();
  private total: RetainedUsage = { messages: 0, bytes: 0 };

  constructor(
    private readonly limits: RetainedLimits,
    private readonly onRefused: RetainedRefusalListener = () => undefined,
  ) {}

  /** Decides about a retained publish and accounts for it at once, so concurrent publishes cannot overshoot together. */
  admit(topic: string, payload: PublishPacket['payload']): RetainedAdmission {
    const previous = this.topics.get(topic);
    const payloadBytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
    if (payloadBytes === 0) {
      this.remove(topic);
      return { store: false, removed: previous !== undefined, undo: () => this.restore(topic, previous) };
    }
    const size = Buffer.byteLength(topic) + payloadBytes;
    const uid = ownerOf(topic);
    const device = this.devices.get(uid) ?? { messages: 0, bytes: 0 };
    const added = previous === undefined ? 1 : 0;
    const grown = size - (previous ?? 0);
    const refused =
      device.messages + added > this.limits.perDevice ? 'device_messages'
      : device.bytes + grown > this.limits.bytesPerDevice ? 'device_bytes'
      : this.total.messages + added > this.limits.total ? 'total_messages'
      : this.total.bytes + grown > this.limits.bytesTotal ? 'total_bytes'
      : undefined;
    if (refused !== undefined) {
      this.remove(topic);
      this.onRefused(uid, topic, refused);
      return { store: false, refused, removed: previous !== undefined, undo: () => this.restore(topic, previous) };
    }
    this.set(topic, size);
    return { store: true, removed: false, undo: () => this.restore(topic, previous) };
  }

  usage(): RetainedUsage {
    return { ...this.total };
  }

  deviceUsage(uid: string): RetainedUsage {
    return { ...(this.devices.get(uid) ?? { messages: 0, bytes: 0 }) };
  }

  /**
   * Counts what the store holds, replacing the accounting when done (admits
   * during the scan are kept in the old one until then). Messages over the
   * bounds (kept before the bounds were lowered) are counted, not deleted;
   * new ones are refused until there is room again.
   */
  async rebuild(stored: AsyncIterable<Pick<PublishPacket, 'topic' | 'payload'>>): Promise<RetainedUsage> {
    const fresh = new RetainedPolicy(this.limits);
    for await (const packet of stored) {
      if (isServerTopic(packet.topic)) continue;
      const payloadBytes = typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length;
      if (payloadBytes > 0) fresh.set(packet.topic, Buffer.byteLength(packet.topic) + payloadBytes);
    }
    this.topics = fresh.topics;
    this.devices = fresh.devices;
    this.total = fresh.total;
    return this.usage();
  }

  private set(topic: string, size: number): void {
    this.remove(topic);
    const uid = ownerOf(topic);
    const device = this.devices.get(uid) ?? { messages: 0, bytes: 0 };
    device.messages++;
    device.bytes += size;
    this.devices.set(uid, device);
    this.total.messages++;
    this.total.bytes += size;
    this.topics.set(topic, size);
  }

  private remove(topic: string): void {
    const size = this.topics.get(topic);
    if (size === undefined) return;
    this.topics.delete(topic);
    const uid = ownerOf(topic);
    const device = this.devices.get(uid);
    if (device) {
      device.messages--;
      device.bytes -= size;
      if (device.messages <= 0) this.devices.delete(uid);
    }
    this.total.messages--;
    this.total.bytes -= size;
  }

  private restore(topic: string, size: number | undefined): void {
    if (size === undefined) this.remove(topic);
    else this.set(topic, size);
  }
}

/** A topic only the server publishes ($SYS/…; the ACL refuses every client publish starting with $SYS). */
function isServerTopic(topic: string): boolean {
  return topic.startsWith('$SYS/');
}

/** The uid a retained topic counts against: its first level. */
function ownerOf(topic: string): string {
  const slash = topic.indexOf('/');
  return slash < 0 ? topic : topic.slice(0, slash);
}

/**
 * Stores or clears one retained message within the policy; `write` is the
 * store's own `storeRetained`. Resolves to the admission, so the store can
 * compact after a clear or recount after a refusal.
 */
export async function storeRetainedWithin(policy: RetainedPolicy, packet: PublishPacket, write: (packet: PublishPacket) => Promise<void>): Promise<RetainedAdmission> {
  if (isServerTopic(packet.topic)) {
    // The broker's own $SYS topics: a fixed, small set no client can publish to, so outside the bounds.
    await write(packet);
    return { store: true, removed: false, undo: () => undefined };
  }
  const admission = policy.admit(packet.topic, packet.payload);
  try {
    await write(admission.store ? packet : { ...packet, payload: EMPTY });
  } catch (error) {
    admission.undo();
    throw error;
  }
  return admission;
}

const EMPTY = Buffer.alloc(0);

/** uids whose refusals were already logged; then forgotten all at once, so a flood of uids cannot grow it. */
const MAX_LOGGED_UIDS = 10_000;

/**
 * A policy whose refusals are counted (`nucleon_mqtt_retained_refused_total{reason}`)
 * and logged once per uid, with gauges of what is retained.
 */
export function reportedRetainedPolicy(limits: RetainedLimits, registry: Registry, logger: Logger): RetainedPolicy {
  const registers = [registry];
  const refusedTotal = new Counter({
    name: 'nucleon_mqtt_retained_refused_total',
    help: 'Retained messages delivered but not retained because a bound was reached, per reason',
    labelNames: ['reason'],
    registers,
  });
  const logged = new Set<string>();
  const policy = new RetainedPolicy(limits, (uid, topic, reason) => {
    refusedTotal.inc({ reason });
    if (logged.has(uid)) return;
    if (logged.size >= MAX_LOGGED_UIDS) logged.clear();
    logged.add(uid);
    logger.warn({ uid, topic, reason, device: policy.deviceUsage(uid), total: policy.usage(), limits }, 'retained message over its bound: delivered, not retained (logged once per uid)');
  });
  new Gauge({
    name: 'nucleon_mqtt_retained_messages',
    help: 'Retained messages kept now',
    registers,
    collect() {
      this.set(policy.usage().messages);
    },
  });
  new Gauge({
    name: 'nucleon_mqtt_retained_bytes',
    help: 'Bytes (topic + payload) of the retained messages kept now',
    registers,
    collect() {
      this.set(policy.usage().bytes);
    },
  });
  return policy;
}
