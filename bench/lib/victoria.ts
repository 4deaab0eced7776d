import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { freePort, sleep } from './net.js';
import { ServerProcess } from './server-process.js';

export const VICTORIA_METRICS = '/usr/bin/victoria-metrics';

/**
 * victoria-metrics (Debian package) on a loopback port as the InfluxDB the
 * Influx runner writes to; it takes the InfluxDB v2 write API and can export
 * every stored sample, so the bench can count what arrived.
 */
export class VictoriaMetrics extends ServerProcess {
  private constructor(
    child: ReturnType<typeof spawn>,
    readonly url: string,
  ) {
    super('victoria-metrics', child);
  }

  static unavailable(): string | undefined {
    return existsSync(VICTORIA_METRICS) ? undefined : `${VICTORIA_METRICS} not installed (apt-get install -y victoria-metrics)`;
  }

  static async start(dataDir: string): Promise<VictoriaMetrics> {
    const port = await freePort();
    const child = spawn(VICTORIA_METRICS, [`-httpListenAddr=127.0.0.1:${port}`, `-storageDataPath=${dataDir}`, '-search.latencyOffset=0', '-search.disableCache', '-loggerLevel=WARN'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const vm = new VictoriaMetrics(child, `http://127.0.0.1:${port}`);
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (!vm.alive) throw new Error(`victoria-metrics exited: ${vm.tail}`);
      try {
        const response = await fetch(`${vm.url}/health`);
        await response.arrayBuffer();
        if (response.ok) return vm;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`victoria-metrics did not answer /health: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
      }
      await sleep(100);
    }
  }

  /** Stored samples of one series name (all label sets), after making fresh writes visible. */
  async countSamples(name: string): Promise<number> {
    const flushed = await fetch(`${this.url}/internal/force_flush`);
    await flushed.arrayBuffer();
    const query = new URLSearchParams({ 'match[]': name });
    const response = await fetch(`${this.url}/api/v1/export?${query.toString()}`);
    const text = await response.text();
    if (!response.ok) throw new Error(`victoria-metrics export failed: HTTP ${response.status}: ${text.slice(0, 200)}`);
    let count = 0;
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      count += (JSON.parse(line) as { values: unknown[] }).values.length;
    }
    return count;
  }

  /** Polls until `name` has `want` samples, or the count stops moving for `quietMs`, or `maxMs` passes. */
  async waitForSamples(name: string, want: number, maxMs: number, quietMs = 5000): Promise<{ count: number; atMs: number }> {
    const deadline = Date.now() + maxMs;
    let count = await this.countSamples(name);
    let atMs = performance.now();
    let lastChange = Date.now();
    while (count < want && Date.now() < deadline && Date.now() - lastChange < quietMs) {
      await sleep(250);
      const next = await this.countSamples(name);
      if (next !== count) {
        lastChange = Date.now();
        atMs = performance.now();
      }
      count = next;
    }
    return { count, atMs };
  }
}
