/**
 * Runs async tasks one at a time, in call order, so code that touches the
 * same files or state never interleaves: the OTA store's read-modify-write
 * sequences (the OTA runner's events, library calls and HTTP progress reports
 * all mutate the same records), the Influx spool's files, the Influx writer's
 * steps. A failed task rejects its own caller only; the queue goes on with
 * the next one.
 *
 * Callers await their task, so the queue holds at most one task per waiting
 * caller: it is bounded by whatever bounds the callers (the broker inbox, the
 * HTTP server's connection limit, the writer's own loop). The one caller that
 * does not wait, download progress (FirmwareStates.served), queues at most
 * one batch per device.
 *
 * Our own rather than p-queue: one task at a time, in order, is all any
 * caller needs; p-queue's concurrency, intervals, priorities and timeouts
 * (and its two dependencies) would be unused weight for these lines.
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
