import { Fifo } from './fifo.js';
import { WaitList } from './wait-list.js';

interface Waiter {
  start: () => void;
  bounded: boolean;
}

/**
 * A counting semaphore with a bounded wait list: at most `limit` operations run
 * at once. Used to keep the number of messages inside aedes' mqemitter below
 * its concurrency, so it never queues internally (where a flood overflows the
 * stack, aedes issue #193) and memory stays bounded; and to keep password
 * hashing (scrypt) to a few of libuv's thread-pool threads, which file reads
 * need too (src/devices/login-guard.ts).
 */
export class Gate {
  private running = 0;
  private readonly waiting = new Fifo<Waiter>();
  /** Waiters that came through `enter`: only they count against `maxWaiting`. */
  private bounded = 0;
  private readonly idleWaiters = new WaitList();
  /** Slots freed while waiters waited, passed to them at the next `handOver`. */
  private handedOver = 0;
  private handOverScheduled = false;

  constructor(
    private readonly limit: number,
    private readonly maxWaiting: number,
  ) {}

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.size;
  }

  /** Takes a slot if one is free now (the caller then runs its operation and calls `leave`). */
  tryEnter(): boolean {
    if (this.running >= this.limit) return false;
    this.running++;
    return true;
  }

  /** Runs `start` now or when a slot frees; false when the wait list is full (nothing queued). */
  enter(start: () => void): boolean {
    if (this.running < this.limit) {
      this.running++;
      start();
      return true;
    }
    if (this.bounded >= this.maxWaiting) return false;
    this.bounded++;
    this.waiting.push({ start, bounded: true });
    return true;
  }

  /**
   * Runs `start` now or when a slot frees, never refusing: for callers whose
   * waits are bounded where they come from. A client's publishes are: aedes
   * reads no more of its socket until every publish of the last read is done,
   * so each connection has at most one read's worth waiting. They do not
   * count against `maxWaiting`, so they never crowd out the bounded callers.
   */
  enterWaiting(start: () => void): void {
    if (this.running < this.limit) {
      this.running++;
      start();
      return;
    }
    this.waiting.push({ start, bounded: false });
  }

  /** Ends one operation and starts the next waiting one, if any. */
  leave(): void {
    if (this.waiting.size > 0) {
      // The freed slot passes to the waiters (still counted as running, so no
      // newcomer takes it ahead of them), on a fresh stack, so a long wait list
      // cannot build a deep synchronous chain. One Immediate starts the waiters
      // of every slot freed meanwhile: one per waiter was one per message on
      // the routing path at full load (bench scenario 10, QoS 0).
      this.handedOver++;
      if (!this.handOverScheduled) {
        this.handOverScheduled = true;
        setImmediate(this.handOver);
      }
      return;
    }
    this.release(1);
  }

  /** Starts the oldest waiters in the slots handed over; slots no waiter took are freed. */
  private readonly handOver = (): void => {
    this.handOverScheduled = false;
    let slots = this.handedOver;
    this.handedOver = 0;
    while (slots > 0) {
      const next = this.waiting.shift();
      if (next === undefined) break;
      slots--;
      if (next.bounded) this.bounded--;
      next.start();
    }
    if (slots > 0) this.release(slots);
  };

  private release(slots: number): void {
    this.running -= slots;
    // Waiters exist only while every slot runs: the last one out leaves the gate idle.
    if (this.running === 0) this.idleWaiters.wakeAll();
  }

  /** Resolves when nothing runs or waits, or false after `timeoutMs`. */
  idle(timeoutMs: number): Promise<boolean> {
    return this.idleWaiters.until(() => this.running === 0 && this.queued === 0, timeoutMs);
  }
}
