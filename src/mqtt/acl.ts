import { parseDirection, parseTopic, type DeviceTopic, type TopicParseFailure } from '../protocol/index.js';
import type { AclRules, Subject } from './acl-rules.js';

/**
 * Who may publish and subscribe where (README "ACL"). Identity comes from the
 * TLS certificate or the login, never from the topic: Pyrinas trusted the uid
 * in the topic, we check it against the authenticated uid.
 */

/** A device (its uid), a service account (its name), or, with `mqtt.auth.anonymous`, a client without an identity. */
export type Principal = { kind: 'device'; uid: string } | { kind: 'service'; name: string } | { kind: 'anonymous'; clientId: string };

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

/** What a PUBLISH may do, decided by the built-in rules and then the configured ones. */
export type PublishVerdict =
  /** Device data of the publishing device itself: into the ingest log. */
  | { kind: 'ingest'; topic: DeviceTopic }
  /** Into MQTT routing (a service account's server message, or a topic a rule allows). */
  | { kind: 'route' }
  | { kind: 'deny'; reason: TopicParseFailure | 'not_own_uid' | 'wrong_direction' | 'reserved' | 'device_topic' | 'denied_by_rule' | 'no_rule' };

/**
 * A topic the built-in rules own: its second level is `app`, `tel` or `ota`
 * (even when the rest does not parse), so no configured rule can let anyone
 * publish what would look like another device's data.
 */
function isDeviceDataShaped(topic: string): boolean {
  const first = topic.indexOf('/');
  if (first < 0) return false;
  const second = topic.indexOf('/', first + 1);
  const kind = second < 0 ? topic.slice(first + 1) : topic.slice(first + 1, second);
  return kind === 'app' || kind === 'tel' || kind === 'ota';
}

/**
 * Built-in rules first (README "ACL"): `$SYS` is the server's; a device data
 * topic is the built-in rules' alone (a device publishes its own, a service
 * account speaks for the server on `…/s`, nobody else); every other topic
 * goes to the configured rules, first match decides, none: denied.
 */
export function decidePublish(subject: Subject, topic: string, rules: AclRules): PublishVerdict {
  const principal = subject.principal;
  if (topic.startsWith('$SYS')) return { kind: 'deny', reason: 'reserved' };
  if (isDeviceDataShaped(topic)) {
    if (principal.kind === 'device') {
      const decision = decideDevicePublish(principal.uid, topic);
      return decision.ok ? { kind: 'ingest', topic: decision.topic } : { kind: 'deny', reason: decision.reason };
    }
    if (principal.kind === 'service') {
      const decision = decideServicePublish(topic);
      return decision.ok ? { kind: 'route' } : { kind: 'deny', reason: decision.reason };
    }
    return { kind: 'deny', reason: 'device_topic' };
  }
  const effect = rules.publish(subject, topic);
  if (effect === 'allow') return { kind: 'route' };
  if (effect === 'deny') return { kind: 'deny', reason: 'denied_by_rule' };
  // No rule: a device's malformed device topic keeps its parse failure as the reason.
  if (principal.kind === 'device') {
    const parsed = parseTopic(topic);
    if (!parsed.ok) return { kind: 'deny', reason: parsed.reason };
  }
  return { kind: 'deny', reason: 'no_rule' };
}

/**
 * Built-in subscriptions (a device: its own `…/s` topics; a service account:
 * anything but `$`, and the broker's `$SYS/broker/…`), then the configured
 * rules. `$SYS` is for service accounts only: no rule grants it.
 */
export function maySubscribe(subject: Subject, filter: string, rules: AclRules): boolean {
  const principal = subject.principal;
  if (filter.startsWith('$SYS')) return principal.kind === 'service' && filter.startsWith('$SYS/broker/');
  if (principal.kind === 'device' && mayDeviceSubscribe(principal.uid, filter)) return true;
  if (principal.kind === 'service' && mayServiceSubscribe(filter)) return true;
  return rules.subscribe(subject, filter) === 'allow';
}
