import { fileURLToPath } from 'node:url';
import { RpcChild } from '../lib/ipc.js';
import type { ConnectArgs, ConnectResult, DownloadResult, OtaHttpArgs, OtaMqttArgs, PublishArgs, PublishResult, ReceiveResult } from './protocol.js';

const WORKER_SCRIPT = fileURLToPath(new URL('./worker.ts', import.meta.url));

/**
 * The load generator as the orchestrator sees it: N worker processes, devices
 * split between them, results summed. Its CPU (all workers) is reported next
 * to the broker's.
 */
export class LoadGenerator {
  private constructor(private readonly workers: RpcChild[]) {}

  static async start(count: number): Promise<LoadGenerator> {
    const workers = Array.from({ length: count }, (_, i) => new RpcChild(`loadgen-${i}`, WORKER_SCRIPT));
    const pool = new LoadGenerator(workers);
    try {
      await Promise.all(workers.map((w) => w.waitFor('ready', 30_000)));
    } catch (error) {
      await pool.stop();
      throw error;
    }
    return pool;
  }

  get pids(): number[] {
    return this.workers.map((w) => w.pid);
  }

  get size(): number {
    return this.workers.length;
  }

  /** Connects `uids`, split round robin over the workers. */
  async connect(args: ConnectArgs): Promise<ConnectResult> {
    const results = await Promise.all(
      this.workers.map((w, i) => w.call<ConnectResult>('connect', { ...args, uids: args.uids.filter((_, j) => j % this.workers.length === i) }, args.timeoutMs + 600_000)),
    );
    return {
      connected: sum(results.map((r) => r.connected)),
      failed: sum(results.map((r) => r.failed)),
      errors: results.flatMap((r) => r.errors).slice(0, 5),
      elapsedMs: Math.max(...results.map((r) => r.elapsedMs)),
    };
  }

  async close(group: string): Promise<void> {
    await Promise.all(this.workers.map((w) => w.call('close', { group }, 120_000)));
  }

  /** Runs a publish plan on every worker; a paced rate is split evenly. */
  async publish(args: PublishArgs): Promise<PublishResult> {
    const share = args.ratePerSec === undefined ? undefined : args.ratePerSec / this.workers.length;
    const results = await Promise.all(
      this.workers.map((w) => w.call<PublishResult>('publish', { ...args, ratePerSec: share }, args.durationMs + args.ackTimeoutMs + 60_000)),
    );
    return {
      sent: mergeCounts(results.map((r) => r.sent)),
      acked: mergeCounts(results.map((r) => r.acked)),
      unacked: sum(results.map((r) => r.unacked)),
      skipped: sum(results.map((r) => r.skipped)),
      startMs: Math.min(...results.map((r) => r.startMs)),
      stopMs: Math.max(...results.map((r) => r.stopMs)),
      disconnects: sum(results.map((r) => r.disconnects)),
      closedAtStart: sum(results.map((r) => r.closedAtStart)),
      reasons: [...new Set(results.flatMap((r) => r.reasons))].slice(0, 5),
    };
  }

  async receiveStats(group: string): Promise<ReceiveResult> {
    const results = await Promise.all(this.workers.map((w) => w.call<ReceiveResult>('receiveStats', { group })));
    const active = results.filter((r) => r.received > 0);
    return {
      received: sum(results.map((r) => r.received)),
      firstMs: active.length > 0 ? Math.min(...active.map((r) => r.firstMs)) : 0,
      lastMs: Math.max(0, ...results.map((r) => r.lastMs)),
      disconnects: sum(results.map((r) => r.disconnects)),
    };
  }

  /** Scenario 7, MQTT: every connected device of `group` downloads the image. */
  async otaMqtt(args: OtaMqttArgs, timeoutMs: number): Promise<DownloadResult> {
    return mergeDownloads(await Promise.all(this.workers.map((w) => w.call<DownloadResult>('otaMqtt', args, timeoutMs))));
  }

  /** Scenario 7, HTTPS: the uids are split over the workers. */
  async otaHttp(args: OtaHttpArgs, timeoutMs: number): Promise<DownloadResult> {
    return mergeDownloads(
      await Promise.all(this.workers.map((w, i) => w.call<DownloadResult>('otaHttp', { ...args, uids: args.uids.filter((_, j) => j % this.workers.length === i) }, timeoutMs))),
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop()));
  }
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

export function mergeCounts(list: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const counts of list) for (const [key, value] of Object.entries(counts)) out[key] = (out[key] ?? 0) + value;
  return out;
}

function mergeDownloads(results: DownloadResult[]): DownloadResult {
  return {
    devices: sum(results.map((r) => r.devices)),
    completed: sum(results.map((r) => r.completed)),
    bytes: sum(results.map((r) => r.bytes)),
    requests: sum(results.map((r) => r.requests)),
    errors: results.flatMap((r) => r.errors).slice(0, 5),
    startMs: Math.min(...results.map((r) => r.startMs)),
    endMs: Math.max(...results.map((r) => r.endMs)),
  };
}
