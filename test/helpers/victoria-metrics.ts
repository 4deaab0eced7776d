// A real victoria-metrics (Debian package) on a loopback port: it accepts the
// InfluxDB v2 write API and reads back through /api/v1/export.
import type { TestContext } from 'node:test';
import { freePort, requireBinary, startProcess, waitFor, type RunningProcess } from './index.js';

/** One series as /api/v1/export returns it (one JSON object per line). */
export interface ExportedSeries {
  metric: Record<string, string>;
  values: number[];
  timestamps: number[];
}

export interface VictoriaMetrics {
  /** Base URL for the Influx writer, e.g. http://127.0.0.1:41234 */
  url: string;
  port: number;
  dataDir: string;
  /** Stops it cleanly (SIGTERM) and waits for the exit. Safe twice. */
  stop(): Promise<void>;
  /** Makes fresh writes readable, then exports every series whose name matches `nameRegex`. */
  export(nameRegex: string): Promise<ExportedSeries[]>;
}

/**
 * Starts victoria-metrics with its data in `dataDir` (reuse the directory and
 * the port to "restart the server"). Returns undefined when the binary is
 * missing outside CI (the test is then skipped loudly).
 */
export async function startVictoriaMetrics(t: TestContext, dataDir: string, port?: number): Promise<VictoriaMetrics | undefined> {
  const binary = requireBinary(t, 'victoria-metrics', 'victoria-metrics');
  if (!binary) return undefined;
  const listenPort = port ?? (await freePort());
  const url = `http://127.0.0.1:${listenPort}`;
  const running: RunningProcess = startProcess(t, binary, [
    `-httpListenAddr=127.0.0.1:${listenPort}`,
    `-storageDataPath=${dataDir}`,
    // Show just-written samples to queries at once instead of after 30 s.
    '-search.latencyOffset=0',
    '-loggerLevel=WARN',
  ]);
  await waitFor(
    async () => {
      if (running.child.exitCode !== null) throw new Error(`victoria-metrics exited: ${running.output()}`);
      // The one answering must be this one: a restart on the same port races every other test for it,
      // and a victoria-metrics of another test there would take this test's writes.
      const response = await fetch(`${url}/flags`);
      const flags = await response.text();
      if (!response.ok) return false;
      if (!flags.includes(`-storageDataPath=${JSON.stringify(dataDir)}`)) throw new Error(`another server answers on port ${listenPort}: ${flags.slice(0, 200)}`);
      return true;
    },
    'victoria-metrics to answer /flags with its own data path',
    20_000,
    50,
  );
  let stopped: Promise<void> | undefined;
  return {
    url,
    port: listenPort,
    dataDir,
    stop() {
      stopped ??= (async () => {
        if (running.child.exitCode === null && running.child.signalCode === null) running.child.kill('SIGTERM');
        await running.exited;
      })();
      return stopped;
    },
    async export(nameRegex) {
      const flushed = await fetch(`${url}/internal/force_flush`);
      await flushed.arrayBuffer();
      const query = new URLSearchParams({ 'match[]': `{__name__=~"${nameRegex}"}` });
      const response = await fetch(`${url}/api/v1/export?${query.toString()}`);
      const text = await response.text();
      if (!response.ok) throw new Error(`export failed: HTTP ${response.status}: ${text}`);
      return text
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line) as ExportedSeries);
    },
  };
}

/** The series named `name` whose labels include `labels`, or undefined. */
export function findSeries(series: ExportedSeries[], name: string, labels: Record<string, string>): ExportedSeries | undefined {
  return series.find((s) => s.metric.__name__ === name && Object.entries(labels).every(([key, value]) => s.metric[key] === value));
}

/** A series' samples as [timestamp, value] pairs in time order, for exact comparisons. */
export function samples(series: ExportedSeries | undefined): [number, number][] {
  if (!series) return [];
  return series.timestamps.map((ts, i): [number, number] => [ts, series.values[i] ?? Number.NaN]).sort((a, b) => a[0] - b[0]);
}
