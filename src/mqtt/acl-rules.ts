import { Qlobber } from 'qlobber';
import type { AclRule, RuleEffect, RuleWho } from '../acl/index.js';
import type { Principal } from './acl.js';

export type { AclRule } from '../acl/index.js';

/**
 * Configurable ACL rules (README "ACL rules"): topics beyond the built-in
 * Pyrinas ones, for devices, service accounts and anonymous clients. The
 * built-in rules come first and decide every device data topic
 * (`<uid>/<app|tel|ota>/…`) on their own, so no rule can let a device publish
 * as another uid; for every other topic the rules are read in order and the
 * first that matches decides. No matching rule: denied.
 */
export interface Subject {
  principal: Principal;
  clientId: string;
}

interface Compiled {
  index: number;
  rule: AclRule;
  levels: string[];
  /** Whether a level is %u or %c (checked after the index found the rule). */
  substituted: boolean;
}

function matchesWho(who: RuleWho, principal: Principal): boolean {
  switch (who) {
    case 'anyone':
      return true;
    case 'devices':
      return principal.kind === 'device';
    case 'services':
      return principal.kind === 'service';
    case 'anonymous':
      return principal.kind === 'anonymous';
    default:
      if (who.startsWith('device:')) return principal.kind === 'device' && principal.uid === who.slice('device:'.length);
      return principal.kind === 'service' && principal.name === who.slice('service:'.length);
  }
}

/** %u: a device's uid or a service account's name; an anonymous client has none. */
function userOf(principal: Principal): string | undefined {
  return principal.kind === 'device' ? principal.uid : principal.kind === 'service' ? principal.name : undefined;
}

function levelMatches(pattern: string, actual: string, subject: Subject): boolean {
  if (pattern === '%u') return actual === userOf(subject.principal);
  if (pattern === '%c') return actual === subject.clientId;
  return pattern === '+' || pattern === actual;
}

/**
 * The rules, compiled for matching. A publish is matched through a qlobber
 * index (substitutions indexed as `+`, checked exactly on the few candidates),
 * so its cost does not grow with the number of rules (bench: `npm run bench
 * -- --only 9`); subscriptions, which are rare, check the rules in order.
 */
export class AclRules {
  private readonly compiled: Compiled[];
  private readonly index = new Qlobber({ separator: '/', wildcard_one: '+', wildcard_some: '#', match_empty_levels: true });
  /** Changes with every new rule set, so cached decisions can tell they are stale. */
  readonly version: number;
  private static versions = 0;

  constructor(readonly rules: readonly AclRule[]) {
    this.version = ++AclRules.versions;
    this.compiled = rules.map((rule, index) => {
      const levels = rule.topic.split('/');
      return { index, rule, levels, substituted: levels.some((l) => l === '%u' || l === '%c') };
    });
    for (const compiled of this.compiled) {
      if (compiled.rule.action === 'subscribe') continue;
      this.index.add(compiled.levels.map((l) => (l === '%u' || l === '%c' ? '+' : l)).join('/'), compiled);
    }
  }

  get size(): number {
    return this.compiled.length;
  }

  /** The first rule for publishing to `topic`: allow, deny, or undefined when none matches. */
  publish(subject: Subject, topic: string): RuleEffect | undefined {
    const candidates = this.index.match(topic) as Compiled[];
    if (candidates.length === 0) return undefined;
    // `#` and `+` at the first level do not match a topic starting with `$` [MQTT-4.7.2-1]: nor do rules.
    const dollar = topic.startsWith('$');
    const topicLevels = topic.split('/');
    let best: Compiled | undefined;
    for (const candidate of candidates) {
      if (best && candidate.index > best.index) continue;
      if (!matchesWho(candidate.rule.who, subject.principal)) continue;
      if (dollar && (candidate.levels[0] === '+' || candidate.levels[0] === '#')) continue;
      if (candidate.substituted && !candidate.levels.every((level, i) => level === '#' || levelMatches(level, topicLevels[i] ?? '', subject))) continue;
      best = candidate;
    }
    return best?.rule.effect;
  }

  /** The first rule for subscribing to `filter` (the rule's filter must cover it): allow, deny, or undefined. */
  subscribe(subject: Subject, filter: string): RuleEffect | undefined {
    const requested = filter.split('/');
    for (const compiled of this.compiled) {
      if (compiled.rule.action === 'publish' || !matchesWho(compiled.rule.who, subject.principal)) continue;
      if (filter.startsWith('$') && (compiled.levels[0] === '+' || compiled.levels[0] === '#')) continue;
      if (covers(compiled.levels, requested, subject)) return compiled.rule.effect;
    }
    return undefined;
  }
}

/** Whether every topic the requested filter matches is also matched by the rule's filter. */
function covers(rule: string[], requested: string[], subject: Subject): boolean {
  for (let i = 0; i < rule.length; i++) {
    const pattern = rule[i] ?? '';
    if (pattern === '#') return true;
    const level = requested[i];
    if (level === undefined || level === '#') return false;
    if (pattern === '+') continue;
    if (level === '+') return false;
    if (!levelMatches(pattern, level, subject)) return false;
  }
  return rule.length === requested.length;
}
