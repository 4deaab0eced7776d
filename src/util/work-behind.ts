/**
 * Work a runner carries out behind its inbox, so that one event's wait for
 * the disk does not hold up the events after it (the OTA runner's management
 * commands, the campaigns runner's decisions). Each piece starts at once;
 * while `limit` are under way, `start` returns a promise that resolves when
 * one of them ends, and the inbox waits on it: bounded, never a growing
 * queue. A failure goes to the piece's own `onError`. Whoever owns it waits
 * for `settled()` on stop.
 */
export class WorkBehind {
  private readonly underWay = new Set<Promise<void>>();

  constructor(private readonly limit: number) {}

  /** Pieces under way now. */
  get size(): number {
    return this.underWay.size;
  }

  start(work: () => Promise<void>, onError: (error: unknown) => void): void | Promise<void> {
    const piece: Promise<void> = work()
      .catch(onError)
      .finally(() => this.underWay.delete(piece));
    this.underWay.add(piece);
    if (this.underWay.size >= this.limit) return Promise.race(this.underWay);
  }

  /** Resolves once nothing is under way, including pieces started meanwhile. */
  async settled(): Promise<void> {
    while (this.underWay.size > 0) await Promise.all(this.underWay);
  }
}
