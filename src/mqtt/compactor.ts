export interface CompactorOptions {
  /** Compacts the key range; one call at a time. */
  compact: () => Promise<void>;
  /** At most one compaction starts per this many milliseconds. */
  intervalMs: number;
  /** A request waits at least this long, so a burst of clears costs one compaction. */
  settleMs: number;
  /** Told when a compaction ends, with its error if it failed. */
  onDone: (error: unknown, durationMs: number) => void;
  now?: () => number;
}

/**
 * LevelDB frees the space of deleted keys only when a compaction rewrites
 * their files, and on its own it compacts only as levels fill: a store that
 * was filled and then cleared keeps its size. This runs `compact` after
 * deletes were requested, at most once per `intervalMs`, never two at once,
 * and `close()` waits for the one running.
 */
export class Compactor {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private requested = false;
  private closed = false;
  private lastStart = Number.NEGATIVE_INFINITY;
  private readonly now: () => number;

  constructor(private readonly options: CompactorOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Asks for a compaction; requests while one waits or runs are served by the next one. */
  request(): void {
    if (this.closed) return;
    this.requested = true;
    if (this.timer === undefined && this.running === undefined) this.schedule();
  }

  /** Stops scheduling and waits for a running compaction. Safe to call twice. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private schedule(): void {
    const wait = Math.max(this.options.settleMs, this.lastStart + this.options.intervalMs - this.now());
    this.timer = setTimeout(() => this.run(), wait);
    // A pending compaction must not keep the process alive.
    this.timer.unref();
  }

  private run(): void {
    this.timer = undefined;
    this.requested = false;
    const started = this.now();
    this.lastStart = started;
    this.running = this.options.compact().then(
      () => this.finished(undefined, started),
      (error: unknown) => this.finished(error, started),
    );
  }

  private finished(error: unknown, started: number): void {
    this.running = undefined;
    this.options.onDone(error, this.now() - started);
    if (this.requested && !this.closed) this.schedule();
  }
}
