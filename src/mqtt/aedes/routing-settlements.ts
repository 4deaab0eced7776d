/*
 * What a routed message still owes before its publisher may be acknowledged.
 *
 * A QoS 1/2 message for a persistent session connected here is not written
 * to the session store at once (aedes/level-outgoing.ts defers the write):
 * most copies are acknowledged by their subscriber within a few milliseconds
 * and then never need one. The publisher's PUBACK must still mean "stored,
 * or delivered", so each deferred copy holds its message's settlement, and
 * the route (NucleonAedes.route) calls back only once every copy was
 * acknowledged by its subscriber or written.
 *
 * The store finds a message's settlement by its payload Buffer: aedes hands
 * the store its own copy of the packet (aedes-packet), which keeps the
 * payload object but nothing else of the original.
 */

type Done = (error?: Error) => void;

export class Settlement {
  private held = 0;
  private failure: Error | undefined;
  private waiter: Done | undefined;
  /** Another route used the same payload object while this one ran: its copies are written at once. */
  contested = false;

  /** A copy was deferred: the publisher waits for it. */
  hold(): void {
    this.held++;
  }

  /** A held copy was acknowledged by its subscriber (no error) or its write ended. */
  release(error?: Error): void {
    this.held--;
    if (error !== undefined) this.failure ??= error;
    if (this.held === 0 && this.waiter !== undefined) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter(this.failure);
    }
  }

  /** Calls `done` once nothing is held (at once when nothing is), with the first write error if any. */
  whenSettled(done: Done): void {
    if (this.held === 0) done(this.failure);
    else this.waiter = done;
  }
}

export class RoutingSettlements {
  private readonly byPayload = new WeakMap<object, Settlement>();

  /** A route starts: its copies may be deferred. Undefined when they may not (a string payload, or the payload object is being routed already). */
  open(payload: unknown): Settlement | undefined {
    if (typeof payload !== 'object' || payload === null) return undefined;
    const running = this.byPayload.get(payload);
    if (running !== undefined) {
      // Two routes of one Buffer at a time (a server publishing one payload to several topics): the store
      // could not tell their copies apart, so neither defers any more.
      running.contested = true;
      return undefined;
    }
    const settlement = new Settlement();
    this.byPayload.set(payload, settlement);
    return settlement;
  }

  /** The settlement a copy of this payload may be held by, for the store. */
  of(payload: unknown): Settlement | undefined {
    if (typeof payload !== 'object' || payload === null) return undefined;
    const settlement = this.byPayload.get(payload);
    return settlement === undefined || settlement.contested ? undefined : settlement;
  }

  /** The route's own step has ended (every copy is enqueued by now). */
  close(payload: unknown, settlement: Settlement): void {
    if (typeof payload !== 'object' || payload === null) return;
    if (this.byPayload.get(payload) === settlement) this.byPayload.delete(payload);
  }
}
