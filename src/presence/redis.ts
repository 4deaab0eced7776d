import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import type { RedisConnections } from '../redis-connections.js';
import { ConnectionBook, entryOf } from './connections.js';
import { PresenceListeners } from './listeners.js';
import type { DeviceConnection, PresenceEntry, PresenceListener, PresenceService } from './presence.js';
import { Once } from '../util/once.js';

export interface RedisPresenceSettings {
  url: string;
  /** Key prefix, e.g. `nucleon:`. */
  namespace: string;
  instanceId: string;
  /** A crashed instance's devices are offline everywhere at most this long after the crash. */
  ttlMs: number;
}

// Owner-checked writes: an instance refreshes or removes only the entries it holds,
// so a device that moved to another instance is never taken back or dropped. Within
// an instance the connection book decides (a device goes only with its last connection).
const CLAIM = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('PUBLISH', KEYS[3], ARGV[1])
return 1`;

const REFRESH = `
local current = redis.call('GET', KEYS[1])
if current then
  local entry = cjson.decode(current)
  if entry.instance ~= ARGV[5] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
if not current then redis.call('PUBLISH', KEYS[3], ARGV[1]) end
return 1`;

const RELEASE = `
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local entry = cjson.decode(current)
if entry.instance ~= ARGV[2] then return 0 end
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

/** What is still to be written for a device: its current connection (claim), or its removal. */
type Pending = 'claim' | 'release';

interface Running {
  redis: Redis;
  sub: Redis;
  timers: NodeJS.Timeout[];
}

/**
 * Presence shared through Redis (cluster mode). The instance holding a
 * device's connection writes `<ns>presence:<uid>` with an expiry and refreshes
 * it every third of the expiry; `<ns>presence-index` (score: when the entry
 * expires) lets any instance find devices whose owner died and announce them
 * offline. Changes are announced on `<ns>presence-changes`, so every instance
 * keeps the whole online set in memory, resynced in full at start, after a
 * Redis outage and every few minutes.
 *
 * Connects and disconnects (from the MQTT gateway) change the local state at
 * once and queue at most one Redis write per device, written in batches and
 * kept through a Redis outage; the gateway never waits for Redis.
 */
export class RedisPresence implements PresenceService {
  readonly cluster = true;
  /** Every device online on any instance, as last read or announced. */
  private readonly mirror = new Map<string, PresenceEntry>();
  /** Connections held by this instance. */
  private readonly book = new ConnectionBook();
  private readonly pending = new Map<string, Pending>();
  private readonly listeners: PresenceListeners;
  /** How long an entry lives after a write: the sweep runs a sixth of the TTL later at most, so a crash shows within the TTL. */
  private readonly lifetimeMs: number;
  private readonly sweepMs: number;
  private readonly keys: { entry: (uid: string) => string; entryPrefix: string; index: string; channel: string };
  private running: Running | undefined;
  private flushing = false;
  private resyncing = false;
  private readonly stopped = new Once(() => this.doStop());

  constructor(
    private readonly settings: RedisPresenceSettings,
    private readonly redisConnections: RedisConnections,
    private readonly logger: Logger,
  ) {
    const ns = settings.namespace;
    this.sweepMs = Math.max(100, Math.floor(settings.ttlMs / 6));
    this.lifetimeMs = settings.ttlMs - this.sweepMs;
    this.keys = { entry: (uid) => `${ns}presence:${uid}`, entryPrefix: `${ns}presence:`, index: `${ns}presence-index`, channel: `${ns}presence-changes` };
    this.listeners = new PresenceListeners(logger);
  }

  get instanceId(): string {
    return this.settings.instanceId;
  }

  get size(): number {
    return this.mirror.size;
  }

  get connections(): number {
    return this.book.connections;
  }

  get(uid: string): PresenceEntry | undefined {
    return this.mirror.get(uid);
  }

  isOnline(uid: string): boolean {
    return this.mirror.has(uid);
  }

  entries(): IterableIterator<PresenceEntry> {
    return this.mirror.values();
  }

  onChange(listener: PresenceListener): () => void {
    return this.listeners.add(listener);
  }

  connected(connection: DeviceConnection): PresenceEntry {
    const entry = entryOf(connection, this.instanceId);
    this.book.add(entry);
    // The newest connection anywhere stands for the device.
    this.pending.set(entry.uid, 'claim');
    this.change(entry.uid, entry);
    return entry;
  }

  disconnected(entry: PresenceEntry): void {
    const closed = this.book.remove(entry);
    if (!closed || closed.after === closed.before) return;
    const uid = entry.uid;
    const ours = this.mirror.get(uid)?.instance === this.instanceId;
    if (closed.after) {
      // An older connection here is still open and now stands for the device (unless another instance's does).
      if (ours) {
        this.pending.set(uid, 'claim');
        this.change(uid, closed.after);
      }
      return;
    }
    this.pending.set(uid, 'release');
    if (ours) this.change(uid, undefined);
  }

  async start(): Promise<void> {
    const { url } = this.settings;
    const redis = this.redisConnections.connect('presence', url, { maxRetriesPerRequest: 1 });
    const sub = this.redisConnections.connect('presence-changes', url, { maxRetriesPerRequest: null });
    const running: Running = { redis, sub, timers: [] };
    this.running = running;
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
      running.timers.push(timer);
    };
    every(refreshMs, () => this.refresh());
    every(this.sweepMs, () => this.resync(false));
    every(Math.max(60_000, this.settings.ttlMs * 2), () => this.resync(true));
    every(50, () => this.flush());
  }

  stop(): Promise<void> {
    return this.stopped.run();
  }

  private async doStop(): Promise<void> {
    const running = this.running;
    if (!running) return;
    this.running = undefined;
    for (const timer of running.timers) clearInterval(timer);
    // The MQTT runner stopped first, so its disconnects are queued here; write them if Redis is there.
    if (running.redis.status === 'ready') await this.writePending(running).catch((error: unknown) => this.logger.warn({ err: error }, 'presence not cleared at stop; it expires'));
    await this.redisConnections.release('presence-changes');
    await this.redisConnections.release('presence');
    this.listeners.clear();
  }

  private flush(): void {
    const running = this.running;
    if (!running || this.flushing || this.pending.size === 0 || running.redis.status !== 'ready') return;
    this.flushing = true;
    this.writePending(running)
      .catch((error: unknown) => this.logger.warn({ err: error }, 'presence write failed; will retry'))
      .finally(() => (this.flushing = false));
  }

  /** Writes the queued claims and releases in one pipeline; failed ones stay queued. */
  private async writePending(running: Running): Promise<void> {
    const batch = [...this.pending.entries()].slice(0, 1000);
    const pipeline = running.redis.pipeline();
    const now = Date.now();
    for (const [uid, op] of batch) {
      this.pending.delete(uid);
      const entry = this.book.current(uid);
      if (op === 'claim' && entry) {
        const json = JSON.stringify(entry);
        pipeline.eval(CLAIM, 3, this.keys.entry(uid), this.keys.index, this.keys.channel, json, String(this.lifetimeMs), String(now + this.lifetimeMs), uid);
      } else {
        // A claim whose connection closed meanwhile is a release.
        pipeline.eval(RELEASE, 3, this.keys.entry(uid), this.keys.index, this.keys.channel, uid, this.instanceId);
      }
    }
    const results = (await pipeline.exec()) ?? [];
    batch.forEach(([uid, op], i) => {
      const error = results[i]?.[0];
      // Requeue unless a newer change for the device was queued meanwhile.
      if (error && !this.pending.has(uid)) this.pending.set(uid, op);
    });
    const failed = results.find(([error]) => error !== null);
    if (failed?.[0]) throw failed[0];
  }

  /** Extends the expiry of every device held here (skipping ones another instance stands for). */
  private refresh(): void {
    const running = this.running;
    if (!running || this.book.devices === 0 || running.redis.status !== 'ready') return;
    const pipeline = running.redis.pipeline();
    const now = Date.now();
    for (const entry of this.book.currents()) {
      if (this.pending.has(entry.uid)) continue;
      const json = JSON.stringify(entry);
      pipeline.eval(REFRESH, 3, this.keys.entry(entry.uid), this.keys.index, this.keys.channel, json, String(this.lifetimeMs), String(now + this.lifetimeMs), entry.uid, this.instanceId);
    }
    pipeline.exec().then(
      (results) => {
        const failed = results?.find(([error]) => error !== null);
        if (failed?.[0]) this.logger.warn({ err: failed[0] }, 'presence refresh failed; will retry');
      },
      (error: unknown) => this.logger.warn({ err: error }, 'presence refresh failed; will retry'),
    );
  }

  private resync(full: boolean): void {
    if (!this.running || this.resyncing) return;
    this.resyncing = true;
    this.resyncNow(full)
      .catch((error: unknown) => this.logger.warn({ err: error, full }, 'presence resync failed; will retry'))
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
      for (const value of values) {
        const entry = value === null ? undefined : asEntry(this.parse(value, 'unreadable presence entry ignored'));
        // Our own entries come from the connection book, which is ahead of Redis.
        if (entry && entry.instance !== this.instanceId) online.set(entry.uid, entry);
      }
      if (uids.length < 1000) break;
      offset += uids.length;
    }
    for (const entry of this.book.currents()) if (!online.has(entry.uid)) online.set(entry.uid, entry);
    for (const uid of [...this.mirror.keys()]) if (!online.has(uid)) this.change(uid, undefined);
    for (const [uid, entry] of online) if (!sameEntry(this.mirror.get(uid), entry)) this.change(uid, entry);
  }

  private onAnnouncement(message: string): void {
    const parsed = this.parse(message, 'unreadable presence announcement ignored');
    const offline = parsed as { uid?: unknown; offline?: unknown } | undefined;
    if (offline?.offline === true && typeof offline.uid === 'string') {
      const held = this.book.current(offline.uid);
      if (!held) {
        this.change(offline.uid, undefined);
        return;
      }
      // Still connected here, whatever another instance's release or sweep concluded: say so again.
      this.pending.set(offline.uid, 'claim');
      this.change(offline.uid, held);
      return;
    }
    const entry = asEntry(parsed);
    // Our own claims were applied when they were made.
    if (!entry || entry.instance === this.instanceId) return;
    if (!sameEntry(this.mirror.get(entry.uid), entry)) this.change(entry.uid, entry);
  }

  /** JSON from Redis, or undefined (logged) when it is not JSON. */
  private parse(text: string, what: string): unknown {
    try {
      return JSON.parse(text);
    } catch (error) {
      this.logger.warn({ err: error }, what);
      return undefined;
    }
  }

  private change(uid: string, entry: PresenceEntry | undefined): void {
    const previous = this.mirror.get(uid);
    if (entry) this.mirror.set(uid, entry);
    else if (!this.mirror.delete(uid)) return;
    this.listeners.notify(uid, entry, previous);
  }
}

/** An entry as written by CLAIM, or undefined for anything else (another writer's value under our key). */
function asEntry(value: unknown): PresenceEntry | undefined {
  const entry = value as Partial<PresenceEntry> | null;
  if (typeof entry?.uid !== 'string' || typeof entry.instance !== 'string' || typeof entry.clientId !== 'string') return undefined;
  return entry as PresenceEntry;
}

function sameEntry(a: PresenceEntry | undefined, b: PresenceEntry): boolean {
  return a !== undefined && a.instance === b.instance && a.clientId === b.clientId && a.connectedAt === b.connectedAt;
}
