import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import { Once } from '../util/once.js';
import { isToPrimary, WORKER_CONFIG_ENV, WORKER_SLOT_ENV, type ToWorker } from './messages.js';
import { MetricsCollector } from './metrics.js';

/** How a worker that died is started again (README "Workers"). */
export interface RestartPolicy {
  /** Delay before the first restart. */
  initialMs: number;
  /** The delay doubles per quick death up to this. */
  maxMs: number;
  /** A worker that ran this long before dying is restarted after `initialMs` again. */
  stableMs: number;
}

export const RESTART_POLICY: RestartPolicy = { initialMs: 250, maxMs: 30_000, stableMs: 60_000 };

export interface WorkerPoolOptions {
  count: number;
  /** The config worker `slot` runs with (src/workers/settings.ts). */
  configOf: (slot: number) => Config;
  logger: Logger;
  /** How long the workers may take to stop cleanly before they are killed. */
  stopTimeoutMs: number;
  restart?: RestartPolicy;
}

/** A worker exited before it was ready, at start: the pool stopped the others. */
export class WorkerStartError extends Error {
  constructor(
    readonly slot: number,
    readonly exitCode: number,
    detail: string,
  ) {
    super(`worker ${slot} failed to start (${detail}); the others were stopped`);
    this.name = 'WorkerStartError';
  }
}

interface Slot {
  readonly slot: number;
  worker: Worker | undefined;
  startedAt: number;
  ready: boolean;
  /** Deaths in a row of a worker that ran less than `stableMs`. */
  quickDeaths: number;
  restartTimer: NodeJS.Timeout | undefined;
  /** How the last worker of this slot ended while stopping: 0 only for a clean exit. */
  exitCode: number;
}

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

/**
 * The primary of `nucleon serve --workers N`: forks N workers with node:cluster
 * (round-robin: the primary holds the listening sockets and hands each new
 * connection to a worker), restarts one that dies with a bounded back-off
 * while the others keep their devices, answers the workers' `/metrics`
 * requests, and stops them all on `stop()`.
 */
export class WorkerPool {
  private readonly slots: Slot[];
  private readonly policy: RestartPolicy;
  private readonly metrics = new MetricsCollector();
  private state: State = 'new';
  private starting: { resolve: () => void; reject: (error: Error) => void } | undefined;
  private allExited: (() => void) | undefined;
  private readonly stopOnce = new Once(() => this.doStop());
  private readonly onMessage = (worker: Worker, message: unknown) => this.message(worker, message);
  private readonly onExit = (worker: Worker, code: number | null, signal: string | null) => this.exited(worker, code, signal);

  constructor(private readonly options: WorkerPoolOptions) {
    this.policy = options.restart ?? RESTART_POLICY;
    this.slots = Array.from({ length: options.count }, (_, i) => ({
      slot: i + 1,
      worker: undefined,
      startedAt: 0,
      ready: false,
      quickDeaths: 0,
      restartTimer: undefined,
      exitCode: 0,
    }));
  }

  /** Forks every worker; resolves once all are ready (or a stop began), rejects with WorkerStartError. */
  start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`the worker pool cannot start from state "${this.state}"`);
    if (!cluster.isPrimary) throw new Error('the worker pool runs in the primary process');
    this.state = 'starting';
    // Round-robin in the primary, stated rather than left to the platform default
    // (Windows defaults to letting workers accept, which balances badly).
    cluster.schedulingPolicy = cluster.SCHED_RR;
    cluster.on('message', this.onMessage);
    cluster.on('exit', this.onExit);
    return new Promise<void>((resolve, reject) => {
      this.starting = { resolve, reject };
      for (const slot of this.slots) this.fork(slot);
    });
  }

  /** Stops every worker (each drains as `nucleon serve` does); resolves with the exit code: 0 when all stopped cleanly. */
  stop(): Promise<number> {
    return this.stopOnce.run();
  }

  /** Ends every worker at once (a second signal). */
  kill(): void {
    for (const slot of this.slots) slot.worker?.process.kill('SIGKILL');
  }

  /** The worker processes running now, by slot. */
  pids(): Record<number, number | undefined> {
    return Object.fromEntries(this.slots.map((slot) => [slot.slot, slot.worker?.process.pid]));
  }

  private fork(slot: Slot): void {
    slot.restartTimer = undefined;
    slot.ready = false;
    slot.startedAt = Date.now();
    // The config travels as JSON in the environment: a restarted worker runs what its siblings run.
    const worker = cluster.fork({ [WORKER_SLOT_ENV]: String(slot.slot), [WORKER_CONFIG_ENV]: JSON.stringify(this.options.configOf(slot.slot)) });
    slot.worker = worker;
    this.options.logger.info({ worker: slot.slot, pid: worker.process.pid }, 'worker forked');
  }

  private slotOf(worker: Worker): Slot | undefined {
    return this.slots.find((slot) => slot.worker === worker);
  }

  private message(worker: Worker, message: unknown): void {
    if (!isToPrimary(message)) return;
    const slot = this.slotOf(worker);
    if (!slot) return;
    if (message.nucleon === 'ready') {
      slot.ready = true;
      this.options.logger.info({ worker: slot.slot, pid: worker.process.pid, instance: message.instanceId }, 'worker ready');
      if (this.state === 'starting' && this.slots.every((s) => s.ready)) {
        this.state = 'running';
        this.starting?.resolve();
        this.starting = undefined;
      }
      return;
    }
    const id = message.id;
    this.metrics.collect().then(
      (text) => this.send(worker, { nucleon: 'metrics', id, text }),
      (error: unknown) => this.send(worker, { nucleon: 'metrics', id, error: error instanceof Error ? error.message : String(error) }),
    );
  }

  private send(worker: Worker, message: ToWorker): void {
    if (!worker.isConnected()) return;
    worker.send(message, undefined, (error: Error | null) => {
      // The worker went away meanwhile; its exit is handled and logged on its own.
      if (error) this.options.logger.debug({ err: error, pid: worker.process.pid }, 'message to a worker not delivered');
    });
  }

  private exited(worker: Worker, code: number | null, signal: string | null): void {
    const slot = this.slotOf(worker);
    if (!slot) return;
    slot.worker = undefined;
    const how = signal ? `killed by ${signal}` : `exit code ${code}`;
    if (this.state === 'stopping' || this.state === 'stopped') {
      slot.exitCode = code === 0 && !signal ? 0 : 1;
      this.options.logger.info({ worker: slot.slot, pid: worker.process.pid, code, signal }, 'worker stopped');
      if (this.slots.every((s) => s.worker === undefined)) this.allExited?.();
      return;
    }
    if (this.state === 'starting' && !slot.ready) {
      // At start a failing worker is a failing configuration or port, which a restart would only repeat.
      const error = new WorkerStartError(slot.slot, code === null || code === 0 ? 1 : code, how);
      this.options.logger.error({ worker: slot.slot, pid: worker.process.pid, code, signal }, 'worker failed to start; stopping the others');
      const starting = this.starting;
      this.starting = undefined;
      this.stop().then(
        () => starting?.reject(error),
        () => starting?.reject(error),
      );
      return;
    }
    const ranMs = Date.now() - slot.startedAt;
    if (slot.ready && ranMs >= this.policy.stableMs) slot.quickDeaths = 0;
    const delayMs = Math.min(this.policy.maxMs, this.policy.initialMs * 2 ** slot.quickDeaths);
    slot.quickDeaths++;
    this.options.logger.error(
      { worker: slot.slot, pid: worker.process.pid, code, signal, ranMs, restartInMs: delayMs },
      `worker died (${how}); restarting it, the other workers keep their devices`,
    );
    slot.restartTimer = setTimeout(() => this.fork(slot), delayMs);
  }

  private async doStop(): Promise<number> {
    const wasStarting = this.starting;
    this.state = 'stopping';
    for (const slot of this.slots) {
      clearTimeout(slot.restartTimer);
      slot.restartTimer = undefined;
    }
    const exited = new Promise<void>((resolve) => {
      this.allExited = resolve;
      if (this.slots.every((s) => s.worker === undefined)) resolve();
    });
    for (const slot of this.slots) {
      const worker = slot.worker;
      if (!worker) continue;
      // The stop message, not a signal: a worker that also got the terminal's SIGINT stops once, cleanly.
      if (worker.isConnected()) this.send(worker, { nucleon: 'stop' });
      else worker.process.kill('SIGTERM');
    }
    // Each worker bounds its own stop (twice broker.stop_timeout_ms); this bounds the primary's wait beyond that.
    const graceMs = this.options.stopTimeoutMs * 2 + 2000;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), graceMs)));
    const outcome = await Promise.race([exited.then(() => 'done' as const), late]);
    clearTimeout(timer);
    if (outcome === 'late') {
      this.options.logger.error({ graceMs, pids: this.pids() }, 'workers did not stop in time; killing them');
      this.kill();
      await exited;
    }
    cluster.off('message', this.onMessage);
    cluster.off('exit', this.onExit);
    this.state = 'stopped';
    // A stop while starting ends the start too (not as a failure: it was asked for).
    wasStarting?.resolve();
    this.starting = undefined;
    return outcome === 'late' || this.slots.some((s) => s.exitCode !== 0) ? 1 : 0;
  }
}
