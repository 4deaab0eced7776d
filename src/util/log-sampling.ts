/**
 * "Log the first, then every Nth": a flood of the same problem then cannot
 * flood the log too, and the count each logged line carries tells how often
 * it happened. One rule, in three shapes for the three ways callers count.
 */

/** For a count kept elsewhere (counting from 1): the first `first` occurrences are logged, then every `n`th. */
export function shouldLog(count: number, n: number, first = 1): boolean {
  return count <= first || count % n === 0;
}

/** Counts the occurrences itself: each call is one, and says whether to log it. */
export function everyNth(n: number, first = 1): () => boolean {
  let count = 0;
  return () => shouldLog(++count, n, first);
}

/**
 * `everyNth` counted apart per key, so one reason's flood does not silence
 * another's first line. Keys come from a closed set (a reason union), so the
 * map holds a handful of entries.
 */
export class EveryNthPerKey<K> {
  private readonly counts = new Map<K, number>();

  constructor(
    private readonly n: number,
    private readonly first = 1,
  ) {}

  /** Counts one occurrence of `key`: how many so far (this one included) and whether to log this one. */
  note(key: K): { count: number; log: boolean } {
    const count = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, count);
    return { count, log: shouldLog(count, this.n, this.first) };
  }
}

/**
 * "Log once per key" for keys a client chooses (so an open set): remembers at
 * most `capacity` keys and never forgets one, so a key is logged at most once
 * per process; past the capacity, new keys are reported as `full` once and then
 * as `seen`, so a device sending random keys costs one more log line, not a
 * growing set.
 */
export class FirstSeen<K> {
  private readonly seen = new Set<K>();
  private fullReported = false;

  constructor(private readonly capacity: number) {}

  /** `new`: log it (now remembered); `full`: log that no more keys are remembered; `seen`: stay quiet. */
  note(key: K): 'new' | 'full' | 'seen' {
    if (this.seen.has(key)) return 'seen';
    if (this.seen.size < this.capacity) {
      this.seen.add(key);
      return 'new';
    }
    if (this.fullReported) return 'seen';
    this.fullReported = true;
    return 'full';
  }
}
