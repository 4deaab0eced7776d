/**
 * Which device events the Influx writer is done with, for the ingest log's
 * cursor (README "Durable ingest"): done means written to InfluxDB, made
 * durable in the spool, or dropped on purpose (invalid, rejected by the
 * server, spool full: each counted).
 *
 * Points leave the writer in the order they came (buffer → batch → written or
 * spooled, oldest first), so counting is enough: an event's points are done
 * once as many points are settled as had been accepted up to and including
 * it. `onSettled` gets the newest event sequence number whose points are all
 * done.
 */
export class Settlement {
  private acceptedPoints = 0;
  private settledPoints = 0;
  /**
   * Pairs (points accepted up to the event, its sequence number), oldest
   * first from `head`, in a ring that doubles when full: one pair per
   * telemetry message, and an array pushed and cut per message was 1.9 % of
   * the broker's allocations in bench scenario 8.
   */
  private marks = new Float64Array(2 * INITIAL_MARKS);
  private head = 0;
  private count = 0;

  constructor(private readonly onSettled: (seq: number) => void) {}

  /** Points taken; `seq` when they are the points of a device event from the ingest log. */
  accepted(points: number, seq: number | undefined): void {
    this.acceptedPoints += points;
    if (seq === undefined) return;
    if (2 * this.count === this.marks.length) this.grow();
    const at = (this.head + 2 * this.count) % this.marks.length;
    this.marks[at] = this.acceptedPoints;
    this.marks[at + 1] = seq;
    this.count++;
    this.check();
  }

  /** The oldest `points` points not settled yet are done. */
  settled(points: number): void {
    if (points <= 0) return;
    this.settledPoints += points;
    this.check();
  }

  private check(): void {
    const marks = this.marks;
    let seq: number | undefined;
    while (this.count > 0 && (marks[this.head] as number) <= this.settledPoints) {
      seq = marks[this.head + 1];
      this.head = (this.head + 2) % marks.length;
      this.count--;
    }
    if (seq !== undefined) this.onSettled(seq);
  }

  private grow(): void {
    const old = this.marks;
    const marks = new Float64Array(old.length * 2);
    // Unrolled oldest first: the part from head to the end, then the part before it.
    marks.set(old.subarray(this.head));
    marks.set(old.subarray(0, this.head), old.length - this.head);
    this.marks = marks;
    this.head = 0;
  }
}

const INITIAL_MARKS = 1024;
