import { readFileSync } from 'node:fs';

/**
 * Where a process's time went, from V8 .cpuprofile files (`--cpu-prof`):
 * by function (self time) and by stage of the broker's path, so a missed
 * target in BENCHMARKS.md comes with the profile of the run that missed it.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileSummary {
  /** Microseconds sampled in all. */
  sampledUs: number;
  /** Idle (waiting in the event loop), not CPU. */
  idleUs: number;
  /** Loading and compiling modules at start, before any scenario traffic. */
  startupUs: number;
  /** Self time per function ("name file:line"), startup and idle left out. */
  functions: Map<string, number>;
  /** Busy time per stage (`stageOf`), startup and idle left out. */
  stages: Map<string, number>;
}

export function readProfile(file: string): CpuProfile {
  return JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
}

/** "aedes/lib/client.js" for a file in node_modules, "dist/ingest/record.js" for Nucleon's own. */
export function shortUrl(url: string): string {
  const marker = url.lastIndexOf('node_modules/');
  if (marker >= 0) return url.slice(marker + 'node_modules/'.length);
  const dist = url.lastIndexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  const bench = url.lastIndexOf('/bench/');
  if (bench >= 0) return url.slice(bench + 1);
  return url.replace(/^file:\/\//, '');
}

const SOCKET_LEAVES = new Set(['writev', 'writeBuffer', 'writeUtf8String', 'writeLatin1String']);
const SOCKET_URLS = ['node:net', 'node:tls', 'node:_tls_wrap', 'node:_tls_common', 'node:internal/stream_base_commons', 'node:internal/streams/', 'node:stream'];
const AEDES_PACKAGES = ['aedes/', 'aedes-packet/', 'aedes-persistence', 'mqemitter', 'fastparallel/', 'fastseries/', 'fastfall/', 'reusify/', 'qlobber/', 'hyperid/', 'retimer/', 'end-of-stream/'];

/**
 * The stage a sample belongs to, from its stack (leaf first): V8's own
 * entries as they are; a leaf in Node's socket and TLS code is "Node sockets
 * and TLS" whoever called it; anything else goes to the innermost frame that
 * is a library's or Nucleon's, so a Buffer call made by the ingest log counts
 * as the ingest log.
 */
export function stageOf(stack: readonly ProfileNode['callFrame'][]): string {
  const leaf = stack[0];
  if (!leaf) return 'unknown';
  if (leaf.functionName === '(garbage collector)') return 'V8 garbage collection';
  if (leaf.functionName === '(program)') return 'V8 and native code outside JavaScript ((program))';
  // A native write is the socket's when Node's stream code called it (the file system's has the same names).
  if (SOCKET_LEAVES.has(leaf.functionName) && leaf.url === '' && SOCKET_URLS.some((prefix) => stack[1]?.url.startsWith(prefix))) return 'Node sockets and TLS';
  if (SOCKET_URLS.some((prefix) => leaf.url.startsWith(prefix))) return 'Node sockets and TLS';
  for (const frame of stack) {
    const url = shortUrl(frame.url);
    if (frame.url.includes('node_modules/')) {
      if (url.startsWith('mqtt-packet/') || url.startsWith('bl/')) return 'MQTT packets (mqtt-packet)';
      if (AEDES_PACKAGES.some((p) => url.startsWith(p))) return 'aedes (handlers, mqemitter, persistence)';
      if (url.startsWith('prom-client/')) return 'metrics (prom-client)';
      if (url.startsWith('cbor')) return 'CBOR decoding';
      if (url.startsWith('abstract-level/') || url.startsWith('classic-level/') || url.startsWith('level')) return 'LevelDB (session store)';
      if (url.startsWith('pino')) return 'logging (pino)';
      if (url.startsWith('tsx/')) continue;
      return `other libraries (${url.split('/')[0]?.startsWith('@') ? url.split('/').slice(0, 2).join('/') : url.split('/')[0]})`;
    }
    if (url.startsWith('dist/ingest/')) return 'Nucleon ingest log';
    if (url.startsWith('dist/mqtt/aedes/')) return 'Nucleon MQTT adapter (reads, writes, deliveries)';
    if (url.startsWith('dist/mqtt/')) return 'Nucleon publish path, ACL and routing';
    if (url.startsWith('dist/broker/')) return 'Nucleon event broker';
    if (url.startsWith('dist/influx/')) return 'Nucleon Influx writer';
    if (url.startsWith('dist/protocol/')) return 'Nucleon Pyrinas decoding';
    if (url.startsWith('dist/')) return `Nucleon other (${url.split('/')[1] ?? url})`;
    if (url.startsWith('bench/')) return 'bench app runner and harness (in the broker process)';
  }
  return 'Node internals (timers, events, buffers)';
}

function isStartup(stack: readonly ProfileNode['callFrame'][]): boolean {
  return stack.some((frame) => frame.url.startsWith('node:internal/modules') || frame.url.includes('/tsx/dist/'));
}

export function summariseProfile(profile: CpuProfile): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const stackCache = new Map<number, { startup: boolean; stage: string; key: string }>();
  const describe = (id: number) => {
    let known = stackCache.get(id);
    if (!known) {
      const stack: ProfileNode['callFrame'][] = [];
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const node = byId.get(at);
        if (node) stack.push(node.callFrame);
      }
      const leaf = stack[0];
      const where = leaf?.url ? ` ${shortUrl(leaf.url)}:${leaf.lineNumber + 1}` : '';
      known = { startup: isStartup(stack), stage: stageOf(stack), key: `${leaf?.functionName || '(anonymous)'}${where}` };
      stackCache.set(id, known);
    }
    return known;
  };

  const summary: ProfileSummary = { sampledUs: 0, idleUs: 0, startupUs: 0, functions: new Map(), stages: new Map() };
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i] ?? 0;
    // A sample's delta is the time until the next one: it belongs to this sample.
    const us = Math.max(0, deltas[i + 1] ?? deltas[i] ?? 0);
    summary.sampledUs += us;
    const node = byId.get(id);
    if (node?.callFrame.functionName === '(idle)') {
      summary.idleUs += us;
      continue;
    }
    const { startup, stage, key } = describe(id);
    if (startup) {
      summary.startupUs += us;
      continue;
    }
    summary.functions.set(key, (summary.functions.get(key) ?? 0) + us);
    summary.stages.set(stage, (summary.stages.get(stage) ?? 0) + us);
  }
  return summary;
}

/** One summary of several profiles (every Nucleon process a scenario started). */
export function mergeSummaries(summaries: readonly ProfileSummary[]): ProfileSummary {
  const merged: ProfileSummary = { sampledUs: 0, idleUs: 0, startupUs: 0, functions: new Map(), stages: new Map() };
  for (const s of summaries) {
    merged.sampledUs += s.sampledUs;
    merged.idleUs += s.idleUs;
    merged.startupUs += s.startupUs;
    for (const [k, us] of s.functions) merged.functions.set(k, (merged.functions.get(k) ?? 0) + us);
    for (const [k, us] of s.stages) merged.stages.set(k, (merged.stages.get(k) ?? 0) + us);
  }
  return merged;
}

export function busyUs(summary: ProfileSummary): number {
  return summary.sampledUs - summary.idleUs - summary.startupUs;
}

/** The largest entries of `from`, as [name, share of busy time]. */
export function largest(summary: ProfileSummary, from: Map<string, number>, count: number): [string, number][] {
  const busy = busyUs(summary);
  return [...from]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, us]) => [name, busy > 0 ? us / busy : 0]);
}
