import { AclRules, type AclRule } from '../../src/mqtt/acl-rules.js';
import { decidePublish } from '../../src/mqtt/acl.js';
import { metric, type ScenarioResult } from '../lib/report.js';
import type { Scenario } from './context.js';

/**
 * Issue 17: the cost of matching a publish against the ACL rules stays flat
 * as rules are added. In-process, no broker: the decision the publish path
 * makes for a topic it has not seen before (a repeated topic is answered from
 * the session's cache). Rules mix literals, wildcards and %u/%c, the topic
 * matches the last rule only, so an index that scanned would pay for all.
 */
function rules(count: number): AclRule[] {
  return Array.from({ length: count }, (_, i): AclRule => {
    const shapes: AclRule[] = [
      { who: 'anyone', action: 'both', effect: 'allow', topic: `site/${i}/#` },
      { who: 'devices', action: 'publish', effect: 'allow', topic: `devices/%u/r${i}` },
      { who: `service:svc${i}`, action: 'both', effect: 'deny', topic: `ops/+/${i}` },
      { who: 'anonymous', action: 'publish', effect: 'allow', topic: `clients/%c/${i}/+` },
    ];
    return shapes[i % shapes.length] as AclRule;
  });
}

function nsPerDecision(count: number, iterations: number): number {
  const compiled = new AclRules([...rules(count - 1), { who: 'anyone', action: 'publish', effect: 'allow', topic: 'target/+/here' }]);
  const subject = { principal: { kind: 'device' as const, uid: 'dev1' }, clientId: 'dev1' };
  const topics = Array.from({ length: 64 }, (_, i) => `target/${i}/here`);
  let allowed = 0;
  for (let i = 0; i < 10_000; i++) if (decidePublish(subject, topics[i % 64] ?? '', compiled).kind === 'route') allowed++;
  const started = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) if (decidePublish(subject, topics[i % 64] ?? '', compiled).kind === 'route') allowed++;
  const elapsed = Number(process.hrtime.bigint() - started);
  if (allowed !== iterations + 10_000) throw new Error('the last rule did not match');
  return elapsed / iterations;
}

export const scenario9: Scenario = {
  id: 9,
  title: 'ACL rules: cost of deciding a publish against 1, 10, 100 and 1,000 rules (in-process, the matching rule last)',
  async run(context) {
    const iterations = context.quick ? 100_000 : 1_000_000;
    const counts = [1, 10, 100, 1000];
    const result: ScenarioResult = {
      id: 9,
      title: this.title,
      metrics: counts.map((count) => metric(`${count.toLocaleString('en-US')} rule${count === 1 ? '' : 's'}: per decision`, 'ns', 0)),
      notes: [],
    };
    const figures = counts.map((count) => nsPerDecision(count, iterations));
    figures.forEach((ns, i) => {
      const m = result.metrics[i];
      if (m) m.values.nucleon = ns;
    });
    const [one, , , thousand] = figures;
    result.notes.push(`1,000 rules cost ${((thousand ?? Number.NaN) / (one ?? Number.NaN)).toFixed(2)}x one rule (${iterations.toLocaleString('en-US')} decisions each, after 10,000 to warm up). A publish to a topic the session saw last is answered from its cache and costs none of this.`);
    return result;
  },
};
