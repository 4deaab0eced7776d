import { CpuMeter } from '../lib/proc.js';
import { metric, type Metric, type ScenarioResult } from '../lib/report.js';
import type { PublishPlan } from '../loadgen/protocol.js';
import type { Target } from '../targets/index.js';
import { acrossTargetsInRounds, logIngestCommits, relayFloorNotes, roundsNote, settle, US_PER_S, type Figures, type Scenario, type ScenarioContext } from './context.js';
import { checkSubscriberPath, RELAY_FLOOR_NOTE, SUBSCRIBER_PATH_DEVICES as DEVICES, SUBSCRIBER_PATH_PAYLOAD as PAYLOAD, SUBSCRIBER_PATH_TARGETS, withSubscriberPath } from './subscriber-session.js';

/**
 * Issue 16: the subscriber path. Devices publish on `<uid>/app/p/data` and a
 * service account subscribed on `+/app/p/#` (QoS 1) receives every message,
 * in a persistent session (CleanSession 0) or a clean one (see
 * subscriber-session.ts for the subscriber process). Unthrottled; scenario 11
 * measures the latency of the same path at a paced rate.
 */
const WINDOW = 32;
/**
 * One run's CPU per message swings 30 % and more on a shared 2-core machine
 * (Nucleon's QoS 0 clean case 1.02× to 1.86× Mosquitto's across three full
 * runs of one day): the median of interleaved rounds, as scenarios 4 and 11.
 * Rounds after the first measure only the brokers the targets compare; bare
 * aedes takes half a minute per QoS 0 run.
 */
const ROUNDS = 3;

interface Case {
  qos: 0 | 1;
  persistent: boolean;
}

const CASES: Case[] = [
  { qos: 1, persistent: true },
  { qos: 1, persistent: false },
  { qos: 0, persistent: true },
  { qos: 0, persistent: false },
];

const caseKey = (c: Case) => `q${c.qos}${c.persistent ? 'p' : 'c'}`;

/** BENCH_SCENARIO10_CASES="q1p,q0c" runs only those cases (development; q<QoS><p: persistent | c: clean>). */
function selectedCases(): Case[] {
  const wanted = process.env.BENCH_SCENARIO10_CASES?.split(',').map((s) => s.trim());
  if (!wanted) return CASES;
  const cases = CASES.filter((c) => wanted.includes(caseKey(c)));
  if (cases.length === 0) throw new Error(`BENCH_SCENARIO10_CASES="${wanted.join(',')}" names no case (known: ${CASES.map(caseKey).join(', ')})`);
  return cases;
}

const caseLabel = (c: Case) => `QoS ${c.qos}, ${c.persistent ? 'persistent' : 'clean'} session`;

/** The rows of one case, in the order `measure` returns its figures. */
function caseMetrics(c: Case): Metric[] {
  const label = caseLabel(c);
  return [
    metric(`${label}: delivered to the subscriber`, 'msg/s', 0, { kind: 'ratio-min', against: 'mosquitto', limit: 1.0 }),
    metric(`${label}: broker CPU per message`, 'µs', 2, { kind: 'ratio-max', against: 'mosquitto', limit: 1.0 }),
    metric(`${label}: subscriber process CPU per message`, 'µs', 2),
    metric(`${label}: load generator CPU per message`, 'µs', 2),
    metric(`${label}: messages delivered`, '', 0),
    metric(`${label}: lost (accepted by the broker, not delivered)`, '', 0, { kind: 'max', limit: 0 }),
    metric(`${label}: subscriber or devices disconnected`, '', 0),
  ];
}

async function measureCase(context: ScenarioContext, target: Target, c: Case): Promise<Figures> {
  return withSubscriberPath(context, target, c.persistent, async (subscriber, group) => {
    const plans: PublishPlan[] = [{ qos: c.qos, target: 'data', window: WINDOW }];
    const durationMs = context.quick ? 3000 : 10_000;
    // QoS 0 has no acknowledgement to pace it: a fixed count per device bounds it (the time cap still holds).
    const maxPerDevice = c.qos === 0 ? (context.quick ? 2000 : 8000) : 1_000_000;
    const base = { group, plans, mode: 'unthrottled' as const, maxPerDevice, payloadSize: PAYLOAD, ackTimeoutMs: 30_000 };
    const accepted = (p: { sent: Record<string, number>; acked: Record<string, number> }) => (c.qos === 1 ? (p.acked.data ?? 0) : (p.sent.data ?? 0));

    const warm = await context.gen.publish({ ...base, durationMs: context.quick ? 500 : 2000, maxPerDevice: Math.ceil(maxPerDevice / 5) });
    await settle(subscriber, accepted(warm), 60_000, { quietMs: 3000 });
    await subscriber.call('reset');

    const brokerCpu = new CpuMeter([target.brokerPid]);
    const subscriberCpu = new CpuMeter([subscriber.pid]);
    const genCpu = new CpuMeter(context.gen.pids);
    const publish = await context.gen.publish({ ...base, durationMs });
    const want = accepted(publish);
    // A long quiet window: a persistent session's store can pause deliveries for seconds, which is not a loss.
    const counts = await settle(subscriber, want, 120_000, { quietMs: 10_000 });
    const brokerS = brokerCpu.elapsed();
    const subscriberS = subscriberCpu.elapsed();
    const genS = genCpu.elapsed();
    const delivered = counts.total;
    if (process.env.BENCH_VERBOSE && target.name.startsWith('nucleon')) {
      const text = await target.command<string>('metrics', {});
      context.log(text.split('\n').filter((line) => /^nucleon_mqtt_(disconnects|overloaded|refused)_total/.test(line)).join('\n'));
    }
    await checkSubscriberPath(subscriber, target);
    await logIngestCommits(context, target);
    const seconds = (Math.max(counts.lastMs, publish.stopMs) - publish.startMs) / 1000;
    const per = (s: number) => (delivered > 0 ? (s * US_PER_S) / delivered : Number.NaN);
    return [delivered / seconds, per(brokerS), per(subscriberS), per(genS), delivered, want - delivered, publish.disconnects + publish.closedAtStart];
  });
}

export const scenario10: Scenario = {
  id: 10,
  title: `subscriber path: ${DEVICES} devices publish on <uid>/app/p/data, a service account subscribed on +/app/p/# (QoS 1) receives them, ${PAYLOAD}-byte payloads`,
  async run(context) {
    const cases = selectedCases();
    const metrics = cases.flatMap(caseMetrics);
    const result: ScenarioResult = { id: 10, title: this.title, metrics, notes: [] };
    const perCase = caseMetrics(CASES[0] ?? { qos: 1, persistent: true }).length;
    for (const [index, c] of cases.entries()) {
      // One case at a time across the brokers (a fresh broker for each), so the cases interleave the brokers alike.
      const scratch: ScenarioResult = { ...result, metrics: metrics.slice(index * perCase, (index + 1) * perCase), notes: [] };
      const perRound = await acrossTargetsInRounds(context, scratch, context.quick ? 1 : ROUNDS, (target) => measureCase(context, target, c), {
        extra: { app: false },
        only: SUBSCRIBER_PATH_TARGETS,
        laterRoundsOnly: ['nucleon', 'mosquitto'],
      });
      if (!context.quick) scratch.notes.push(roundsNote(perRound, 1, 'broker CPU per message (µs)'));
      for (const note of scratch.notes) result.notes.push(`${caseLabel(c)}: ${note}`);
    }
    result.notes.push(...relayFloorNotes(result, 'broker CPU per message'), ...relayFloorNotes(result, 'delivered to the subscriber'));
    result.notes.push(
      `QoS 1: each device keeps ${WINDOW} messages in flight for ${context.quick ? 3 : 10} s; QoS 0: each device writes ${context.quick ? 2000 : 8000} messages as fast as its socket takes them. Messages are delivered to the subscriber at the publish QoS (its subscription grants 1). "lost" counts messages the broker accepted (QoS 1: acknowledged to the device; QoS 0: written) that the subscriber never got.`,
      RELAY_FLOOR_NOTE,
      'The subscriber is one separate MQTT client process (raw TLS + mqtt-packet, PUBACKs batched per read) for every broker, logged in as the service account `svc:bench-sub` (Nucleon) or with the same name anonymously (baselines, which start without their own bench application). Nucleon also writes every message to its ingest log (durability "fsync") and hands it to its in-process app runner, as it always does; with a persistent session, each QoS 1 message is stored for the subscriber (LevelDB), or acknowledged by it within 50 ms while it is connected, before the device\'s PUBACK.',
    );
    return result;
  },
};
