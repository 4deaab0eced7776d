/**
 * `<uid>/<kind>/<dir>[/<target...>]` (../shared/DESIGN.md section 1). Older
 * firmware spells the direction `pub` / `sub`; both are accepted on input.
 */
export type TopicKind = 'app' | 'tel' | 'ota';
export type TopicDirection = 'p' | 's';

export interface DeviceTopic {
  uid: string;
  kind: TopicKind;
  dir: TopicDirection;
  /** Everything after the direction; empty when absent. */
  target: string;
}

export type TopicParseFailure =
  | 'too_short'
  | 'bad_uid'
  | 'unknown_kind'
  | 'unknown_direction'
  | 'missing_target'
  | 'unexpected_target'
  | 'target_too_long'
  | 'wildcard';

export type TopicParseResult = { ok: true; topic: DeviceTopic } | { ok: false; reason: TopicParseFailure };

const UID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Longest `<target>` of an app topic, in characters. The target travels in
 * every ApplicationRequest, the application stores or echoes it
 * (`<uid>/app/s/<target>`), and a retained message keeps its whole topic; MQTT
 * alone would allow 65,535 bytes.
 */
export const MAX_TARGET_LENGTH = 256;

export function isValidUid(uid: string): boolean {
  return UID.test(uid);
}

export function parseDirection(dir: string): TopicDirection | undefined {
  if (dir === 'p' || dir === 'pub') return 'p';
  if (dir === 's' || dir === 'sub') return 's';
  return undefined;
}

export function parseTopic(topic: string): TopicParseResult {
  if (topic.includes('+') || topic.includes('#')) return { ok: false, reason: 'wildcard' };
  const first = topic.indexOf('/');
  const second = first < 0 ? -1 : topic.indexOf('/', first + 1);
  if (first < 0 || second < 0) return { ok: false, reason: 'too_short' };
  const third = topic.indexOf('/', second + 1);
  const uid = topic.slice(0, first);
  const kind = topic.slice(first + 1, second);
  const rawDir = third < 0 ? topic.slice(second + 1) : topic.slice(second + 1, third);
  const target = third < 0 ? '' : topic.slice(third + 1);
  if (!UID.test(uid)) return { ok: false, reason: 'bad_uid' };
  if (kind !== 'app' && kind !== 'tel' && kind !== 'ota') return { ok: false, reason: 'unknown_kind' };
  const dir = parseDirection(rawDir);
  if (!dir) return { ok: false, reason: 'unknown_direction' };
  if (kind === 'app' && target === '') return { ok: false, reason: 'missing_target' };
  if (target.length > MAX_TARGET_LENGTH) return { ok: false, reason: 'target_too_long' };
  // Device-to-server telemetry and OTA requests have no target; `ota/s/d` is a server topic.
  if (kind !== 'app' && dir === 'p' && third >= 0) return { ok: false, reason: 'unexpected_target' };
  return { ok: true, topic: { uid, kind, dir, target } };
}

export function serverTopic(uid: string, kind: TopicKind, target = ''): string {
  return target === '' ? `${uid}/${kind}/s` : `${uid}/${kind}/s/${target}`;
}
