/**
 * Runs async tasks one at a time, in call order, so read-modify-write sequences
 * on the store never interleave (the OTA runner's events, library calls and
 * HTTP progress reports all mutate the same records).
 *
 * Callers await their task, so the queue holds at most one task per waiting
 * caller: it is bounded by whatever bounds the callers (the broker inbox, the
 * HTTP server's connection limit).
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    // The next task runs after this one whether it failed or not; the failure
    // itself goes to this task's caller through `result`.
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Resolves once every task queued so far has finished. */
  async idle(): Promise<void> {
    await this.tail;
  }
}
