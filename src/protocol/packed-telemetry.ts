import type { Telemetry } from '../events.js';

/**
 * The telemetry map nearly every device sends, read straight from its bytes:
 * Pyrinas' serde_cbor "packed" form, a map of at most four entries keyed 0-3
 * (version text, rsrp, rssi_hub, rssi_client), integers of up to four bytes
 * and ASCII text, or null. Anything else (names as keys, configured extra
 * fields, floats, long integers, UTF-8 beyond ASCII, a value out of range,
 * a repeated key, trailing bytes, bad CBOR) returns undefined and takes the
 * general decoder, which also says what is wrong; so this path never decides
 * what is refused. test/unit/packed-telemetry.test.ts holds its answers to
 * the general decoder's over random and mutated maps.
 *
 * Why by hand: cbor-x builds a Map (mapsAsObjects false keeps integer keys)
 * and a fresh version string per message before the fields are read; at
 * 100k telemetry messages a second that was a fifth of the broker's
 * allocations (heap sampling, bench scenario 8). The version text is kept
 * (a fleet runs a handful of firmware versions), so the same string comes
 * back for the same bytes.
 */
export function readPackedTelemetry(bytes: Uint8Array, maxVersionLength: number): Telemetry | undefined {
  const end = bytes.length;
  if (end === 0) return undefined;
  const head = bytes[0] as number;
  // A map (major type 5) of 1 to 4 entries.
  if (head < 0xa1 || head > 0xa4) return undefined;
  let entries = head - 0xa0;
  let at = 1;
  let seen = 0;
  let version: string | undefined;
  let rsrp: number | undefined;
  let rssiHub: number | undefined;
  let rssiClient: number | undefined;
  while (entries-- > 0) {
    if (at >= end) return undefined;
    const key = bytes[at++] as number;
    if (key > 3) return undefined;
    const bit = 1 << key;
    if ((seen & bit) !== 0) return undefined;
    seen |= bit;
    if (at >= end) return undefined;
    const initial = bytes[at] as number;
    if (initial === NULL) {
      at++;
      continue;
    }
    if (key === 0) {
      // Text (major type 3), length in the initial byte or the next one.
      let length: number;
      if (initial >= 0x60 && initial <= 0x77) {
        length = initial - 0x60;
        at++;
      } else if (initial === 0x78) {
        if (at + 1 >= end) return undefined;
        length = bytes[at + 1] as number;
        at += 2;
      } else return undefined;
      if (length > maxVersionLength || at + length > end) return undefined;
      version = asciiText(bytes, at, length);
      if (version === undefined) return undefined;
      at += length;
      continue;
    }
    const major = initial >> 5;
    if (major > 1) return undefined;
    const info = initial & 0x1f;
    let magnitude: number;
    if (info < 24) {
      magnitude = info;
      at++;
    } else if (info === 24) {
      if (at + 1 >= end) return undefined;
      magnitude = bytes[at + 1] as number;
      at += 2;
    } else if (info === 25) {
      if (at + 2 >= end) return undefined;
      magnitude = ((bytes[at + 1] as number) << 8) | (bytes[at + 2] as number);
      at += 3;
    } else if (info === 26) {
      if (at + 4 >= end) return undefined;
      magnitude = (bytes[at + 1] as number) * 0x1000000 + (((bytes[at + 2] as number) << 16) | ((bytes[at + 3] as number) << 8) | (bytes[at + 4] as number));
      at += 5;
    } else return undefined;
    // Negative integers (major type 1) are -1 - n.
    const value = major === 0 ? magnitude : -1 - magnitude;
    if (key === 1) {
      if (value < 0) return undefined;
      rsrp = value;
    } else {
      if (value < -I32 || value > I32 - 1) return undefined;
      if (key === 2) rssiHub = value;
      else rssiClient = value;
    }
  }
  if (at !== end) return undefined;
  // The general decoder's field order, so both give objects of one shape.
  const telemetry: Telemetry = {};
  if (version !== undefined) telemetry.version = version;
  if (rsrp !== undefined) telemetry.rsrp = rsrp;
  if (rssiHub !== undefined) telemetry.rssi_hub = rssiHub;
  if (rssiClient !== undefined) telemetry.rssi_client = rssiClient;
  return telemetry;
}

const NULL = 0xf6;
const I32 = 2 ** 31;

/** Recent version texts with their bytes, newest replacing the oldest. */
const KEPT_TEXTS = 16;
const keptBytes: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(KEPT_TEXTS).fill(undefined);
const keptTexts: string[] = new Array<string>(KEPT_TEXTS).fill('');
let nextKept = 0;

/** The ASCII text of `bytes[at, at + length)`, or undefined when a byte is not ASCII. */
function asciiText(bytes: Uint8Array, at: number, length: number): string | undefined {
  for (let i = 0; i < KEPT_TEXTS; i++) {
    const kept = keptBytes[i];
    if (kept === undefined || kept.length !== length) continue;
    let same = true;
    for (let j = 0; j < length; j++) {
      if (kept[j] !== bytes[at + j]) {
        same = false;
        break;
      }
    }
    if (same) return keptTexts[i];
  }
  let text = '';
  for (let j = 0; j < length; j++) {
    const byte = bytes[at + j] as number;
    if (byte >= 0x80) return undefined;
    text += String.fromCharCode(byte);
  }
  keptBytes[nextKept] = bytes.slice(at, at + length);
  keptTexts[nextKept] = text;
  nextKept = (nextKept + 1) % KEPT_TEXTS;
  return text;
}
