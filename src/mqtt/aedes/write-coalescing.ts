/*
 * aedes writes each packet with mqtt-packet's `writeToStream`, which corks
 * the connection and uncorks it on `process.nextTick`. aedes sends each
 * delivery from its own `setImmediate`, and Node runs the nextTick queue
 * after every immediate, so every packet left alone: over TLS one record,
 * one encryption and one writev syscall per packet (37 % of the broker's CPU
 * in bench scenario 3 was `writev`).
 *
 * Here a connection's first cork in an event-loop turn takes one more cork,
 * released by a `setImmediate`: what is written to that connection until
 * then leaves together, in one TLS record (Node's TLS socket encrypts a
 * writev as one buffer) and one syscall. A write made from an I/O callback is
 * released in the check phase of the same loop iteration; one made from an
 * immediate is released in the next iteration's check phase, after the poll
 * phase, which does not block while an immediate is pending. A corked socket
 * still counts its buffered bytes in `writableLength`, so the send-buffer
 * bound of slow-consumers.ts sees them as before, and `drain` still follows
 * the flush.
 *
 * That next poll phase is where the devices' next messages are read and
 * routed: under load a whole phase of work. An immediate that writes many
 * connections' packets at once (the direct deliveries of deliveries.ts, every
 * subscriber's messages of a turn) runs them in `writeTogether`, which
 * releases the corks it took when it returns: the packets leave together as
 * before, one loop iteration sooner.
 */
import { Writable, type Duplex } from 'node:stream';
import { createRequire } from 'node:module';
import { DependencyMismatchError } from '../../errors.js';
import { encodeHotPacket, type OutgoingPacket } from './packet-bytes.js';
import { installedVersion } from './versions.js';

const HELD = Symbol('nucleon.turnCork');

interface Coalescing extends Writable {
  [HELD]?: boolean;
}

/** Inside writeTogether: the connections whose turn cork it took, released when it returns. */
let together: Coalescing[] | undefined;

/** node:stream's own cork and uncork, called on each connection with `.call`. */
const streamMethods: { cork: (this: Writable) => void; uncork: (this: Writable) => void } = Writable.prototype;
const baseCork = streamMethods.cork;
const baseUncork = streamMethods.uncork;

/** Takes the connection's cork for this turn, once; `releaseTurn` gives it back from a `setImmediate`. */
function holdTurn(stream: Coalescing): void {
  if (stream[HELD] !== true) {
    stream[HELD] = true;
    baseCork.call(stream);
    if (together !== undefined) together.push(stream);
    else setImmediate(releaseTurn, stream);
  }
}

/**
 * Runs `write`; the connections it writes to for the first time this turn
 * are uncorked when it returns (or throws), each once, so what it wrote to
 * one connection still leaves in one TLS record and one syscall. Nested
 * calls leave the release to the outermost.
 */
export function writeTogether(write: () => void): void {
  if (together !== undefined) {
    write();
    return;
  }
  const corked: Coalescing[] = [];
  together = corked;
  try {
    write();
  } finally {
    together = undefined;
    for (const stream of corked) releaseTurn(stream);
  }
}

function turnCork(this: Coalescing): void {
  holdTurn(this);
  baseCork.call(this);
}

function releaseTurn(stream: Coalescing): void {
  stream[HELD] = false;
  // Always, even when destroyed: the cork count stays balanced and a destroyed stream writes nothing.
  baseUncork.call(stream);
}

/**
 * Coalesces the writes of one connection per event-loop turn. A stream that
 * has its own `cork` (not the one of node:stream) is left as it is, and
 * false says so.
 */
export function coalesceWrites(stream: Duplex): boolean {
  if (stream.cork !== baseCork) return false;
  (stream as Coalescing).cork = turnCork;
  return true;
}

type WriteToStream = ((packet: OutgoingPacket, stream: Writable, options?: object) => boolean) & { oneBuffer?: true };

/** aedes' copy of mqtt-packet (the one its write path calls `writeToStream` on at every write). */
function aedesMqttPacket(): { writeToStream?: WriteToStream; generate?: (packet: object) => Buffer } {
  const require = createRequire(import.meta.url);
  return createRequire(require.resolve('aedes'))('mqtt-packet') as { writeToStream?: WriteToStream; generate?: (packet: object) => Buffer };
}

/**
 * The internals this relies on, checked at start-up: aedes' mqtt-packet
 * corks the stream it writes a packet to (so the first packet of a turn
 * reaches `turnCork`), and an aedes client writes to the stream it was
 * handed.
 */
export function checkWriteCoalescing(probe: object, probeStream: Duplex): void {
  const mqttPacket = aedesMqttPacket();
  if (typeof mqttPacket.writeToStream !== 'function') throw new DependencyMismatchError('mqtt-packet', installedVersion('mqtt-packet'), 'writeToStream is gone (src/mqtt/aedes/write-coalescing.ts)');
  const sink = new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
  let corks = 0;
  sink.cork = function countingCork(this: Writable) {
    corks++;
    baseCork.call(this);
  };
  mqttPacket.writeToStream({ cmd: 'pingresp' }, sink);
  sink.destroy();
  if (corks === 0) throw new DependencyMismatchError('mqtt-packet', installedVersion('mqtt-packet'), 'writeToStream no longer corks the stream (src/mqtt/aedes/write-coalescing.ts)');
  if ((probe as { conn?: unknown }).conn !== probeStream) throw new DependencyMismatchError('aedes', installedVersion('aedes'), "a client's conn is not the stream it was handed (src/mqtt/aedes/write-coalescing.ts)");
}

/** aedes' mqtt-packet, once looked up (its `writeToStream` is read at each write, as aedes does). */
let aedesWriter: ReturnType<typeof aedesMqttPacket> | undefined;

/**
 * Writes a packet as aedes' own write path does: mqtt-packet's
 * `writeToStream` without options (whole, on a coalescing connection).
 * Answers whether the stream takes more; throws when mqtt-packet refuses it.
 */
export function writePacket(packet: OutgoingPacket, stream: Writable): boolean {
  aedesWriter ??= aedesMqttPacket();
  const writeToStream = aedesWriter.writeToStream;
  if (typeof writeToStream !== 'function') throw new DependencyMismatchError('mqtt-packet', installedVersion('mqtt-packet'), 'writeToStream is gone (src/mqtt/aedes/write-coalescing.ts)');
  return writeToStream(packet, stream);
}

/** Packets the start-up check encodes both ways: QoS 0/1/2, DUP and RETAIN, a UTF-8 topic, a string payload, every acknowledgement. */
const PROBES: OutgoingPacket[] = [
  { cmd: 'publish', topic: 'a/b', payload: Buffer.from([1, 2, 3]), qos: 0, dup: false, retain: false },
  { cmd: 'publish', topic: 'dev-ü/app/p/data', payload: Buffer.alloc(200, 7), qos: 1, messageId: 513, dup: true, retain: true },
  { cmd: 'publish', topic: 'x', payload: 'text', qos: 2, messageId: 65535 },
  { cmd: 'puback', messageId: 1 },
  { cmd: 'pubrec', messageId: 258 },
  { cmd: 'pubrel', messageId: 3 },
  { cmd: 'pubcomp', messageId: 4 },
];

/**
 * PUBLISH and the acknowledgements leave as one buffer each (packet-bytes.ts)
 * on a connection whose writes are coalesced; everything else, and any other
 * stream, goes through mqtt-packet as before. Installed once per process on
 * aedes' copy of mqtt-packet, after checking that the encoder writes what
 * mqtt-packet's own `generate` does for a set of probe packets.
 */
export function writeHotPacketsWhole(): void {
  const mqttPacket = aedesMqttPacket();
  const original = mqttPacket.writeToStream;
  const generate = mqttPacket.generate;
  if (typeof original !== 'function' || typeof generate !== 'function') throw new DependencyMismatchError('mqtt-packet', installedVersion('mqtt-packet'), 'writeToStream or generate is gone (src/mqtt/aedes/write-coalescing.ts)');
  if (original.oneBuffer) return;
  for (const probe of PROBES) {
    const ours = encodeHotPacket(probe);
    if (!ours?.equals(generate(probe))) throw new DependencyMismatchError('mqtt-packet', installedVersion('mqtt-packet'), `it encodes a ${probe.cmd} differently from src/mqtt/aedes/packet-bytes.ts`);
  }
  const writeToStream: WriteToStream = (packet, stream, options) => {
    if (options === undefined && stream.cork === turnCork) {
      const bytes = encodeHotPacket(packet);
      if (bytes !== undefined) {
        holdTurn(stream);
        const flowing = stream.write(bytes);
        // As mqtt-packet: a PUBLISH answers whether the stream takes more, an acknowledgement always true.
        return packet.cmd === 'publish' ? flowing : true;
      }
    }
    return original(packet, stream, options);
  };
  writeToStream.oneBuffer = true;
  mqttPacket.writeToStream = writeToStream;
}
