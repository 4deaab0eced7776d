/*
 * The packets every message costs on its way out, PUBLISH and the
 * acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP), encoded into one
 * buffer, byte for byte as mqtt-packet's `writeToStream` writes them for
 * MQTT 3.1.1 (no options given, as aedes calls it). mqtt-packet writes a
 * PUBLISH as five or six `stream.write` calls (header, length, topic length,
 * the topic as a string, packet id, payload) and an acknowledgement as three;
 * each is a buffered entry in Node's Writable (and the topic a string to
 * convert), then an element of the socket's writev. In a profile of bench
 * scenario 10 (QoS 0, a subscriber on `+/app/p/#`) `writeOrBuffer` alone was
 * 7 % of the broker's samples. Written by hand because it is that hot; the
 * unit test compares it with mqtt-packet's `generate` for every case it takes.
 *
 * Anything else, or a packet mqtt-packet would refuse (it destroys the stream
 * with an error), returns undefined: the caller hands it to mqtt-packet.
 */

/** What the encoder reads of a packet (aedes' Packet and mqtt-packet's objects alike). */
export interface OutgoingPacket {
  cmd: string;
  topic?: unknown;
  payload?: unknown;
  qos?: unknown;
  dup?: unknown;
  retain?: unknown;
  messageId?: unknown;
}

/** MQTT's largest remaining length (four length bytes). */
const MAX_REMAINING = 268_435_455;

const ACK_TYPES: Record<string, number> = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 };

function packetId(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0xffff;
}

/** The packet's bytes in one buffer, or undefined when mqtt-packet should write it. */
export function encodeHotPacket(packet: OutgoingPacket): Buffer | undefined {
  if (packet.cmd === 'publish') return encodePublish(packet);
  const header = ACK_TYPES[packet.cmd];
  // A PUBREL with DUP is not valid MQTT 3.1.1 (its flags are fixed); mqtt-packet throws on it, and so it still does.
  if (header === undefined || !packetId(packet.messageId) || (packet.cmd === 'pubrel' && packet.dup)) return undefined;
  const bytes = Buffer.allocUnsafe(4);
  bytes[0] = header;
  bytes[1] = 2;
  bytes.writeUInt16BE(packet.messageId, 2);
  return bytes;
}

function encodePublish(packet: OutgoingPacket): Buffer | undefined {
  const qos = packet.qos || 0;
  if (qos !== 0 && qos !== 1 && qos !== 2) return undefined;
  const topic = packet.topic;
  if (typeof topic !== 'string') return undefined;
  const payload = packet.payload || EMPTY;
  const isBuffer = Buffer.isBuffer(payload);
  if (!isBuffer && typeof payload !== 'string') return undefined;
  if (qos > 0 && !packetId(packet.messageId)) return undefined;
  const topicBytes = Buffer.byteLength(topic);
  const payloadBytes = isBuffer ? payload.length : Buffer.byteLength(payload);
  const remaining = 2 + topicBytes + (qos > 0 ? 2 : 0) + payloadBytes;
  if (remaining > MAX_REMAINING || topicBytes > 0xffff) return undefined;
  const lengthBytes = remaining < 0x80 ? 1 : remaining < 0x4000 ? 2 : remaining < 0x200000 ? 3 : 4;
  const bytes = Buffer.allocUnsafe(1 + lengthBytes + remaining);
  bytes[0] = 0x30 | (packet.dup ? 0x08 : 0) | (qos << 1) | (packet.retain ? 1 : 0);
  let at = 1;
  let rest = remaining;
  do {
    const digit = rest % 0x80;
    rest = Math.floor(rest / 0x80);
    bytes[at++] = rest > 0 ? digit | 0x80 : digit;
  } while (rest > 0);
  bytes.writeUInt16BE(topicBytes, at);
  at += 2;
  at += bytes.write(topic, at, 'utf8');
  if (qos > 0) {
    bytes.writeUInt16BE(packet.messageId as number, at);
    at += 2;
  }
  if (isBuffer) payload.copy(bytes, at);
  else bytes.write(payload, at, 'utf8');
  return bytes;
}

const EMPTY = Buffer.alloc(0);
