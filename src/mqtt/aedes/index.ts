/*
 * The one place Nucleon touches the internals of aedes and its dependencies
 * (mqtt-packet, bl, aedes-persistence-*, mqemitter-*). Each contact has a
 * guard that runs in `installAedesContacts`, at start-up before any listener
 * opens, against an in-memory client: when an internal it relies on is not
 * there, the start fails with DependencyMismatchError naming the package and
 * its installed version. package.json pins these packages to exact versions
 * (test/aedes-contacts.test.ts checks the lock file against the guards).
 */
import type { Aedes } from 'aedes';
import { checkNucleonAedes, type NucleonAedes } from './nucleon-aedes.js';
import { probeClient } from './probe.js';
import { limitSlowConsumers } from './slow-consumers.js';
import { enforceStrictPackets } from './strict-packets.js';

export { NucleonAedes, markHandled, type NucleonAedesOptions } from './nucleon-aedes.js';
export { SEND_BUFFER_FULL } from './slow-consumers.js';
export { INVALID_UTF8, NULL_CHARACTER, ZERO_PACKET_ID } from './strict-packets.js';
export { installedVersion } from './versions.js';

export interface ContactOptions {
  /** mqtt.limits.max_send_buffer_bytes */
  maxSendBufferBytes: number;
}

/** Checks and installs every contact for this aedes instance; throws DependencyMismatchError when one does not fit. */
export function installAedesContacts(aedes: NucleonAedes, options: ContactOptions): void {
  checkNucleonAedes(aedes);
  probeClient(aedes as Aedes, (probe) => {
    limitSlowConsumers(aedes, probe, options.maxSendBufferBytes);
    enforceStrictPackets(probe);
  });
}
