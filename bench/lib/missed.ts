import os from 'node:os';
import { busyUs, largest, type ProfileSummary } from './profile-summary.js';
import { goalText, goalVerdict, TARGET_LABELS, type Metric, type ScenarioResult, type TargetName } from './report.js';

/**
 * The "Missed targets" section of BENCHMARKS.md: every target this run
 * missed, the profile of Nucleon on that scenario from the same run (a
 * separate profiled pass, so the figures above are not slowed by the
 * profiler), and what the analysis so far says would close it.
 */

/** Scenarios whose figures are one Nucleon process's CPU: a CPU profile of that process shows where it goes. */
export const PROFILED_SCENARIOS: ReadonlySet<number> = new Set([1, 2, 3, 4, 6, 8, 10, 11]);

export function missedMetrics(result: ScenarioResult): Metric[] {
  return result.notRun ? [] : result.metrics.filter((m) => goalVerdict(m).startsWith('missed'));
}

function figure(m: Metric, target: TargetName): number | undefined {
  const value = m.values[target];
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function find(result: ScenarioResult, label: string): Metric | undefined {
  return result.metrics.find((m) => m.label === label);
}

const times = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b !== 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
const percent = (share: number | undefined) => (share === undefined ? 'n/a' : `${(share * 100).toFixed(0)} %`);

/** Share of busy time of the stages whose name starts with `prefix`. */
function stageShare(profile: ProfileSummary | undefined, prefix: string): number | undefined {
  if (!profile) return undefined;
  let us = 0;
  for (const [stage, t] of profile.stages) if (stage.startsWith(prefix)) us += t;
  const busy = busyUs(profile);
  return busy > 0 ? us / busy : undefined;
}

/** Floors beside the metric that has them: "Node TLS relay 0.50 ms = 1.18× Mosquitto". */
function floorText(m: Metric | undefined, floor: TargetName): string | undefined {
  if (!m) return undefined;
  const value = figure(m, floor);
  if (value === undefined) return undefined;
  return `${TARGET_LABELS[floor]} ${value.toLocaleString('en-US', { maximumFractionDigits: 3 })} ${m.unit} = ${times(value, figure(m, 'mosquitto'))} Mosquitto`;
}

/** "15.81 µs against Mosquitto's 11.44 (1.38×)" for a ratio goal, "117,859 points/s" otherwise. */
function measured(m: Metric): string {
  const ours = figure(m, 'nucleon');
  const digits = m.digits ?? 1;
  const text = (value: number | undefined) => (value === undefined ? 'n/a' : `${value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })}${m.unit ? ` ${m.unit}` : ''}`);
  if (m.goal?.kind === 'ratio-max' || m.goal?.kind === 'ratio-min') {
    const theirs = figure(m, m.goal.against);
    return `Nucleon ${text(ours)} against ${TARGET_LABELS[m.goal.against]}'s ${text(theirs)} (${times(ours, theirs)})`;
  }
  return `Nucleon ${text(ours)}`;
}

type Closing = (result: ScenarioResult, profile: ProfileSummary | undefined, all: readonly ScenarioResult[]) => string[];

const INGEST_SPREAD =
  'Single full runs on this shared 2-core VM move Nucleon\'s CPU figures by ±30 % with the same code (README "Latest figures"); a miss within that spread is read from the profile and interleaved A/B runs, not from one run.';

const CLOSING: Record<number, Closing> = {
  1: (_r, p) => [
    INGEST_SPREAD,
    `The durable ingest log is ${percent(stageShare(p, 'Nucleon ingest log'))} of the busy time (its fsync runs on Node's thread pool, outside this profile); the "write" and "memory" columns show the same path with a cheaper log.`,
  ],
  4: () => [INGEST_SPREAD, 'The tail at a paced rate moves with the disk\'s fsync latency and the VM\'s neighbours; the "memory" column is the same path without the disk.'],
  5: (r) => {
    const rss = find(r, 'RSS per idle connection');
    return [
      `Node's TLS alone (no broker) holds ${rss ? (figure(rss, 'node-tls')?.toFixed(1) ?? 'n/a') : 'n/a'} KB per idle connection in this run: the 20 KB line is below what a Node TLS socket costs before any broker code runs, so no broker on Node meets it. What Nucleon adds is the "beyond Node TLS alone" rows.`,
    ];
  },
  8: (_r, p) => [
    'Device telemetry is one point per QoS 1 message through the whole MQTT path, on one event-loop thread that shares the machine with victoria-metrics and the generator: 150,000 points/s needs about 6.5 µs of broker CPU per point.',
    `The profile has no stage that would close that alone: the largest are ${p ? largest(p, p.stages, 4).map(([name, share]) => `${name} ${percent(share)}`).join(', ') : 'n/a'}. What would close it: fewer steps per message (a telemetry path outside aedes' publish handlers, less garbage per message), or the second core (scenario 12).`,
  ],
  10: (r, p) => {
    const floors = ['QoS 0, clean session', 'QoS 0, persistent session', 'QoS 1, clean session', 'QoS 1, persistent session']
      .map((label) => {
        const floor = floorText(find(r, `${label}: broker CPU per message`), 'node-relay');
        return floor === undefined ? undefined : `${label}: ${floor}`;
      })
      .filter((text): text is string => text !== undefined);
    return [
      `Node is not the limit: the relay floor (Node's TLS, sockets and event loop, no broker) per message in this run: ${floors.length ? floors.join('; ') : 'not run'}.`,
      `Above the floor the time is aedes' per-message steps (${percent(stageShare(p, 'aedes'))} of the busy time: the publish series, mqemitter's match, a Packet copy per subscription, setImmediate hops), Nucleon's MQTT adapter and publish path (${percent(stageShare(p, 'Nucleon MQTT adapter'))} and ${percent(stageShare(p, 'Nucleon publish path'))}), the ingest log (${percent(stageShare(p, 'Nucleon ingest log'))}) and the garbage all of them make (GC ${percent(stageShare(p, 'V8 garbage collection'))}).`,
      'What would close it: a delivery path from devices to service-account subscribers that does not go through aedes\' publish and deliver steps and allocates little per message; for QoS 1 persistent sessions also an online session\'s in-flight state kept in memory instead of aedes-persistence-level\'s per-message store operations (README "Latest figures" and "Earlier rounds" record what was tried).',
    ];
  },
  11: (r, p, all) => {
    const light = find(r, 'QoS 1, clean session: broker CPU per message');
    const full = all.find((other) => other.id === 10);
    const fullCost = full ? find(full, 'QoS 1, clean session: broker CPU per message') : undefined;
    const costRatio = light && fullCost ? times(figure(light, 'nucleon'), figure(fullCost, 'nucleon')) : undefined;
    const lines = ['QoS 1, clean session', 'QoS 0, clean session'].map((label) => {
      const p99 = find(r, `${label}: latency p99`);
      const memory = p99 ? times(figure(p99, 'nucleon-memory'), figure(p99, 'mosquitto')) : 'n/a';
      return `${label}: ${floorText(p99, 'node-relay') ?? 'relay not run'}; Nucleon without its log ("memory") ${memory}`;
    });
    return [
      `The floor and the log's share of the tail in this run: ${lines.join('; ')}.`,
      `At a paced 5,000 msg/s each message is its own loop turn, read, logged, routed and written alone (each write its own system call and TLS record): the CPU per message is ${costRatio ?? 'many times'} ${costRatio ? "scenario 10's at full load (QoS 1, clean session)" : "scenario 10's at full load"}, and the profile's largest stages are ${p ? largest(p, p.stages, 4).map(([name, share]) => `${name} ${percent(share)}`).join(', ') : 'n/a'}.`,
      'What would close it: fewer steps per message on the route to the subscriber (as scenario 10), and routing that does not wait for the fsync at light load without costing CPU at full load (README "Latest figures" records the variants measured and why they were not kept). Where the relay floor is itself near 1.5×, the target is at Node\'s floor on this machine.',
    ];
  },
  12: (r) => {
    const lines: string[] = [];
    const value = (label: string) => {
      const m = find(r, label);
      return m ? figure(m, 'nucleon') : undefined;
    };
    const missed = (label: string) => {
      const m = find(r, label);
      return m !== undefined && goalVerdict(m).startsWith('missed');
    };
    const cores = os.cpus().length;
    const busy = value('telemetry, 2 workers: the machine busy while the devices published');
    const others = value('telemetry, 2 workers: load generator + victoria-metrics + Redis CPU per point');
    const used = value('telemetry, 2 workers: broker CPU per point (primary + workers)');
    if (missed('telemetry, 2 workers: points stored') && busy !== undefined && others !== undefined && used !== undefined) {
      const goal = 150_000;
      const othersCores = (others * goal) / 1e6;
      const left = ((cores - othersCores) * 1e6) / goal;
      lines.push(
        `Telemetry: while two workers ran, the machine was busy ${busy.toFixed(0)} % of its ${cores} cores. At ${goal.toLocaleString('en-US')} points/s the load generator, victoria-metrics and Redis would take ${others.toFixed(2)} µs × ${goal.toLocaleString('en-US')} = ${othersCores.toFixed(2)} cores at this run's cost per point, which leaves the workers at most ${left.toFixed(2)} µs of CPU per point; they used ${used.toFixed(2)} µs here. What would close it: the workers' CPU per point cut by ${Math.max(0, (1 - left / used) * 100).toFixed(0)} % (scenario 8's profile: no one stage is that large), or cores to spare for the generator and victoria-metrics.`,
      );
    }
    const oneRate = value('app QoS 1, 1 worker: delivered');
    const twoRate = value('app QoS 1, 2 workers: delivered');
    const oneCost = value('app QoS 1, 1 worker: broker CPU per message (primary + workers)');
    const twoCost = value('app QoS 1, 2 workers: broker CPU per message (primary + workers)');
    const twoBusy = value('app QoS 1, 2 workers: the machine busy while the devices published');
    const oneOthers = value('app QoS 1, 1 worker: load generator + Redis CPU per message');
    const twoOthers = value('app QoS 1, 2 workers: load generator + Redis CPU per message');
    if (missed('app QoS 1: 2 workers / 1 worker delivered') && oneRate !== undefined && twoRate !== undefined && oneCost !== undefined && twoCost !== undefined && twoBusy !== undefined) {
      // Delivered = broker cores / CPU per message, so the ratio splits into the two.
      const oneCores = (oneRate * oneCost) / 1e6;
      const twoCores = (twoRate * twoCost) / 1e6;
      lines.push(
        `App: the ratio is (broker cores used) / (CPU per message), each of two workers against one: ${twoCores.toFixed(2)} / ${oneCores.toFixed(2)} cores = ${(twoCores / oneCores).toFixed(2)}×, divided by ${twoCost.toFixed(2)} / ${oneCost.toFixed(2)} µs = ${(twoCost / oneCost).toFixed(2)}×. With two workers the machine was busy ${twoBusy.toFixed(0)} % (the load generator's share is in the notes), so more cores were not there to take; and one worker already used more than one core (the thread pool writing its ingest log, V8's GC threads). What would close it: cores to spare (the generator on another machine), and less CPU per message in each worker; why a message costs more in each of two workers on a full machine (half the load per process, so fewer messages per loop turn and per write; more processes than cores) is not measured here.`,
      );
      if (oneOthers !== undefined && twoOthers !== undefined) {
        // Every core busy, each message costing the workers and the generator what it cost in this run: the most two workers could deliver here.
        const ceilingAtTwo = (cores * 1e6) / (twoCost + twoOthers) / oneRate;
        const ceilingAtOne = (cores * 1e6) / (oneCost + oneOthers) / oneRate;
        lines.push(
          `The ceiling on this machine: with all ${cores} cores busy, a message costing the workers ${twoCost.toFixed(2)} µs and the load generator and Redis ${twoOthers.toFixed(2)} µs (this run, 2 workers), two workers could deliver at most ${ceilingAtTwo.toFixed(2)}× one worker; even at one worker's ${oneCost.toFixed(2)} + ${oneOthers.toFixed(2)} µs, ${ceilingAtOne.toFixed(2)}×. The target (${goalText(find(r, 'app QoS 1: 2 workers / 1 worker delivered')?.goal)}) is above that: only a load generator that costs less, or runs on cores the workers do not share, raises this ceiling (a worker that costs less per message speeds up one worker as much as two).`,
        );
      }
    }
    return lines.length > 0 ? lines : ['The figures this analysis needs were not measured in this run.'];
  },
};

function profileLines(profile: ProfileSummary | string | undefined): string[] {
  if (profile === undefined) return [];
  if (typeof profile === 'string') return [`Profile: ${profile}.`];
  const s = (us: number) => `${(us / 1e6).toFixed(1)} s`;
  const rows = (entries: [string, number][]) => entries.map(([name, share]) => `${(share * 100).toFixed(1)} % ${name}`).join('; ');
  return [
    `Profile of Nucleon on this scenario (a separate \`--cpu-prof\` pass after the measured runs; ${s(busyUs(profile))} busy of ${s(profile.sampledUs)} sampled, module loading and idle left out), shares of busy time:`,
    `by stage: ${rows(largest(profile, profile.stages, 8))}.`,
    `by function (self time): ${rows(largest(profile, profile.functions, 10))}.`,
  ];
}

/** The section, or nothing when every target was met. */
export function renderMissedSection(results: readonly ScenarioResult[], profiles: ReadonlyMap<number, ProfileSummary | string>): string[] {
  const withMisses = results.filter((r) => missedMetrics(r).length > 0);
  if (withMisses.length === 0) return [];
  const out = [
    '## Missed targets: the profile, and what would close them',
    '',
    'Every target this run missed, with a CPU profile of Nucleon on that scenario (stages: each sample goes to the innermost frame that is Nucleon\'s or a library\'s; a leaf in Node\'s socket and TLS code, or a native write that code called, counts as "Node sockets and TLS") and what the analysis so far says would close it.',
    '',
  ];
  for (const result of withMisses) {
    const profile = profiles.get(result.id);
    out.push(`### Scenario ${result.id}`, '');
    for (const m of missedMetrics(result)) out.push(`- ${m.label}: ${measured(m)}; target ${goalText(m.goal)}, ${goalVerdict(m)}.`);
    const closing = CLOSING[result.id]?.(result, typeof profile === 'string' ? undefined : profile, results) ?? ['No analysis is kept for this target yet; the profile is where to start.'];
    out.push('', ...[...profileLines(profile), ...closing].flatMap((line) => [line, '']));
  }
  return out;
}
