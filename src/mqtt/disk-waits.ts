/**
 * Device messages in the ingest log that wait for the disk before they route
 * into MQTT (to service accounts' subscriptions), and the ones that have
 * waited too long: those route at once, before they are durable.
 *
 * Under load a message routes after its group commit because one burst per commit costs
 * the least CPU at full load (routing each message when the log takes it cost
 * 1.25-1.6x the broker CPU per message on bench scenario 10). But a disk that
 * stalls (writeback, a noisy neighbour, a network volume) held every
 * subscriber's messages for as long as the stall lasted, while the runners,
 * which get events on append, went on: bench scenario 11 had commits of 100 ms
 * to 1 s and a p99 of 40-580 ms in some rounds. So a message that has waited
 * `factor` times as long as messages usually wait now (at least `minMs`)
 * routes without the disk; its acknowledgement still waits for the disk, so
 * a PUBACK still means durable. A crash before the fsync can leave a message
 * that subscribers got and the log lost: for QoS 1 the device sends it again
 * (a duplicate, which QoS 1 allows), for QoS 0 it is at most once.
 *
 * Light load: while fewer than `routeAtOnceBelow` messages wait for the disk,
 * a message routes when the log takes it. Routing per commit saves CPU only
 * when a commit holds many messages; at a few per commit, routing each at once
 * costs about the same and takes the disk out of the subscriber's latency.
 *
 * Order: messages route ahead oldest first, and a message routes ahead only
 * once it has waited longer than every younger one, so a device's messages
 * still reach subscribers in the order they came [MQTT-4.6.0-6] (an older
 * message is durable, and routed, before a younger one, or routed ahead before
 * it).
 */

/** A message the log took, waiting for the disk before it routes. */
export interface DiskWaiter {
  /** Date.now() when the log took it. */
  readonly since: number;
  /** False once it is durable or routed ahead. */
  readonly waiting: boolean;
  /** The next younger waiter: DiskWaits' own link (a list through the waiters, no array to grow and copy). */
  next: DiskWaiter | undefined;
  /** Routes it now, before it is durable (its acknowledgement still waits for the disk); `slowDisk`: because it waited too long. */
  routeAhead(slowDisk: boolean): void;
}

export interface DiskWaitsOptions {
  /** The shortest wait that routes ahead (ms). */
  minMs: number;
  /** How many times the usual wait a message may wait. */
  factor: number;
  /** The longest wait that routes ahead, however slow the disk usually is (ms). */
  maxMs: number;
  /** While fewer messages than this wait for the disk, a message routes at once (0: never). */
  routeAtOnceBelow: number;
  now?: () => number;
}

/**
 * routeAtOnceBelow 128: at 5,000 msg/s a few messages wait for each commit and
 * they route at once; at full load (bench scenario 10) hundreds wait and they
 * route together when their commit is durable. 32 was measured too low: one
 * slow write pushed the count past it and the messages behind it waited for
 * the disk (scenario 11 QoS 1 p99 11.9 and 12.8 ms against 2.4-3.1 at 128).
 */
export const DEFAULT_DISK_WAITS: DiskWaitsOptions = { minMs: 5, factor: 4, maxMs: 1000, routeAtOnceBelow: 128 };

/** One durable message in this many updates the usual wait (Date.now() per message is not free). */
const SAMPLE_EVERY = 32;
/** Weight of a new sample in the usual wait (an exponentially weighted average). */
const SAMPLE_WEIGHT = 1 / 16;

/**
 * The waiters, oldest first, as a list linked through them. A first version
 * kept them in an array (pushed per message, cut when half passed) and made
 * four closures per message; at full load both lived as long as the disk
 * wait, and bench scenario 10 QoS 1 clean spent twice the time in the garbage
 * collector (1.86 s against 0.89 s, one profile each) at 18.1 µs per message
 * against 12.2 (medians of three interleaved pairs). This version (a list, one
 * object and one bound function per message) was not worse than the code
 * without any of it in three interleaved pairs: QoS 1 clean 14.79 / 15.66 /
 * 15.13 µs against 15.66 / 17.95 / 16.04, QoS 0 clean 11.82 / 12.99 / 11.04
 * against 12.48 / 11.35 / 12.91.
 */
export class DiskWaits {
  private head: DiskWaiter | undefined;
  private tail: DiskWaiter | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  /** The usual time from take to durable (ms), averaged over samples; 0 before the first. */
  private usualMs = 0;
  private sampleCountdown = SAMPLE_EVERY;
  /** Messages added and not yet durable, whether they wait or were routed ahead. */
  private pending = 0;
  private stopped = false;

  constructor(private readonly options: DiskWaitsOptions) {
    this.now = options.now ?? Date.now;
  }

  /** How long a message may wait for the disk now before it routes ahead (ms). */
  get limitMs(): number {
    const { minMs, factor, maxMs } = this.options;
    return Math.min(maxMs, Math.max(minMs, factor * this.usualMs));
  }

  /** `waiter` was just taken by the log, and is not durable yet. */
  add(waiter: DiskWaiter): void {
    if (this.stopped) return;
    if (++this.pending < this.options.routeAtOnceBelow) {
      // Every older message that still waits goes first, so that order holds.
      for (let older = this.head; older !== undefined; older = older.next) if (older.waiting) older.routeAhead(false);
      this.dropDone();
      waiter.routeAhead(false);
      return;
    }
    waiter.next = undefined;
    if (this.tail === undefined) this.head = waiter;
    else this.tail.next = waiter;
    this.tail = waiter;
    this.timer ??= this.arm(this.limitMs);
  }

  /** `waiter` is durable (and no longer waiting): frees the waiters at the head that are done. */
  durable(waiter: DiskWaiter): void {
    if (this.pending > 0) this.pending--;
    if (--this.sampleCountdown === 0) {
      this.sampleCountdown = SAMPLE_EVERY;
      const waited = this.now() - waiter.since;
      this.usualMs = this.usualMs === 0 ? waited : this.usualMs + SAMPLE_WEIGHT * (waited - this.usualMs);
    }
    this.dropDone();
  }

  /** No more routing ahead (the broker is stopping): what waits routes when durable, as before. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.head = undefined;
    this.tail = undefined;
  }

  private arm(delayMs: number): NodeJS.Timeout {
    const timer = setTimeout(() => this.tick(), Math.max(1, Math.ceil(delayMs)));
    // A wait for the disk never keeps the process alive by itself.
    timer.unref();
    return timer;
  }

  private tick(): void {
    this.timer = undefined;
    if (this.stopped) return;
    const limit = this.limitMs;
    const now = this.now();
    for (let waiter = this.head; waiter !== undefined; waiter = waiter.next) {
      if (!waiter.waiting) continue;
      if (now - waiter.since < limit) break;
      waiter.routeAhead(true);
    }
    this.dropDone();
    if (this.head !== undefined) this.timer = this.arm(this.head.since + limit - now);
  }

  private dropDone(): void {
    let head = this.head;
    while (head !== undefined && !head.waiting) {
      const next = head.next;
      head.next = undefined;
      head = next;
    }
    this.head = head;
    if (head === undefined) this.tail = undefined;
  }
}
