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
  /** Pairs: points accepted up to the event, its sequence number; oldest first from `head`. */
  private marks: number[] = [];
  private head = 0;

  constructor(private readonly onSettled: (seq: number) => void) {}

  /** Points taken; `seq` when they are the points of a device event from the ingest log. */
  accepted(points: number, seq: number | undefined): void {
    this.acceptedPoints += points;
    if (seq === undefined) return;
    this.marks.push(this.acceptedPoints, seq);
    this.check();
  }

  /** The oldest `points` points not settled yet are done. */
  settled(points: number): void {
    if (points <= 0) return;
    this.settledPoints += points;
    this.check();
  }

  private check(): void {
    let seq: number | undefined;
    while (this.head < this.marks.length && (this.marks[this.head] ?? Infinity) <= this.settledPoints) {
      seq = this.marks[this.head + 1];
      this.head += 2;
    }
    if (this.head === this.marks.length) {
      this.marks = [];
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.marks.length) {
      this.marks = this.marks.slice(this.head);
      this.head = 0;
    }
    if (seq !== undefined) this.onSettled(seq);
  }
}
