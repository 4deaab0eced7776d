// `npm run bench`: runs the scenarios against Nucleon and the same-run
// baselines, prints tables and (on a full run) writes BENCHMARKS.md.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { makeBenchCerts } from './lib/certs.js';
import { describeMachine, packageVersion } from './lib/machine.js';
import { missedMetrics, PROFILED_SCENARIOS, renderMissedSection } from './lib/missed.js';
import { mergeSummaries, readProfile, summariseProfile, type ProfileSummary } from './lib/profile-summary.js';
import { machineLines, renderDocument, renderText, TARGET_NAMES, type ScenarioResult, type TargetName } from './lib/report.js';
import { LoadGenerator } from './loadgen/pool.js';
import type { Scenario, ScenarioContext } from './scenarios/context.js';
import { scenario5 } from './scenarios/idle.js';
import { scenario1, scenario2, scenario4, scenario6 } from './scenarios/ingest.js';
import { scenario3 } from './scenarios/responses.js';
import { scenario7 } from './scenarios/ota.js';
import { scenario8 } from './scenarios/influx.js';
import { scenario9 } from './scenarios/acl.js';
import { scenario10 } from './scenarios/subscribers.js';
import { scenario11 } from './scenarios/subscriber-latency.js';
import { scenario12 } from './scenarios/workers.js';
import { MOSQUITTO, mosquittoConfig, mosquittoUnavailable, nucleonUnavailable, STARTERS } from './targets/index.js';

const SCENARIOS: Scenario[] = [scenario1, scenario2, scenario3, scenario4, scenario5, scenario6, scenario7, scenario8, scenario9, scenario10, scenario11, scenario12];
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const USAGE = `npm run bench -- [options]
  --quick             shorter runs and fewer devices (development; does not write BENCHMARKS.md)
  --only 1,2          run only these scenarios
  --targets a,b       brokers to measure: ${TARGET_NAMES.join(',')} (default: all)
  --workers N         load generator processes (default: number of cores)
  --profile           run Nucleon with --cpu-prof (profiles land in $TMPDIR/nucleon-bench-profiles;
                      summarise one with: node --import tsx bench/profile-top.ts <file>)
  --out FILE          write the Markdown report here (default: BENCHMARKS.md on a full run only)
  --evidence          after the measured runs, profile Nucleon on every scenario that missed a target and
                      report where its time goes (always on a run that writes a report)
Environment (A/B measurements of Nucleon only):
  BENCH_NUCLEON_NODE_FLAGS="--flag ..."  extra Node flags for the Nucleon process (e.g. GC settings)
  BENCH_NUCLEON_DIST=/abs/dir            run another build of Nucleon (tsc -p tsconfig.build.json --incremental false --outDir <dir inside the repo>)
  BENCH_NUCLEON_COMMIT_SPACING_MS=1      Nucleon's [ingest] commit_spacing_ms (default: Nucleon's own, 0)
  BENCH_NUCLEON_QOS0_COMMIT_DELAY_MS=0  Nucleon's [ingest] qos0_commit_delay_ms (default: Nucleon's own)
Environment (development):
  BENCH_SCENARIO10_CASES=q0c,q1p         only these cases of scenario 10 (q<QoS><p: persistent | c: clean>)
  BENCH_SCENARIO12_PARTS=telemetry       only this half of scenario 12 (telemetry or app)
  BENCH_VERBOSE=1                        broker output tails and metrics (ingest commits, Influx writes) after runs`;

function parseList(text: string | undefined): string[] | undefined {
  return text === undefined ? undefined : text.split(',').map((s) => s.trim()).filter(Boolean);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      targets: { type: 'string' },
      workers: { type: 'string' },
      profile: { type: 'boolean', default: false },
      out: { type: 'string' },
      evidence: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const only = parseList(values.only)?.map(Number);
  const scenarios = only ? SCENARIOS.filter((s) => only.includes(s.id)) : SCENARIOS;
  if (scenarios.length === 0) throw new Error(`no scenario matches --only ${values.only ?? ''}`);
  const targetNames = (parseList(values.targets) ?? [...TARGET_NAMES]) as TargetName[];
  for (const name of targetNames) if (!TARGET_NAMES.includes(name)) throw new Error(`unknown target "${name}" (known: ${TARGET_NAMES.join(', ')})`);
  const workers = values.workers === undefined ? os.cpus().length : Number.parseInt(values.workers, 10);
  const fullRun = !values.quick && !only && !values.targets;
  const outFile = values.out ?? (fullRun ? path.join(repoRoot, 'BENCHMARKS.md') : undefined);

  const machine = describeMachine(packageVersion('aedes'), mosquittoVersion());
  const startedAt = new Date();
  const loadAtStart = os.loadavg()[0] ?? Number.NaN;
  process.stdout.write(`${machineLines(machine).join('\n')}\nload average (1 min): ${loadAtStart.toFixed(2)}\n\n`);

  const workDir = await mkdtemp(path.join(os.tmpdir(), 'nucleon-bench-'));
  // Outside the repository, so profiles never end up in a commit.
  const profileDir = path.join(os.tmpdir(), 'nucleon-bench-profiles');
  let gen: LoadGenerator | undefined;
  const results: ScenarioResult[] = [];
  try {
    const certs = await makeBenchCerts(workDir);
    gen = await LoadGenerator.start(workers);
    const unavailable: Record<TargetName, string | undefined> = {
      nucleon: nucleonUnavailable(),
      'nucleon-write': nucleonUnavailable(),
      'nucleon-memory': nucleonUnavailable(),
      aedes: undefined,
      mosquitto: mosquittoUnavailable(),
      'node-tls': undefined,
      'node-relay': undefined,
    };
    const previous = new Map<number, ScenarioResult>();
    const context: ScenarioContext = {
      quick: values.quick,
      gen,
      targets: targetNames.map((name) => ({ name, unavailable: unavailable[name] })),
      start: (name, extra = {}) =>
        STARTERS[name]({
          workDir,
          certs,
          nodeFlags: values.profile && name.startsWith('nucleon') ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
          ...extra,
        }),
      previous,
      log: (message) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`),
    };
    for (const scenario of scenarios) {
      const result = await scenario.run(context);
      previous.set(scenario.id, result);
      results.push(result);
      process.stdout.write(`${renderText(result)}\n`);
    }
    const evidence = values.evidence || outFile !== undefined ? await profileMisses(context, results, (dir) => (name, extra = {}) => STARTERS[name]({ workDir, certs, nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${dir}`], ...extra })) : undefined;
    const missedSection = evidence ? renderMissedSection(results, evidence) : [];
    if (!outFile && missedSection.length > 0) process.stdout.write(`${missedSection.join('\n')}\n`);
    if (outFile) {
      const setup = [
        `Load generator: ${workers} worker processes, raw TLS sockets with pre-encoded mqtt-packet PUBLISHes (only packet id and timestamp patched), MQTT 3.1.1, clean sessions, TCP_NODELAY.`,
        `TLS: one ECDSA P-256 server certificate for all brokers (made by ${certs.madeBy}); loopback only.`,
        'Nucleon: built `dist/`, its own process, anonymous device auth, admin and OTA HTTP off unless a scenario needs them, an in-process counting app runner. "Nucleon" is the default `[ingest] durability = "fsync"` (the ingest log on this machine\'s disk, /tmp on ext4); scenarios 1, 4 and 11 also run "Nucleon (write)" and "Nucleon (memory)".',
        'aedes: the same version Nucleon uses, in-memory, TLS, its own process; the application is an in-process `aedes.subscribe("+/app/p/#")` handler.',
        `Mosquitto: \`${MOSQUITTO}\` with a generated config (below); the application is a separate MQTT subscriber process on \`+/app/p/#\` at QoS 1 (raw TLS + mqtt-packet).`,
        `Mosquitto config: \`${mosquittoConfig(0, certs).trim().split('\n').filter((l) => !l.startsWith('#') && !l.startsWith('certfile') && !l.startsWith('keyfile') && !l.startsWith('listener')).join('; ')}\`.`,
      ];
      const loadAverage = { start: loadAtStart, end: os.loadavg()[0] ?? Number.NaN };
      process.stdout.write(`load average (1 min) at the end: ${loadAverage.end.toFixed(2)}\n`);
      const document = renderDocument({ machine, loadAverage, startedAt, durationS: (Date.now() - startedAt.getTime()) / 1000, command: `npm run bench${process.argv.slice(2).length ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`, quick: values.quick, setup }, results, missedSection);
      await writeFile(outFile, document);
      process.stdout.write(`wrote ${path.relative(process.cwd(), outFile)}\n`);
    }
    if (values.profile) process.stdout.write(`CPU profiles of the Nucleon process: ${profileDir}\n`);
    process.stdout.write(`done in ${Math.round((Date.now() - startedAt.getTime()) / 1000)} s\n`);
    return 0;
  } finally {
    await gen?.stop();
    await rm(workDir, { recursive: true, force: true });
  }
}

/**
 * Runs each scenario that missed a target once more, Nucleon only, with
 * `--cpu-prof` (so the measured figures were not slowed by the profiler),
 * and sums the main-thread profiles of every Nucleon process it started.
 * A scenario whose figures are not one process's CPU gets no pass.
 */
async function profileMisses(context: ScenarioContext, results: readonly ScenarioResult[], startProfiled: (dir: string) => ScenarioContext['start']): Promise<Map<number, ProfileSummary | string>> {
  const profiles = new Map<number, ProfileSummary | string>();
  const nucleon = context.targets.find((t) => t.name === 'nucleon');
  for (const result of results) {
    if (missedMetrics(result).length === 0 || !PROFILED_SCENARIOS.has(result.id)) continue;
    const scenario = SCENARIOS.find((s) => s.id === result.id);
    if (!scenario || !nucleon || nucleon.unavailable) {
      profiles.set(result.id, 'not taken (Nucleon was not run)');
      continue;
    }
    const dir = await mkdtemp(path.join(os.tmpdir(), 'nucleon-bench-evidence-'));
    try {
      context.log(`scenario ${result.id}: profiled pass for the missed targets`);
      await scenario.run({ ...context, targets: [nucleon], start: startProfiled(dir) });
      // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the event loop (others are loader threads).
      const files = (await readdir(dir)).filter((file) => /\.\d+\.0\.\d+\.cpuprofile$/.test(file));
      profiles.set(result.id, files.length > 0 ? mergeSummaries(files.map((file) => summariseProfile(readProfile(path.join(dir, file))))) : 'no profile was written');
    } catch (error) {
      profiles.set(result.id, `the profiled pass failed: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return profiles;
}

function mosquittoVersion(): string | undefined {
  if (mosquittoUnavailable()) return undefined;
  // `mosquitto -h` prints its version and exits with status 3, so read the output whatever the status.
  const run = spawnSync(MOSQUITTO, ['-h'], { encoding: 'utf8' });
  const text = `${run.stdout}`.split('\n')[0] ?? '';
  return /version (\S+)/.exec(text)?.[1] ?? text;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
