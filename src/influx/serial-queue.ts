/**
 * Runs async tasks one at a time, in the order they were queued, so code that
 * touches the same files or state never interleaves. A failed task rejects its
 * own caller only; the queue goes on with the next one.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task, task);
    // The queue itself must not reject: the caller sees the failure through `result`.
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
