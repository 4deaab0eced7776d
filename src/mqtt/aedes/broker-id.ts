import { randomBytes } from 'node:crypto';

/**
 * The aedes broker id for this run, starting with the start time so that ids
 * of later runs sort after earlier ones. aedes-persistence-level keys a
 * client's offline queue `outgoing:<client>:<brokerId>:<counter>` and reads
 * it back in key order; with aedes' default random UUID, messages queued
 * before a restart came out before or after those queued since, by the luck
 * of two UUIDs (MQTT 4.6.0 wants them in order). Fixed width: 10 base-36
 * digits of milliseconds last until the year 5188.
 */
export function chronologicalBrokerId(now = Date.now()): string {
  return `${now.toString(36).padStart(10, '0')}-${randomBytes(6).toString('hex')}`;
}
