import type { Logger } from '../logger.js';
import type { KvStore } from '../store/index.js';
import type { ChannelMessage, RevocationChannel } from './channel.js';
import { normalizeSerial, REVOCATIONS_PREFIX, revocationKey, type Notice, type Presented, type Revocation } from './revocation.js';

export type NoticeListener = (notice: Notice) => void;

/** What an operator asks for: a whole device, or one certificate (optionally from a later time on). */
export type RevokeRequest = { uid: string; serial?: undefined } | { serial: string; uid?: string };

/**
 * The revocation list (README "Revocation"), one per instance: kept in the
 * KvStore (embedded, or the cluster's Redis) and in memory, where every TLS
 * login and password login is checked without a store read. A revocation
 * takes effect on the instance that made it first, then is written to the
 * store, then announced on the channel; every instance (this one too) applies
 * a change to its memory and tells its listener (the MQTT gateway), which
 * closes the sessions it holds. A serial revoked for later (a
 * rotation's grace period) is announced again, by every instance's own timer,
 * when its time comes.
 */
export class RevocationService {
  private readonly entries = new Map<string, Revocation>();
  private readonly listeners = new Set<NoticeListener>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private resyncing: Promise<void> | undefined;

  constructor(
    private readonly store: KvStore,
    private readonly channel: RevocationChannel,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** After the store opened. */
  async start(): Promise<void> {
    this.running = true;
    // Subscribed first, then read: a change made in between arrives twice rather than never.
    await this.channel.open({ deliver: (message) => this.apply(message), resync: () => this.resync() });
    await this.load();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.resyncing;
    await this.channel.close();
  }

  /** Returns the function that removes the listener. */
  onNotice(listener: NoticeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Why this device (or its certificate) is refused now, or undefined. */
  check(presented: Presented): Revocation | undefined {
    const now = this.now();
    const byUid = this.entries.get(revocationKey({ uid: presented.uid }));
    if (byUid && byUid.effectiveAt <= now) return byUid;
    if (presented.serial !== undefined) {
      const bySerial = this.entries.get(revocationKey({ serial: normalizeSerial(presented.serial) }));
      if (bySerial && bySerial.effectiveAt <= now) return bySerial;
    }
    return undefined;
  }

  list(): Revocation[] {
    return [...this.entries.values()].sort((a, b) => a.at - b.at);
  }

  async revoke(request: RevokeRequest, details: { reason: string; by: string; effectiveAt?: number }): Promise<Revocation> {
    const at = this.now();
    const entry: Revocation = {
      ...(request.uid !== undefined ? { uid: request.uid } : {}),
      ...(request.serial !== undefined ? { serial: normalizeSerial(request.serial) } : {}),
      reason: details.reason,
      at,
      by: details.by,
      effectiveAt: details.effectiveAt ?? at,
    };
    const key = revocationKey(entry.serial !== undefined ? { serial: entry.serial } : entry);
    // In force here before the store write: a synced write waits for the disk, which on a busy host
    // can take long (a CI run saw the close 1.2 s after the command), and the session should not last that long.
    const previous = this.entries.get(key);
    this.apply({ op: 'put', key, entry });
    try {
      await this.store.put(key, entry);
    } catch (error) {
      // Not stored, so not revoked (the caller gets the error); sessions closed meanwhile may connect again.
      if (this.entries.get(key) === entry) {
        if (previous) this.entries.set(key, previous);
        else this.entries.delete(key);
        this.schedule();
      }
      throw error;
    }
    await this.channel.publish({ op: 'put', key, entry });
    return entry;
  }

  /** Lifts the revocation of a device (not of its single certificates); false when there was none. */
  async unrevoke(uid: string): Promise<boolean> {
    const key = revocationKey({ uid });
    if ((await this.store.get(key)) === undefined && !this.entries.has(key)) return false;
    await this.store.del(key);
    await this.channel.publish({ op: 'del', key });
    return true;
  }

  /** Closes the device's sessions on every instance; it may connect again. */
  async kick(uid: string): Promise<void> {
    await this.channel.publish({ op: 'kick', uid });
  }

  private apply(message: ChannelMessage): void {
    switch (message.op) {
      case 'put':
        // This instance's own revocation, applied before it was stored, comes back through an in-process channel.
        if (this.entries.get(message.key) === message.entry) return;
        this.entries.set(message.key, message.entry);
        this.entryChanged(message.entry);
        return;
      case 'del':
        this.entries.delete(message.key);
        this.schedule();
        return;
      case 'kick':
        this.notify({ kind: 'kick', uid: message.uid });
        return;
    }
  }

  private entryChanged(entry: Revocation): void {
    this.schedule();
    if (entry.effectiveAt > this.now()) return;
    this.notify(entry.serial === undefined && entry.uid !== undefined ? { kind: 'revoked', uid: entry.uid } : { kind: 'recheck' });
  }

  private notify(notice: Notice): void {
    for (const listener of this.listeners) {
      try {
        listener(notice);
      } catch (error) {
        this.logger.error({ err: error, notice }, 'a revocation listener failed');
      }
    }
  }

  /** One timer, for the next revocation whose time has not come yet. */
  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.running) return;
    const now = this.now();
    let next = Infinity;
    for (const entry of this.entries.values()) if (entry.effectiveAt > now) next = Math.min(next, entry.effectiveAt);
    if (next === Infinity) return;
    // setTimeout takes at most 2^31-1 ms; a later time is scheduled again when this one fires.
    this.timer = setTimeout(() => this.due(), Math.min(next - now, 2 ** 31 - 1));
    this.timer.unref();
  }

  private due(): void {
    this.timer = undefined;
    this.notify({ kind: 'recheck' });
    this.schedule();
  }

  private resync(): void {
    if (!this.running || this.resyncing) return;
    this.resyncing = this.load()
      .then(() => this.notify({ kind: 'recheck' }))
      .catch((error: unknown) => this.logger.warn({ err: error }, 'reading the revocation list again failed; the one in memory stays'))
      .finally(() => {
        this.resyncing = undefined;
      });
  }

  private async load(): Promise<void> {
    const loaded = new Map<string, Revocation>();
    for await (const [key, entry] of this.store.entries<Revocation>(REVOCATIONS_PREFIX)) loaded.set(key, entry);
    this.entries.clear();
    for (const [key, entry] of loaded) this.entries.set(key, entry);
    this.schedule();
  }
}

