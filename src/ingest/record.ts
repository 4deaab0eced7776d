import { crc32Range } from './record-crc.js';

/**
 * One device message as the ingest log keeps it: what the device sent and
 * when, not the decoded event, so a replay runs the same decoding as the live
 * path (src/ingest/device-event.ts) and a record costs a header and a copy of
 * the payload.
 *
 * On disk (little endian):
 *
 *     u32 length of the body    u32 crc32 of the body
 *     body: u8 format (1)  u48 seq  f64 receivedAt (ms)  u8 kind  u8 qos
 *           u8 uid length  uid (ASCII)  u16 target length  target (UTF-8)  payload
 *
 * The CRC covers the whole body, so a torn write or a flipped byte anywhere
 * in it is caught; `seq` is in the body, so a record found by scanning after
 * damage tells where it belongs.
 */
export type DeviceMessageKind = 'app' | 'tel' | 'ota';

export interface DeviceMessage {
  kind: DeviceMessageKind;
  uid: string;
  /** The app target (`<uid>/app/p/<target>`); empty for `tel` and `ota`. */
  target: string;
  payload: Uint8Array;
  receivedAt: number;
  qos: 0 | 1 | 2;
}

export interface LogRecord extends DeviceMessage {
  seq: number;
}

export const HEADER_BYTES = 8;
const FORMAT = 1;
/** format, seq, receivedAt, kind, qos, uid length, target length. */
const FIXED_BODY_BYTES = 1 + 6 + 8 + 1 + 1 + 1 + 2;
/** Larger lengths are damage, not a record (a packet is at most 256 MiB). */
export const MAX_BODY_BYTES = 0x1000_0000 + 0x1_0000;

const KIND_CODES: Record<DeviceMessageKind, number> = { app: 1, tel: 2, ota: 3 };
const KINDS: readonly (DeviceMessageKind | undefined)[] = [undefined, 'app', 'tel', 'ota'];

/** Bytes a message takes on disk, header included. */
export function recordSize(message: DeviceMessage): number {
  return HEADER_BYTES + FIXED_BODY_BYTES + message.uid.length + utf8Length(message.target) + message.payload.byteLength;
}

/*
 * uids and app targets are a few ASCII characters. Buffer#write and
 * Buffer.byteLength cross into C++ for each (about 80 ns per call, 2.7 % of
 * the broker's busy time in bench scenario 1's profile, twice per message);
 * a loop over the character codes does short ASCII text in a fraction of
 * that, and anything else still goes through Buffer.
 */
const ASCII_LOOP_MAX = 64;

/** UTF-8 length of `text`. */
function utf8Length(text: string): number {
  const length = text.length;
  if (length > ASCII_LOOP_MAX) return Buffer.byteLength(text, 'utf8');
  for (let i = 0; i < length; i++) if (text.charCodeAt(i) > 0x7f) return Buffer.byteLength(text, 'utf8');
  return length;
}

/** Writes `text` as UTF-8 at `at` (it must fit); returns the bytes written. */
function writeUtf8(buffer: Buffer, text: string, at: number): number {
  const length = text.length;
  if (length > ASCII_LOOP_MAX) return buffer.write(text, at, 'utf8');
  for (let i = 0; i < length; i++) {
    const code = text.charCodeAt(i);
    // Not ASCII: Buffer writes the whole text over what was copied so far.
    if (code > 0x7f) return buffer.write(text, at, 'utf8');
    buffer[at + i] = code;
  }
  return length;
}

/** Writes the record into `buffer` at `offset` (it must fit: see `recordSize`); returns its size. */
export function encodeRecord(buffer: Buffer, offset: number, seq: number, message: DeviceMessage): number {
  const bodyStart = offset + HEADER_BYTES;
  let at = bodyStart;
  buffer[at++] = FORMAT;
  buffer.writeUIntLE(seq, at, 6);
  at += 6;
  buffer.writeDoubleLE(message.receivedAt, at);
  at += 8;
  buffer[at++] = KIND_CODES[message.kind];
  buffer[at++] = message.qos;
  // uids are [A-Za-z0-9_-]{1,64} (checked before ingest): one byte per character.
  buffer[at++] = message.uid.length;
  for (let i = 0; i < message.uid.length; i++) buffer[at + i] = message.uid.charCodeAt(i);
  at += message.uid.length;
  const targetBytes = message.target === '' ? 0 : writeUtf8(buffer, message.target, at + 2);
  buffer.writeUInt16LE(targetBytes, at);
  at += 2 + targetBytes;
  buffer.set(message.payload, at);
  at += message.payload.byteLength;
  const bodyLength = at - bodyStart;
  buffer.writeUInt32LE(bodyLength, offset);
  buffer.writeUInt32LE(crc32Range(buffer, bodyStart, at), offset + 4);
  return at - offset;
}

export type DecodeResult =
  | { kind: 'record'; record: LogRecord; size: number }
  /** Not enough bytes for a whole record: the end of what was written, or a torn tail. */
  | { kind: 'incomplete' }
  | { kind: 'damaged'; reason: string };

/** Reads the record at `offset` of `buffer` (bytes up to `end` are valid). The payload is a copy. */
export function decodeRecord(buffer: Buffer, offset: number, end: number): DecodeResult {
  if (end - offset < HEADER_BYTES) return { kind: 'incomplete' };
  const length = buffer.readUInt32LE(offset);
  if (length < FIXED_BODY_BYTES || length > MAX_BODY_BYTES) return { kind: 'damaged', reason: `implausible length ${length}` };
  const bodyStart = offset + HEADER_BYTES;
  const bodyEnd = bodyStart + length;
  if (bodyEnd > end) return { kind: 'incomplete' };
  if (crc32Range(buffer, bodyStart, bodyEnd) !== buffer.readUInt32LE(offset + 4)) return { kind: 'damaged', reason: 'checksum mismatch' };
  let at = bodyStart;
  if (buffer[at++] !== FORMAT) return { kind: 'damaged', reason: 'unknown record format' };
  const seq = buffer.readUIntLE(at, 6);
  at += 6;
  const receivedAt = buffer.readDoubleLE(at);
  at += 8;
  const kind = KINDS[buffer[at++] ?? 0];
  const qos = buffer[at++] ?? 0;
  if (kind === undefined || qos > 2) return { kind: 'damaged', reason: 'unknown kind or qos' };
  const uidLength = buffer[at++] ?? 0;
  const uid = buffer.toString('latin1', at, at + uidLength);
  at += uidLength;
  const targetLength = buffer.readUInt16LE(at);
  at += 2;
  const target = buffer.toString('utf8', at, at + targetLength);
  at += targetLength;
  if (at > bodyEnd) return { kind: 'damaged', reason: 'fields longer than the record' };
  const payload = Uint8Array.prototype.slice.call(buffer, at, bodyEnd);
  return { kind: 'record', record: { seq, receivedAt, kind, qos: qos as 0 | 1 | 2, uid, target, payload }, size: HEADER_BYTES + length };
}
