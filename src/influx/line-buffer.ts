/**
 * Points waiting in memory, kept as ready-made batches of at most `batchSize`
 * lines. Taking the oldest batch is O(1); a flat array spliced from the front
 * copied the whole backlog (up to max_buffer_points references) per batch.
 */
export class LineBuffer {
  private batches: string[][] = [];
  private count = 0;

  constructor(private readonly batchSize: number) {}

  get length(): number {
    return this.count;
  }

  push(lines: readonly string[]): void {
    let last = this.batches[this.batches.length - 1];
    for (const line of lines) {
      if (last === undefined || last.length >= this.batchSize) {
        last = [];
        this.batches.push(last);
      }
      last.push(line);
    }
    this.count += lines.length;
  }

  /** The oldest batch (at most batchSize lines), or an empty array. */
  takeBatch(): string[] {
    const batch = this.batches.shift() ?? [];
    this.count -= batch.length;
    return batch;
  }

  /** Everything, oldest first. */
  takeAll(): string[] {
    const all = this.batches.flat();
    this.batches = [];
    this.count = 0;
    return all;
  }

  /** Puts lines back in front of what is buffered (a failed spill returns them here). */
  unshift(lines: readonly string[]): void {
    if (lines.length === 0) return;
    const rest = this.takeAll();
    this.push(lines);
    this.push(rest);
  }
}
