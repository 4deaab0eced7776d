/**
 * Remembered topic matches. The subscribers a topic matches stay the same
 * until a subscription changes, and a fleet publishes on the same few topics
 * per device over and over, so a broker need not split the topic and walk
 * its subscription trie for each message (aedes does, twice per QoS 1
 * message: see aedes/emitter-matches.ts and SessionStore.subscriptionsByTopic).
 *
 * Whoever changes the subscriptions calls `forget()`. What is remembered is
 * a frozen copy: a consumer that wrote to one would throw rather than change
 * the subscribers of later messages on that topic, and a matcher may answer
 * with an array it keeps and changes later (qlobber returns its own array of
 * a trie node when only that node matched).
 */

/** Topics remembered at most; past it the oldest is forgotten first (a larger fleet still matches, partly uncached). */
export const MAX_REMEMBERED_TOPICS = 8192;

export class TopicMatches<T> {
  private readonly byTopic = new Map<string, readonly T[]>();
  private changes = 0;

  constructor(private readonly limit = MAX_REMEMBERED_TOPICS) {}

  /** The remembered match of `topic`, or `match(topic)`, remembered. */
  get(topic: string, match: (topic: string) => T[]): readonly T[] {
    let found = this.byTopic.get(topic);
    if (found === undefined) {
      found = Object.freeze(match(topic).slice());
      this.remember(topic, found);
    }
    return found;
  }

  /** The remembered match of `topic`, if any. */
  peek(topic: string): readonly T[] | undefined {
    return this.byTopic.get(topic);
  }

  /**
   * A mark to pass to `rememberSince` with a match computed after it (for a
   * match that arrives later, as a promise): a change in between makes the
   * match too old to remember.
   */
  mark(): number {
    return this.changes;
  }

  /** Remembers a frozen copy of `match` (returned) unless the subscriptions changed since `mark`. */
  rememberSince(mark: number, topic: string, match: T[]): readonly T[] {
    const frozen = Object.freeze(match.slice());
    if (mark === this.changes) this.remember(topic, frozen);
    return frozen;
  }

  /** Forgets every match (a subscription changed). */
  forget(): void {
    this.changes++;
    this.byTopic.clear();
  }

  get size(): number {
    return this.byTopic.size;
  }

  private remember(topic: string, match: readonly T[]): void {
    if (this.byTopic.size >= this.limit) this.byTopic.delete(this.byTopic.keys().next().value as string);
    this.byTopic.set(topic, match);
  }
}
