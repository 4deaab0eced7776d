/*
 * mqemitter matches every message's topic against its `_matcher`, a qlobber
 * trie: in the profile of bench scenario 10 splitting the topic and walking
 * the trie (here and in the persistence's subscriptionsByTopic) took 6.6 % of
 * the broker's busy time at QoS 1 (persistent session) and 3.4 % at QoS 0
 * (clean session), for the same 64 topics again and again. The matcher's
 * match is remembered per topic (../topic-matches.ts), and its add, remove
 * and clear forget what was remembered, so a match is never older than the
 * subscriptions. Its consumers only read a match (mqemitter's fastparallel
 * iterates over it).
 */
import { DependencyMismatchError } from '../../errors.js';
import { installedVersion } from './versions.js';
import { TopicMatches } from '../topic-matches.js';

interface Matcher {
  /** qlobber's match(topic, ctx): ctx is passed to custom matchers; aedes never passes it. */
  match(topic: string, ctx?: unknown): unknown[];
  add(...args: unknown[]): unknown;
  remove(...args: unknown[]): unknown;
  clear(...args: unknown[]): unknown;
}

function isMatcher(value: unknown): value is Matcher {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Record<string, unknown>;
  return ['match', 'add', 'remove', 'clear'].every((name) => typeof candidate[name] === 'function');
}

/**
 * Remembers the matches of an mqemitter (aedes' `mq`, in process or on Redis):
 * its `_matcher` qlobber, which `_do` matches each message's topic with and
 * `on` / `removeListener` / `removeAllListeners` change. Returns the cache (for tests).
 */
export function rememberEmitterMatches(mq: unknown): TopicMatches<unknown> {
  const matcher = (mq as { _matcher?: unknown } | null)?._matcher;
  if (!isMatcher(matcher)) {
    throw new DependencyMismatchError('mqemitter', installedVersion('mqemitter'), 'the emitter has no `_matcher` qlobber with match, add, remove and clear');
  }
  const matches = new TopicMatches<unknown>();
  const match = matcher.match.bind(matcher);
  const matchOne = (topic: string): unknown[] => match(topic);
  // Two parameters, no rest array: this runs for every message.
  matcher.match = (topic: string, ctx?: unknown) => (ctx === undefined ? (matches.get(topic, matchOne) as unknown[]) : match(topic, ctx));
  for (const name of ['add', 'remove', 'clear'] as const) {
    const change = matcher[name].bind(matcher);
    matcher[name] = (...args: unknown[]) => {
      try {
        return change(...args);
      } finally {
        matches.forget();
      }
    };
  }
  return matches;
}
