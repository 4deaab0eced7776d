import type { DeviceEvent, DurableMode } from '../events.js';
import type { LogReader } from '../ingest/index.js';
import { Fifo } from '../util/fifo.js';
import { BoundedQueue } from './inbox.js';

/**
 * Events of a lagging durable runner kept in memory before it is fed from
 * disk instead: several group commits' worth (a batch under load holds
 * thousands), so a burst costs no disk read; about 13 MB of small events.
 */
export const MAX_WAITING_IN_MEMORY = 65_536;

/** Sequence numbers in order, with cheap removal at the front. */
class SeqQueue {
  private readonly items = new Fifo<number>();

  get size(): number {
    return this.items.size;
  }

  push(seq: number): void {
    this.items.push(seq);
  }

  peek(): number | undefined {
    return this.items.peek();
  }

  /** Removes every number up to and including `seq`. */
  dropThrough(seq: number): void {
    while ((this.items.peek() ?? Number.POSITIVE_INFINITY) <= seq) this.items.shift();
  }
}

/**
 * Where one durable runner is in the ingest log (README "Durable ingest").
 *
 * Live, the broker pushes each durable event into the runner's inbox; when
 * the inbox is full the runner starts lagging: its events wait in memory (a
 * bounded list), and past that a reader feeds it from the log on disk (so a
 * slow runner never holds devices back until the log itself is full), until
 * it has caught up and goes live again.
 *
 * Its committed position is the last sequence number before the oldest event
 * handed to the runner and not yet committed (by `handle()` resolving, or by
 * the runner itself in `manual` mode); with nothing outstanding, everything
 * it has looked at (delivered or skipped as not its type). Events are handed
 * out before they are durable, so this may be past the durable head; the log
 * saves no more than the head.
 */
export class DurableCursor {
  private readonly inflight = new SeqQueue();
  /** Set while the runner is fed from disk. */
  reader: LogReader | undefined;
  /**
   * Events for the runner that its inbox had no room for yet (live ones, or
   * read from disk), in order. A ring: under steady overload it never
   * empties, and a list that is only cut when empty kept every event ever
   * handed on alive (scenario 6: peak RSS grew with the run's length).
   */
  readonly pending = new BoundedQueue<DeviceEvent>(MAX_WAITING_IN_MEMORY);
  /** A catch-up loop is running (at most one per runner). */
  catchingUp = false;
  replayed = 0;

  constructor(
    readonly mode: DurableMode,
    /** The last number appended to the log: a live runner has looked at everything up to it. */
    private readonly head: () => number,
    /** Events between two numbers (numbers skipped after a crash hold none). */
    private readonly distance: (fromSeq: number, toSeq: number) => number = (from, to) => Math.max(0, to - from),
  ) {}

  /** Behind the head: events wait in memory, or are to be read from disk. */
  get lagging(): boolean {
    return this.reader !== undefined || this.waiting > 0;
  }

  /**
   * Events appended to the log (up to `appended`, durable or not yet) that
   * this runner has not looked at: still being written, waiting in memory,
   * or to be read from disk. Events handed to it and not yet committed do
   * not count (its inbox bounds those).
   */
  behind(appended: number): number {
    return this.distance(this.looked(), appended);
  }

  /** The last sequence number the runner has looked at (taken into its inbox, or skipped as not its type). */
  private looked(): number {
    const waiting = this.pending.peek()?.log?.seq;
    return waiting !== undefined ? waiting - 1 : this.reader ? this.reader.nextSeq - 1 : this.head();
  }

  /** Events waiting in memory for inbox room. */
  get waiting(): number {
    return this.pending.length;
  }

  /** An event was put into the runner's inbox. */
  delivered(seq: number): void {
    this.inflight.push(seq);
  }

  /** The runner is done with everything up to `seq`. */
  commit(seq: number): void {
    this.inflight.dropThrough(seq);
  }

  committed(): number {
    const looked = this.looked();
    const oldest = this.inflight.peek();
    return oldest === undefined ? looked : Math.min(looked, oldest - 1);
  }

  outstanding(): number {
    return this.inflight.size;
  }
}
