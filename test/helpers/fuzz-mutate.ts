// Generators of valid MQTT packets (mqtt-packet) and CBOR values (cbor-x), and
// byte-level mutations of them, for the fuzz suites. Everything draws from the
// seeded Rng, so a printed seed replays the same inputs.
import { Encoder } from 'cbor-x';
import mqttPacket, { type Packet } from 'mqtt-packet';
import type { Rng } from './reliability-support.js';

/** A marker in generated topics, replaced by invalid UTF-8 in the `invalid_utf8_topic` mutation. */
const TOPIC_MARK = 'ZZZZ';

const LEVEL_NAMES: [string, number][] = [
  ['MQTT', 4],
  ['MQIsdp', 3],
  ['MQTT', 5],
];

/** A valid packet of a random kind; `uid` is the identity the session claims. */
export function randomPacket(rng: Rng, uid: string, options: { credentials?: boolean } = {}): Packet {
  const kind = rng.pick(['connect', 'publish', 'publish', 'publish', 'subscribe', 'unsubscribe', 'pingreq', 'puback', 'pubrel', 'disconnect'] as const);
  const messageId = 1 + rng.int(65535);
  switch (kind) {
    case 'connect':
      return connectPacket(rng, uid, options.credentials ?? rng.chance(0.05));
    case 'publish': {
      const qos = rng.pick([0, 1, 1, 2] as const);
      return {
        cmd: 'publish',
        topic: randomTopic(rng, uid, false),
        payload: rng.bytes(rng.int(64)),
        qos,
        retain: rng.chance(0.1),
        dup: rng.chance(0.05),
        ...(qos > 0 ? { messageId } : {}),
      };
    }
    case 'subscribe':
      return { cmd: 'subscribe', messageId, subscriptions: Array.from({ length: 1 + rng.int(3) }, () => ({ topic: randomTopic(rng, uid, true), qos: rng.pick([0, 1, 2] as const) })) };
    case 'unsubscribe':
      return { cmd: 'unsubscribe', messageId, unsubscriptions: [randomTopic(rng, uid, true)] };
    case 'pingreq':
      return { cmd: 'pingreq' };
    case 'puback':
      return { cmd: 'puback', messageId };
    case 'pubrel':
      return { cmd: 'pubrel', messageId };
    case 'disconnect':
      return { cmd: 'disconnect' };
  }
}

export function connectPacket(rng: Rng, uid: string, credentials: boolean): Packet {
  const [protocolId, protocolVersion] = rng.chance(0.85) ? (['MQTT', 4] as [string, number]) : rng.pick(LEVEL_NAMES);
  // mqtt-packet refuses to encode an empty client id before 3.1.1 (seed 679916161 hit it).
  return {
    cmd: 'connect',
    protocolId: protocolId as 'MQTT',
    protocolVersion: protocolVersion as 4,
    ...(rng.chance(0.9) ? { clientId: uid, clean: rng.chance(0.7) } : { clientId: rng.bytes((protocolVersion === 4 ? 0 : 1) + rng.int(24)).toString('latin1'), clean: true }),
    keepalive: rng.pick([0, 1, 30, 60, 60, 60, 65535]),
    ...(credentials ? { username: rng.chance(0.5) ? uid : 'svc:nobody', password: rng.bytes(8 + rng.int(16)) } : {}),
    ...(rng.chance(0.1) ? { will: { topic: randomTopic(rng, uid, false), payload: rng.bytes(rng.int(16)), qos: rng.pick([0, 1] as const), retain: false } } : {}),
  };
}

function randomTopic(rng: Rng, uid: string, filter: boolean): string {
  const topics = [
    `${uid}/app/p/${TOPIC_MARK}`,
    `${uid}/tel/p`,
    `${uid}/ota/p`,
    `${uid}/app/s/${TOPIC_MARK}`,
    `other-${uid}/app/p/x`,
    `$SYS/broker/${TOPIC_MARK}`,
    `${uid}/${TOPIC_MARK}`,
    `${uid}/app/p/${'a/'.repeat(rng.int(300))}x`,
    TOPIC_MARK,
  ];
  const filters = ['#', '+/app/s/#', `${uid}/app/s/#`, `${uid}/#`, '$SYS/#', `${uid}/ota/s/${TOPIC_MARK}`];
  return rng.pick(filter ? [...topics, ...filters] : topics);
}

export const MUTATIONS = [
  'none',
  'bitflip',
  'truncate',
  'wrong_length',
  'huge_length',
  'overlong_length',
  'invalid_utf8_topic',
  'bad_protocol_level',
  'bad_protocol_name',
  'packet_type',
  'reserved_flags',
  'insert_bytes',
  'garbage',
] as const;
export type Mutation = (typeof MUTATIONS)[number];

/** Where the body starts: after the type byte and the 1..4 byte remaining length. */
function headerLength(bytes: Buffer): number {
  let i = 1;
  while (i < bytes.length && i < 5 && ((bytes[i] ?? 0) & 0x80) !== 0) i++;
  return Math.min(i + 1, bytes.length);
}

function encodeLength(length: number): Buffer {
  const out: number[] = [];
  let rest = length;
  do {
    let digit = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest > 0) digit |= 0x80;
    out.push(digit);
  } while (rest > 0 && out.length < 4);
  return Buffer.from(out);
}

/** The encoded packet with one mutation applied; `none` sends it as generated. */
export function mutate(rng: Rng, bytes: Buffer, mutation: Mutation): Buffer {
  const out = Buffer.from(bytes);
  const body = headerLength(out);
  switch (mutation) {
    case 'none':
      return out;
    case 'bitflip': {
      for (let i = 0, n = 1 + rng.int(4); i < n; i++) {
        const at = rng.int(out.length);
        out[at] = (out[at] ?? 0) ^ (1 << rng.int(8));
      }
      return out;
    }
    case 'truncate':
      return out.subarray(0, rng.int(out.length));
    case 'wrong_length':
      return Buffer.concat([out.subarray(0, 1), encodeLength(rng.int(Math.max(2, (out.length - body) * 2 + 4))), out.subarray(body)]);
    case 'huge_length':
      // 268 435 455 bytes: the largest MQTT allows; refused at the header (max_packet_size).
      return Buffer.concat([out.subarray(0, 1), Buffer.from([0xff, 0xff, 0xff, 0x7f]), out.subarray(body)]);
    case 'overlong_length':
      // Five length bytes: not a valid MQTT variable byte integer.
      return Buffer.concat([out.subarray(0, 1), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x01]), out.subarray(body)]);
    case 'invalid_utf8_topic': {
      const at = out.indexOf(TOPIC_MARK);
      if (at < 0) return mutate(rng, bytes, 'bitflip');
      Buffer.from(rng.pick([[0xc3, 0x28, 0xa0, 0xa1], [0xff, 0xfe, 0xfd, 0xfc], [0xed, 0xa0, 0x80, 0x41], [0x00, 0x41, 0x42, 0x43]])).copy(out, at);
      return out;
    }
    case 'bad_protocol_level': {
      const at = out.indexOf('MQTT');
      if (at < 0 || (out[0] ?? 0) >> 4 !== 1) return mutate(rng, bytes, 'bitflip');
      out[at + 4] = rng.pick([0, 1, 2, 6, 7, 128, 255]);
      return out;
    }
    case 'bad_protocol_name': {
      const at = out.indexOf('MQTT');
      if (at < 0) return mutate(rng, bytes, 'bitflip');
      rng.bytes(4).copy(out, at);
      return out;
    }
    case 'packet_type':
      out[0] = (rng.int(16) << 4) | ((out[0] ?? 0) & 0x0f);
      return out;
    case 'reserved_flags':
      out[0] = ((out[0] ?? 0) & 0xf0) | rng.int(16);
      return out;
    case 'insert_bytes': {
      const at = rng.int(out.length + 1);
      return Buffer.concat([out.subarray(0, at), rng.bytes(1 + rng.int(16)), out.subarray(at)]);
    }
    case 'garbage':
      return rng.bytes(1 + rng.int(128));
  }
}

export function encodePacket(packet: Packet): Buffer {
  return mqttPacket.generate(packet);
}

// ---- CBOR ----------------------------------------------------------------------

const cbor = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true });

export function encodeCbor(value: unknown): Buffer {
  return cbor.encode(value);
}

/** A random CBOR-able value: maps with integer and text keys, arrays, strings, bytes, numbers, null. */
export function randomValue(rng: Rng, depth = 0): unknown {
  const leaf = depth > 3 || rng.chance(0.5);
  if (leaf) {
    switch (rng.int(9)) {
      case 0:
        return rng.int(2 ** 31) - 2 ** 30;
      case 1:
        return rng.next() * 1e9 - 5e8;
      case 2:
        return rng.bytes(rng.int(24)).toString('utf8');
      case 3:
        return new Uint8Array(rng.bytes(rng.int(32)));
      case 4:
        return null;
      case 5:
        return rng.chance(0.5);
      case 6:
        return rng.pick([Number.MAX_SAFE_INTEGER, -1, 0, 2 ** 53, -(2 ** 63), Number.NaN, Number.POSITIVE_INFINITY]);
      case 7:
        return rng.pick(['1.2.3-4-g965b9df', '0.0.0-0-g0000000', '999999999.1.1-1-gabcdefg', '', 'x'.repeat(200)]);
      default:
        return BigInt(rng.int(2 ** 31)) * 4294967296n;
    }
  }
  if (rng.chance(0.5)) return Array.from({ length: rng.int(5) }, () => randomValue(rng, depth + 1));
  const map = new Map<unknown, unknown>();
  for (let i = 0, n = rng.int(6); i < n; i++) map.set(rng.chance(0.6) ? rng.int(8) : rng.pick(['cmd', 'id', 'start_pos', 'end_pos', 'version', 'rsrp', 'rssi_hub', 'rssi_client', 'x']), randomValue(rng, depth + 1));
  return map;
}

/** A plausible device message for `kind`, with integer or text keys (as Pyrinas firmware sends). */
export function plausiblePayload(rng: Rng, kind: 'tel' | 'ota' | 'app'): unknown {
  const textKeys = rng.chance(0.3);
  const key = (index: number, name: string) => (textKeys ? name : index);
  if (kind === 'tel') {
    return new Map<unknown, unknown>([
      [key(0, 'version'), rng.pick(['1.2.3-4-g965b9df', '0.1.0-0-g1234567', 'garbage'])],
      [key(1, 'rsrp'), rng.int(200)],
      [key(2, 'rssi_hub'), rng.int(200) - 100],
      [key(3, 'rssi_client'), rng.chance(0.5) ? null : rng.int(200) - 100],
    ]);
  }
  if (kind === 'ota') {
    const start = rng.int(4096);
    return new Map<unknown, unknown>([
      [key(0, 'cmd'), rng.pick([0, 1, 2, 2, 3, -1])],
      [key(1, 'id'), rng.pick(['1.0.0-1-g965b9df', '1.0.0-1-g965b9df', '9.9.9-9-g0000000', 'nope', null])],
      [key(2, 'start_pos'), start],
      [key(3, 'end_pos'), start + rng.pick([0, 1, 512, 4096, 1 << 20])],
    ]);
  }
  return randomValue(rng);
}

/** Hand-made CBOR that stresses decoders: huge declared lengths, deep nesting, bad tags, breaks. */
export function hostileCbor(rng: Rng): Buffer {
  switch (rng.int(8)) {
    case 0:
      // Byte string claiming 2^63 bytes.
      return Buffer.from([0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
    case 1:
      // Map claiming 2^32-1 pairs.
      return Buffer.from([0xba, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00]);
    case 2:
      // Arrays nested thousands deep.
      return Buffer.alloc(1000 + rng.int(20_000), 0x81);
    case 3:
      // Indefinite maps nested deep, never closed.
      return Buffer.alloc(1000 + rng.int(5000), 0xbf);
    case 4:
      // A lone break, reserved additional info, and a tag on garbage.
      return Buffer.from(rng.pick([[0xff], [0x1c], [0xd9, 0xd9, 0xf7, 0xff], [0xc1, 0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]]));
    case 5:
      // Text string with invalid UTF-8.
      return Buffer.from([0xa1, 0x00, 0x64, 0xff, 0xfe, 0xc3, 0x28]);
    case 6:
      // Tags the decoder may try to interpret (dates, bigints, regexps, typed arrays) on wrong contents.
      return Buffer.from([0xa1, 0x00, rng.pick([0xc0, 0xc1, 0xc2, 0xc3, 0xd8]), rng.pick([0x23, 0x40, 0x80, 0xa0, 0xf6, 0x41]), 0x00]);
    default:
      return rng.bytes(rng.int(256));
  }
}
