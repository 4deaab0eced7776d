/**
 * An async operation that runs at most once, such as a `stop()` or `close()`
 * that must be safe to call twice: the first `run()` starts it and every later
 * call (during or after it) gets the same promise, so a second caller waits for
 * the stop in progress instead of starting another or returning early.
 * `reset()` arms it again, for a runner that is started again after a stop.
 */
export class Once<T = void> {
  private promise: Promise<T> | undefined;

  constructor(private readonly operation: () => Promise<T>) {}

  run(): Promise<T> {
    this.promise ??= this.operation();
    return this.promise;
  }

  reset(): void {
    this.promise = undefined;
  }
}
