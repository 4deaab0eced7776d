/*
 * The offline-queue bound (SessionPolicy in src/mqtt/persistence.ts) counts
 * a client's queued messages straight from the store, by the key layout of
 * aedes-persistence-level (`outgoing:<encoded id>:<broker>:<counter>`) and
 * aedes-persistence-redis (a list `outgoing:<encoded id>`): their APIs have
 * no count. The embedded store's outgoing path (level-outgoing.ts) writes and
 * deletes queued messages by the same layout. `checkQueueLayout` runs in the stores' setup (inside
 * aedes.listen(), before any listener opens): it queues one message for a
 * probe client through the library's own API, counts it the Nucleon way and
 * removes it, and fails the start with DependencyMismatchError when the
 * count does not see it.
 */
import { randomBytes } from 'node:crypto';
import type { PublishPacket } from 'aedes';
import { DependencyMismatchError } from '../../errors.js';
import { installedVersion } from './versions.js';

/** The last prefix made: a subscriber's messages come one after another (encodeURIComponent per message showed in profiles). */
let lastPrefix = { clientId: '', prefix: 'outgoing::' };

/** aedes-persistence-level: the key prefix of one client's queued messages. */
function levelQueuePrefix(clientId: string): string {
  if (lastPrefix.clientId !== clientId) lastPrefix = { clientId, prefix: `outgoing:${encodeURIComponent(clientId)}:` };
  return lastPrefix.prefix;
}

/** aedes-persistence-level: the key range of one client's queued messages. */
export function levelQueueRange(clientId: string): { gte: string; lt: string } {
  const prefix = levelQueuePrefix(clientId);
  return { gte: prefix, lt: `${prefix.slice(0, -1)};` };
}

/** aedes-persistence-level: the key of one queued message (its counter zero-padded, so keys sort in queue order). */
export function levelQueueKey(clientId: string, brokerId: string | undefined, brokerCounter: number | undefined): string {
  return `${levelQueuePrefix(clientId)}${String(brokerId)}:${String(brokerCounter).padStart(16, '0')}`;
}

/** aedes-persistence-redis: the list of one client's queued messages. */
export function redisQueueKey(clientId: string): string {
  return `outgoing:${encodeURIComponent(clientId)}`;
}

export interface QueueLayoutProbe {
  /** The library's own outgoingEnqueue (not Nucleon's bounded one). */
  enqueue(sub: { clientId: string }, packet: PublishPacket): Promise<void>;
  /** Nucleon's count of a client's queued messages. */
  count(clientId: string): Promise<number>;
  /** Removes what the probe queued, by the key or list Nucleon computes for it. */
  remove(clientId: string, packet: PublishPacket): Promise<unknown>;
}

export async function checkQueueLayout(dependency: 'aedes-persistence-level' | 'aedes-persistence-redis', probe: QueueLayoutProbe): Promise<void> {
  const clientId = `nucleon-layout-probe-${randomBytes(6).toString('hex')}`;
  const packet = { cmd: 'publish', topic: 'nucleon/layout-probe', payload: Buffer.alloc(0), qos: 1, retain: false, dup: false, messageId: 1, brokerId: 'nucleon-layout-probe', brokerCounter: 1 } as unknown as PublishPacket;
  await probe.enqueue({ clientId }, packet);
  let counted: number;
  try {
    counted = await probe.count(clientId);
  } finally {
    await probe.remove(clientId, packet);
  }
  if (counted !== 1) throw new DependencyMismatchError(dependency, installedVersion(dependency), `a queued message is not where src/mqtt/aedes/queue-layout.ts counts it (counted ${counted} of 1)`);
  const left = await probe.count(clientId);
  if (left !== 0) throw new DependencyMismatchError(dependency, installedVersion(dependency), `a queued message is not at the key Nucleon removes it by (${left} left after removing it)`);
}
