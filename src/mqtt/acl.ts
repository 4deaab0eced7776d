import { parseDirection, parseTopic, type DeviceTopic, type TopicParseFailure } from '../protocol/index.js';

/**
 * Who may publish and subscribe where (README "ACL"). Identity comes from the
 * TLS certificate or the login, never from the topic: Pyrinas trusted the uid
 * in the topic, we check it against the authenticated uid.
 */

export type Principal = { kind: 'device'; uid: string } | { kind: 'service'; name: string };

export type PublishDecision =
  | { ok: true; topic: DeviceTopic }
  | { ok: false; reason: TopicParseFailure | 'not_own_uid' | 'wrong_direction' | 'reserved' };

/**
 * A device may publish `<uid>/app/p/<target>`, `<uid>/tel/p` and `<uid>/ota/p`
 * (also spelled `pub`) under its own uid only.
 */
export function decideDevicePublish(uid: string, topic: string): PublishDecision {
  const parsed = parseTopic(topic);
  if (!parsed.ok) return parsed;
  if (parsed.topic.uid !== uid) return { ok: false, reason: 'not_own_uid' };
  if (parsed.topic.dir !== 'p') return { ok: false, reason: 'wrong_direction' };
  return parsed;
}

/** A service account publishes on behalf of the server: `<any uid>/<kind>/s[/...]`. */
export function decideServicePublish(topic: string): PublishDecision {
  if (topic.startsWith('$')) return { ok: false, reason: 'reserved' };
  const parsed = parseTopic(topic);
  if (!parsed.ok) return parsed;
  if (parsed.topic.dir !== 's') return { ok: false, reason: 'wrong_direction' };
  return parsed;
}

/**
 * A device may subscribe to `<its uid>/<app|tel|ota>/<s|sub>` and below; the
 * first three levels must be literal, wildcards are allowed after them. So
 * `#`, `+/...`, `<other uid>/#`, `<uid>/#` and `$SYS/#` are all refused.
 */
export function mayDeviceSubscribe(uid: string, filter: string): boolean {
  const levels = filter.split('/');
  if (levels.length < 3 || levels[0] !== uid) return false;
  const kind = levels[1];
  if (kind !== 'app' && kind !== 'tel' && kind !== 'ota') return false;
  return parseDirection(levels[2] ?? '') === 's';
}

/**
 * A service account may subscribe to device traffic in both directions, across
 * devices (`+/app/p/#`, `+/tel/p`, `<uid>/#`, `#`), but never to `$SYS`.
 */
export function mayServiceSubscribe(filter: string): boolean {
  return !filter.startsWith('$');
}

export function maySubscribe(principal: Principal, filter: string): boolean {
  return principal.kind === 'device' ? mayDeviceSubscribe(principal.uid, filter) : mayServiceSubscribe(filter);
}
