/*
 * The one place Nucleon touches the internals of aedes and its dependencies
 * (mqtt-packet, bl, aedes-persistence-*, mqemitter-*). Each contact has a
 * guard that runs in `installAedesContacts`, at start-up before any listener
 * opens, against an in-memory client: when an internal it relies on is not
 * there, the start fails with DependencyMismatchError naming the package and
 * its installed version. package.json pins these packages to exact versions
 * (test/integration/aedes-contacts.test.ts checks the lock file against the guards).
 */
import type { Aedes } from 'aedes';
import { DependencyMismatchError } from '../../errors.js';
import { boundReads } from './bounded-reads.js';
import { checkDeliveries } from './deliveries.js';
import { rememberEmitterMatches } from './emitter-matches.js';
import { checkNucleonAedes, type NucleonAedes } from './nucleon-aedes.js';
import { assertPacketLimitSupported, limitPacketSize } from './packet-limit.js';
import { dependencyPatches } from './patches/index.js';
import { probeClient } from './probe.js';
import { checkKeepalive, wheelKeepalives } from './keepalive-wheel.js';
import { leanClients } from './lean-client.js';
import { limitSlowConsumers } from './slow-consumers.js';
import { enforceStrictPackets } from './strict-packets.js';
import { installedVersion } from './versions.js';
import { checkWriteCoalescing, writeHotPacketsWhole } from './write-coalescing.js';

export { NucleonAedes, markHandled, type NucleonAedesOptions } from './nucleon-aedes.js';
export { readAhead } from './bounded-reads.js';
export { filterMatches, grantHighestQos } from './deliveries.js';
export { INVALID_UTF8, NULL_CHARACTER, ZERO_PACKET_ID } from './strict-packets.js';
export { installedVersion } from './versions.js';
export { coalesceWrites } from './write-coalescing.js';

export { redisEmitterState } from './mqemitter-redis.js';
export { checkQueueLayout, levelQueueRange, redisQueueKey } from './queue-layout.js';
export { combiningPersistenceDb, type PersistenceDb } from './persistence-db.js';

export interface ContactOptions {
  /** mqtt.limits.max_send_buffer_bytes */
  maxSendBufferBytes: number;
  /** mqtt.limits.max_packet_size */
  maxPacketSize: number;
}

/**
 * Every contact, the version of its package it was written and checked
 * against; package.json pins these exactly and test/integration/aedes-contacts.test.ts
 * checks that the lock file installs them.
 */
export const CONTACTS = [
  { file: 'nucleon-aedes.ts', dependency: 'aedes', verifiedWith: '1.2.0', what: 'the three-argument publish, the clients map and unregisterClient' },
  { file: 'nucleon-aedes.ts', dependency: 'aedes', verifiedWith: '1.2.0', what: "the publish step of a QoS 0 message not retained (Packet fields, storeRetained, emitPacket setting clientId, callPublished with the default published) that routeQos0Directly does in one step" },
  { file: 'nucleon-aedes.ts', dependency: 'mqemitter', verifiedWith: '7.1.0', what: "the in-process emitter's `closed` and `_matcher`, whose subscription functions _do calls with (message, callback) on the emitter" },
  { file: 'slow-consumers.ts', dependency: 'aedes', verifiedWith: '1.2.0', what: 'Client.waitForDrain and its drain timer' },
  { file: 'deliveries.ts', dependency: 'aedes', verifiedWith: '1.2.0', what: "a client's deliver0 / deliverQoS, subscriptions and duplicates; _nextId, _onError, clean, connecting, connected, errored, conn and broker.authorizeForward for direct deliveries" },
  { file: 'write-coalescing.ts', dependency: 'mqtt-packet', verifiedWith: '9.0.2', what: 'writeToStream corks the stream it writes to' },
  { file: 'write-coalescing.ts', dependency: 'aedes', verifiedWith: '1.2.0', what: "a client writes to the stream it was handed (client.conn)" },
  { file: 'write-coalescing.ts', dependency: 'mqtt-packet', verifiedWith: '9.0.2', what: "aedes calls writeToStream on the module's exports at each write, without options; generate() encodes PUBLISH and the acknowledgements as packet-bytes.ts does" },
  { file: 'lean-client.ts', dependency: 'aedes', verifiedWith: '1.2.0', what: "a client's _eos (stream.finished), close, conn.client and _inboundInflight" },
  { file: 'bounded-reads.ts', dependency: 'aedes', verifiedWith: '1.2.0', what: "a client's nextBatch: read everything buffered, parse it, read again once the batch's packets called back (counted in _parsingBatch, which readAhead lowers for a packet it lets go)" },
  { file: 'keepalive-wheel.ts', dependency: 'aedes', verifiedWith: '1.2.0', what: "a client's _keepaliveTimer: refreshed per packet, cleared in close(), and the 'clientReady' event" },
  { file: 'probe.ts', dependency: 'aedes', verifiedWith: '1.2.0', what: 'a client made by aedes.handle() on an in-memory stream' },
  { file: 'strict-packets.ts', dependency: 'mqtt-packet', verifiedWith: '9.0.2', what: 'Parser._parseString, _parseMessageId, _emitError' },
  { file: 'packet-limit.ts', dependency: 'mqtt-packet', verifiedWith: '9.0.2', what: 'Parser._parseLength and the parser-to-client link aedes sets' },
  { file: 'patches/quiet-debug.ts', dependency: 'mqtt-packet', verifiedWith: '9.0.2', what: "its debug loggers, created when it loads" },
  { file: 'patches/lean-parser.ts', dependency: 'mqtt-packet', verifiedWith: '9.0.2', what: 'Parser._resetState, _parseConnect and the settings fields it reads, _newPacket, _parseHeader and parse()' },
  { file: 'patches/parser-input.ts', dependency: 'mqtt-packet', verifiedWith: '9.0.2', what: "the members of its `_list` the Parser uses: append, length, readUInt8/16BE/32BE, slice, toString, consume (bl's BufferList semantics)" },
  { file: 'queue-layout.ts', dependency: 'aedes-persistence-level', verifiedWith: '9.2.0', what: 'the outgoing queue key layout' },
  { file: 'persistence-db.ts', dependency: 'aedes-persistence-level', verifiedWith: '9.2.0', what: 'the database methods it calls (get, put, del, batch, clear, values, close) with Buffer values' },
  { file: 'queue-layout.ts', dependency: 'aedes-persistence-redis', verifiedWith: '11.2.2', what: 'the outgoing queue list key' },
  { file: 'emitter-matches.ts', dependency: 'mqemitter', verifiedWith: '7.1.0', what: "the emitter's `_matcher` qlobber (match, add, remove, clear), which _do matches each message with and on / removeListener / removeAllListeners change" },
  { file: 'mqemitter-redis.ts', dependency: 'mqemitter-redis', verifiedWith: '7.2.1', what: 'the private `state` emitter of Redis errors' },
] as const;

/**
 * Checks and installs every contact for this aedes instance, before any
 * listener opens; throws DependencyMismatchError naming the package and its
 * installed version when one does not fit. Returns warnings that do not stop
 * the start (a performance patch that could not apply because mqtt-packet was
 * loaded before Nucleon: an import order, not a changed dependency).
 */
export function installAedesContacts(aedes: NucleonAedes, options: ContactOptions): string[] {
  checkNucleonAedes(aedes);
  rememberEmitterMatches((aedes as unknown as { mq: unknown }).mq);
  const warnings = checkPerformancePatches();
  limitPacketSize(aedes, options.maxPacketSize);
  probeClient(aedes as Aedes, (probe, stream) => {
    limitSlowConsumers(aedes, probe, options.maxSendBufferBytes);
    enforceStrictPackets(probe);
    assertPacketLimitSupported(aedes, probe);
    checkDeliveries(probe);
    checkWriteCoalescing(probe, stream);
    leanClients(aedes, probe);
    boundReads(aedes, probe);
    checkKeepalive(probe);
  });
  wheelKeepalives(aedes);
  writeHotPacketsWhole();
  return warnings;
}

function checkPerformancePatches(): string[] {
  const { quietDebug, leanParser, leanConnect, idlePacket } = dependencyPatches;
  const warnings: string[] = [];
  if (quietDebug === 'mqtt-packet-already-loaded') warnings.push('mqtt-packet was loaded before Nucleon: its disabled debug loggers still cost CPU (import Nucleon first)');
  else if (quietDebug !== 'installed') throw new DependencyMismatchError('mqtt-packet', installedVersion('mqtt-packet'), `quiet-debug: ${quietDebug}`);
  if (leanParser !== 'installed' && leanParser !== 'already-installed') throw new DependencyMismatchError('mqtt-packet', installedVersion('mqtt-packet'), `lean-parser: ${leanParser}`);
  if (leanConnect !== 'installed' && leanConnect !== 'already-installed') throw new DependencyMismatchError('mqtt-packet', installedVersion('mqtt-packet'), `lean-parser (CONNECT settings): ${leanConnect}`);
  if (idlePacket !== 'installed' && idlePacket !== 'already-installed') throw new DependencyMismatchError('mqtt-packet', installedVersion('mqtt-packet'), `lean-parser (idle packet): ${idlePacket}`);
  return warnings;
}
