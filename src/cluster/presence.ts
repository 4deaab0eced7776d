import type { Redis } from 'ioredis';
import type { AuthMethod, EventOf } from '../events.js';
import type { Logger } from '../logger.js';
import type { Runner, RunnerContext } from '../runner.js';
import { Once } from '../util/once.js';
import type { RedisHealth } from './redis-health.js';

/** A device connected somewhere in the cluster. */
export interface PresenceEntry {
  uid: string;
  /** The instance holding the connection. */
  instance: string;
  clientId: string;
  connectedAt: number;
  remoteAddress: string;
  authMethod: AuthMethod;
}

/** What the rest of an instance reads: the cluster-wide online set, kept in memory. */
export interface PresenceView {
  get(uid: string): PresenceEntry | undefined;
  entries(): IterableIterator<PresenceEntry>;
  readonly size: number;
  /** This instance's id, as found in `PresenceEntry.instance`. */
  readonly instanceId: string;
  /** Told about every change (entry undefined: offline); returns the unsubscribe function. */
  onChange(listener: PresenceListener): () => void;
}

export type PresenceListener = (uid: string, entry: PresenceEntry | undefined, previous: PresenceEntry | undefined) => void;

export interface ClusterPresenceSettings {
  url: string;
  /** Key prefix, e.g. `nucleon:`. */
  namespace: string;
  instanceId: string;
  /** A crashed instance's devices are offline everywhere at most this long after the crash. */
  ttlMs: number;
}

// Owner-checked writes: an instance refreshes or removes only the entries it holds,
// so a device that moved to another instance is never taken back or dropped.
const CLAIM = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('PUBLISH', KEYS[3], ARGV[1])
return 1`;

const REFRESH = `
local current = redis.call('GET', KEYS[1])
if current then
  local entry = cjson.decode(current)
  if entry.instance ~= ARGV[5] or entry.clientId ~= ARGV[6] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
if not current then redis.call('PUBLISH', KEYS[3], ARGV[1]) end
return 1`;

const RELEASE = `
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local entry = cjson.decode(current)
if entry.instance ~= ARGV[2] or entry.clientId ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', KEYS[3], cjson.encode({uid = ARGV[1], offline = true}))
return 1`;

// Devices whose owner stopped refreshing (crashed): removed by whichever instance sweeps first,
// and announced, so every instance shows them offline.
const SWEEP = `
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, uid in ipairs(expired) do
  redis.call('ZREM', KEYS[1], uid)
  if redis.call('EXISTS', KEYS[3] .. uid) == 0 then
    redis.call('PUBLISH', KEYS[2], cjson.encode({uid = uid, offline = true}))
  end
end
return #expired`;

type Pending = { op: 'claim'; entry: PresenceEntry } | { op: 'release'; clientId: string };

const ACCEPTS = ['DeviceConnected', 'DeviceDisconnected'] as const;
type PresenceEvent = EventOf<(typeof ACCEPTS)[number]>;

/**
 * Device presence shared through Redis (cluster mode). The instance holding a
 * device's connection writes `<ns>presence:<uid>` with an expiry and refreshes
 * it every third of the expiry; `<ns>presence-index` (score: when the entry
 * expires) lets any instance find devices whose owner died and announce them
 * offline. Changes are announced on `<ns>presence-changes`, so every instance
 * keeps the whole online set in memory (`PresenceView`), resynced in full at
 * start, after a Redis outage and every few minutes.
 *
 * Writes never hold up the event broker: connects and disconnects update the
 * local state at once and queue at most one Redis write per device, written in
 * batches and kept through a Redis outage.
 */
export class ClusterPresence implements Runner, PresenceView {
  readonly name = 'cluster-presence';
  private readonly mirror = new Map<string, PresenceEntry>();
  /** Devices connected to this instance (uid → entry). */
  private readonly local = new Map<string, PresenceEntry>();
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Set<PresenceListener>();
  /** How long an entry lives after a write: the sweep runs a sixth of the TTL later at most, so a crash shows within the TTL. */
  private readonly lifetimeMs: number;
  private readonly sweepMs: number;
  private readonly keys: { entry: (uid: string) => string; entryPrefix: string; index: string; channel: string };
  private running: { redis: Redis; sub: Redis; logger: Logger; timers: NodeJS.Timeout[]; context: RunnerContext } | undefined;
  private flushing = false;
  private resyncing = false;
  private readonly stopped = new Once(() => this.doStop());

  constructor(
    private readonly settings: ClusterPresenceSettings,
    private readonly health: RedisHealth,
  ) {
    const ns = settings.namespace;
    this.sweepMs = Math.max(100, Math.floor(settings.ttlMs / 6));
    this.lifetimeMs = settings.ttlMs - this.sweepMs;
    this.keys = { entry: (uid) => `${ns}presence:${uid}`, entryPrefix: `${ns}presence:`, index: `${ns}presence-index`, channel: `${ns}presence-changes` };
  }

  get instanceId(): string {
    return this.settings.instanceId;
  }

  get size(): number {
    return this.mirror.size;
  }

  get(uid: string): PresenceEntry | undefined {
    return this.mirror.get(uid);
  }

  entries(): IterableIterator<PresenceEntry> {
    return this.mirror.values();
  }

  onChange(listener: PresenceListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async start(context: RunnerContext): Promise<void> {
    const { url } = this.settings;
    const logger = context.logger;
    const redis = this.health.connect('presence', url, { maxRetriesPerRequest: 1 });
    const sub = this.health.connect('presence-changes', url, { maxRetriesPerRequest: null });
    this.running = { redis, sub, logger, timers: [], context };
    this.stopped.reset();
    sub.on('message', (_channel: string, message: string) => this.onAnnouncement(message));
    // Announcements missed while the subscription was down are recovered by a full read.
    sub.on('ready', () => this.resync(true));
    // After an outage our entries may have expired: write them again at once.
    redis.on('ready', () => this.refresh());
    await redis.connect();
    await sub.connect();
    await sub.subscribe(this.keys.channel);
    await this.resyncNow(true);

    const refreshMs = Math.max(100, Math.floor(this.settings.ttlMs / 3));
    const every = (ms: number, work: () => void) => {
      const timer = setInterval(work, ms);
      timer.unref();
      this.running?.timers.push(timer);
    };
    every(refreshMs, () => this.refresh());
    every(this.sweepMs, () => this.resync(false));
    every(Math.max(60_000, this.settings.ttlMs * 2), () => this.resync(true));
    every(50, () => this.flush());

    await context.broker.publish({ type: 'NewRunner', name: this.name, accepts: ACCEPTS, inbox: { handle: (event) => this.handle(event as PresenceEvent) } });
  }

  stop(): Promise<void> {
    return this.stopped.run();
  }

  private async doStop(): Promise<void> {
    const running = this.running;
    if (!running) return;
    this.running = undefined;
    running.context.broker.unregister(this.name);
    for (const timer of running.timers) clearInterval(timer);
    // The MQTT runner stopped first, so its disconnects are queued here; write them if Redis is there.
    if (running.redis.status === 'ready') await this.writePending(running).catch((error: unknown) => running.logger.warn({ err: error }, 'presence not cleared at stop; it expires'));
    await this.health.release('presence-changes');
    await this.health.release('presence');
    this.listeners.clear();
  }

  private handle(event: PresenceEvent): void {
    if (event.type === 'DeviceConnected') {
      const entry: PresenceEntry = {
        uid: event.uid,
        instance: this.settings.instanceId,
        clientId: event.clientId,
        connectedAt: event.at,
        remoteAddress: event.remoteAddress,
        authMethod: event.authMethod,
      };
      this.local.set(event.uid, entry);
      this.pending.set(event.uid, { op: 'claim', entry });
      this.change(event.uid, entry);
      return;
    }
    // A reconnect may arrive before the old connection's goodbye.
    const held = this.local.get(event.uid);
    if (held?.clientId !== event.clientId) return;
    this.local.delete(event.uid);
    this.pending.set(event.uid, { op: 'release', clientId: event.clientId });
    if (this.mirror.get(event.uid)?.instance === this.settings.instanceId) this.change(event.uid, undefined);
  }

  private flush(): void {
    const running = this.running;
    if (!running || this.flushing || this.pending.size === 0 || running.redis.status !== 'ready') return;
    this.flushing = true;
    this.writePending(running)
      .catch((error: unknown) => running.logger.warn({ err: error }, 'presence write failed; will retry'))
      .finally(() => (this.flushing = false));
  }

  /** Writes the queued claims and releases in one pipeline; failed ones stay queued. */
  private async writePending(running: { redis: Redis }): Promise<void> {
    const batch = [...this.pending.entries()].slice(0, 1000);
    const pipeline = running.redis.pipeline();
    const now = Date.now();
    for (const [uid, pending] of batch) {
      this.pending.delete(uid);
      if (pending.op === 'claim') {
        const json = JSON.stringify(pending.entry);
        pipeline.eval(CLAIM, 3, this.keys.entry(uid), this.keys.index, this.keys.channel, json, String(this.lifetimeMs), String(now + this.lifetimeMs), uid);
      } else {
        pipeline.eval(RELEASE, 3, this.keys.entry(uid), this.keys.index, this.keys.channel, uid, this.settings.instanceId, pending.clientId);
      }
    }
    const results = (await pipeline.exec()) ?? [];
    batch.forEach(([uid, pending], i) => {
      const error = results[i]?.[0];
      // Requeue unless a newer change for the device was queued meanwhile.
      if (error && !this.pending.has(uid)) this.pending.set(uid, pending);
    });
    const failed = results.find(([error]) => error !== null);
    if (failed?.[0]) throw failed[0];
  }

  /** Extends the expiry of every device held here (skipping ones another instance took over). */
  private refresh(): void {
    const running = this.running;
    if (!running || this.local.size === 0 || running.redis.status !== 'ready') return;
    const pipeline = running.redis.pipeline();
    const now = Date.now();
    const held = [...this.local.values()].filter((entry) => !this.pending.has(entry.uid));
    for (const entry of held) {
      pipeline.eval(
        REFRESH,
        3,
        this.keys.entry(entry.uid),
        this.keys.index,
        this.keys.channel,
        JSON.stringify(entry),
        String(this.lifetimeMs),
        String(now + this.lifetimeMs),
        entry.uid,
        entry.instance,
        entry.clientId,
      );
    }
    pipeline.exec().then(
      (results) =>
        results?.forEach(([error, kept], i) => {
          const entry = held[i];
          if (error || kept !== 0 || !entry) return;
          // Another instance holds this device now; our connection is on its way out.
          if (this.local.get(entry.uid) === entry) this.local.delete(entry.uid);
        }),
      (error: unknown) => running.logger.warn({ err: error }, 'presence refresh failed; will retry'),
    );
  }

  private resync(full: boolean): void {
    const running = this.running;
    if (!running || this.resyncing) return;
    this.resyncing = true;
    this.resyncNow(full)
      .catch((error: unknown) => running.logger.warn({ err: error, full }, 'presence resync failed; will retry'))
      .finally(() => (this.resyncing = false));
  }

  private async resyncNow(full: boolean): Promise<void> {
    const running = this.running;
    if (!running || running.redis.status !== 'ready') return;
    const now = Date.now();
    await running.redis.eval(SWEEP, 3, this.keys.index, this.keys.channel, this.keys.entryPrefix, String(now));
    if (!full) return;
    const online = new Map<string, PresenceEntry>();
    // Bounded pages of the index, each with one MGET of the entries.
    let offset = 0;
    for (;;) {
      const uids = await running.redis.zrangebyscore(this.keys.index, `(${now}`, '+inf', 'LIMIT', offset, 1000);
      if (uids.length === 0) break;
      const values = await running.redis.mget(uids.map((uid) => this.keys.entry(uid)));
      values.forEach((value) => {
        const entry = value === null ? undefined : parseEntry(value);
        if (entry) online.set(entry.uid, entry);
      });
      if (uids.length < 1000) break;
      offset += uids.length;
    }
    for (const entry of this.local.values()) online.set(entry.uid, entry);
    for (const uid of [...this.mirror.keys()]) if (!online.has(uid)) this.change(uid, undefined);
    for (const [uid, entry] of online) if (!sameEntry(this.mirror.get(uid), entry)) this.change(uid, entry);
  }

  private onAnnouncement(message: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch (error) {
      this.running?.logger.warn({ err: error }, 'unreadable presence announcement ignored');
      return;
    }
    const offline = parsed as { uid?: unknown; offline?: unknown };
    if (offline.offline === true && typeof offline.uid === 'string') {
      // Our own device is online whatever another instance's sweep concluded.
      if (!this.local.has(offline.uid)) this.change(offline.uid, undefined);
      return;
    }
    const entry = parseEntry(message);
    if (!entry) return;
    const held = this.local.get(entry.uid);
    if (held && entry.instance !== this.settings.instanceId) {
      // Taken over by another instance; our connection is closed by aedes shortly.
      this.local.delete(entry.uid);
      this.pending.delete(entry.uid);
    }
    if (!sameEntry(this.mirror.get(entry.uid), entry)) this.change(entry.uid, entry);
  }

  private change(uid: string, entry: PresenceEntry | undefined): void {
    const previous = this.mirror.get(uid);
    if (entry) this.mirror.set(uid, entry);
    else if (!this.mirror.delete(uid)) return;
    for (const listener of this.listeners) {
      try {
        listener(uid, entry, previous);
      } catch (error) {
        this.running?.logger.error({ err: error, uid }, 'presence listener failed');
      }
    }
  }
}

function parseEntry(text: string): PresenceEntry | undefined {
  try {
    const value = JSON.parse(text) as Partial<PresenceEntry>;
    if (typeof value.uid !== 'string' || typeof value.instance !== 'string' || typeof value.clientId !== 'string') return undefined;
    return value as PresenceEntry;
  } catch {
    return undefined;
  }
}

function sameEntry(a: PresenceEntry | undefined, b: PresenceEntry): boolean {
  return a !== undefined && a.instance === b.instance && a.clientId === b.clientId && a.connectedAt === b.connectedAt;
}
