/**
 * The IPC messages between the primary and its workers (node:cluster's
 * channel). Tagged `nucleon` so they never mix with prom-client's own
 * (`type: 'prom-client:…'`) on the same channel.
 */
export type ToPrimary =
  /** The worker's Nucleon started: its listeners take connections. */
  | { nucleon: 'ready'; instanceId: string }
  /** A `/metrics` request reached this worker: the primary collects every worker's. */
  | { nucleon: 'metrics'; id: number };

export type ToWorker =
  /** Stop cleanly, as for SIGTERM. */
  | { nucleon: 'stop' }
  | { nucleon: 'metrics'; id: number; text: string }
  | { nucleon: 'metrics'; id: number; error: string };

function tagged(message: unknown): message is { nucleon: unknown } {
  return typeof message === 'object' && message !== null && 'nucleon' in message;
}

export function isToPrimary(message: unknown): message is ToPrimary {
  if (!tagged(message)) return false;
  return message.nucleon === 'ready' || message.nucleon === 'metrics';
}

export function isToWorker(message: unknown): message is ToWorker {
  if (!tagged(message)) return false;
  return message.nucleon === 'stop' || message.nucleon === 'metrics';
}

/** The environment the primary hands a worker: its slot and its config (JSON). */
export const WORKER_SLOT_ENV = 'NUCLEON_WORKER_SLOT';
export const WORKER_CONFIG_ENV = 'NUCLEON_WORKER_CONFIG';
