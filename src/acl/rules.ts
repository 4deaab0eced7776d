/**
 * The shape of a configured ACL rule (`[acl] rules` in config.toml, and the
 * admin command `acl.rules.set`) and its validation; src/mqtt/acl-rules.ts
 * compiles and matches them.
 */
export type RuleWho = 'anyone' | 'devices' | 'services' | 'anonymous' | `device:${string}` | `service:${string}`;
export type RuleAction = 'publish' | 'subscribe' | 'both';
export type RuleEffect = 'allow' | 'deny';

export interface AclRule {
  who: RuleWho;
  action: RuleAction;
  effect: RuleEffect;
  /** A topic filter (`+`, `#`); a whole level `%u` is the uid or service name, `%c` the client id. */
  topic: string;
}

/** Why a rule cannot be used, or undefined. Used by the config schema and the admin command. */
export function ruleProblem(rule: AclRule): string | undefined {
  const who = rule.who;
  if (!['anyone', 'devices', 'services', 'anonymous'].includes(who) && !/^(device|service):[A-Za-z0-9_-]{1,64}$/.test(who)) {
    return `who must be anyone, devices, services, anonymous, device:<uid> or service:<name>, got ${JSON.stringify(who)}`;
  }
  const topic = rule.topic;
  if (topic === '') return 'topic is empty';
  if (topic.includes('\u0000')) return 'topic contains U+0000';
  const levels = topic.split('/');
  for (const [i, level] of levels.entries()) {
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return `'#' must be a whole level and the last one, in ${JSON.stringify(topic)}`;
    if (level.includes('+') && level !== '+') return `'+' must be a whole level, in ${JSON.stringify(topic)}`;
    if (level.includes('%') && level !== '%u' && level !== '%c') return `a substitution must be a whole level, %u or %c, in ${JSON.stringify(topic)}`;
  }
  return undefined;
}


/** Where the rules managed live (admin `acl.rules.set`) are kept: the shared store, so every cluster instance reads the same. */
const LIVE_RULES_KEY = 'acl/rules';

export interface RuleStore {
  get<T>(key: string): Promise<T | undefined>;
  put(key: string, value: unknown): Promise<void>;
}

/** The rules set live, in order (none: []). */
export async function loadLiveRules(store: RuleStore): Promise<AclRule[]> {
  return (await store.get<AclRule[]>(LIVE_RULES_KEY)) ?? [];
}

/** Checks every rule, then replaces the live rules; throws naming the first bad rule. */
export async function saveLiveRules(store: RuleStore, rules: readonly AclRule[]): Promise<void> {
  for (const [i, rule] of rules.entries()) {
    const problem = ruleProblem(rule);
    if (problem) throw new RangeError(`rule ${i}: ${problem}`);
  }
  await store.put(LIVE_RULES_KEY, rules);
}
