import { Decoder, Encoder } from 'cbor-x';
import type { OtaChunk, OtaCommand, OtaPackage, OtaVersion, Telemetry, TelemetryExtraValue } from '../events.js';
import { readPackedTelemetry } from './packed-telemetry.js';
import { BUILTIN_TELEMETRY_FIELDS, describeValue, TelemetryFields, typedValue, type RefusedTelemetryField } from './telemetry-fields.js';

/**
 * The Pyrinas device payloads (../shared/DESIGN.md section 1). Devices send maps
 * keyed by field index (QCBOR / serde_cbor "packed"); the field names are
 * accepted too. We send integer keys only.
 */

export class PayloadError extends Error {
  constructor(
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PayloadError';
  }
}

// Maps as Map objects keep integer and text keys apart and never touch prototypes.
const decoder = new Decoder({ mapsAsObjects: false, useRecords: false });
const encoder = new Encoder({ useRecords: false, mapsAsObjects: false, tagUint8Array: false, variableMapSize: true });

type Fields = Map<unknown, unknown>;

/**
 * Longest version or image id a device may send (telemetry key 0, OTA request
 * key 1). A real one, `major.minor.patch-commit-hash`, is at most 48
 * characters (parseVersionId). The text ends up in the store (firmware state,
 * recent telemetry, the fleet view), in InfluxDB and in every `devices.list`
 * answer, so a device must not decide its size: one 200 KB version made one
 * device's recent telemetry 20 MB.
 */
export const MAX_VERSION_LENGTH = 64;

function decodeMap(bytes: Uint8Array, what: string): Fields {
  if (bytes.length === 0) throw new PayloadError('empty', `${what}: empty payload`);
  let value: unknown;
  try {
    value = decoder.decode(bytes);
  } catch (error) {
    throw new PayloadError('bad_cbor', `${what}: not valid CBOR (${(error as Error).message})`, { cause: error });
  }
  if (!(value instanceof Map)) throw new PayloadError('not_a_map', `${what}: expected a CBOR map, got ${typeName(value)}`);
  return value;
}

/** The field by index or by name; `null` (serde's None) reads as absent. */
function field(map: Fields, index: number, name: string): unknown {
  const value = map.has(index) ? map.get(index) : map.get(name);
  return value === null ? undefined : value;
}

function optionalText(map: Fields, index: number, name: string, what: string, maxLength: number): string | undefined {
  const value = field(map, index, name);
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new PayloadError('bad_field', `${what}: field ${name} must be text, got ${describeValue(value)}`);
  if (value.length > maxLength) throw new PayloadError('field_too_long', `${what}: field ${name} is ${value.length} characters long, at most ${maxLength} allowed`);
  return value;
}

function optionalInt(map: Fields, index: number, name: string, what: string, min: number, max: number): number | undefined {
  const raw = field(map, index, name);
  if (raw === undefined) return undefined;
  const value = typeof raw === 'bigint' ? Number(raw) : raw;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new PayloadError('bad_field', `${what}: field ${name} must be an integer ${min}..${max}, got ${describeValue(raw)}`);
  }
  return value;
}

const I32 = 2 ** 31;
const U32 = 2 ** 32 - 1;

/** Telemetry and what did not make it into it (the caller counts and logs these). */
export interface DecodedTelemetry {
  telemetry: Telemetry;
  /** Keys neither built in nor configured, in the order sent. */
  readonly unknownKeys: readonly (number | string)[];
  /** Configured fields whose value had another type. */
  readonly refused: readonly RefusedTelemetryField[];
}

const NO_KEYS: readonly (number | string)[] = Object.freeze([]);
const NONE_REFUSED: readonly RefusedTelemetryField[] = Object.freeze([]);

export function decodeTelemetry(bytes: Uint8Array, fields: TelemetryFields = TelemetryFields.none): Telemetry {
  return readTelemetry(bytes, fields).telemetry;
}

/**
 * The four Pyrinas fields decode exactly as Pyrinas does (a bad one refuses
 * the message: PayloadError). Configured extra fields are taken by their key;
 * one with a value of another type is left out and reported, not the whole
 * message, so a firmware's mistake in a new field does not hide its version
 * and radio values.
 */
export function readTelemetry(bytes: Uint8Array, fields: TelemetryFields = TelemetryFields.none): DecodedTelemetry {
  // Only built-in keys, so the configured fields do not matter to it.
  const packed = readPackedTelemetry(bytes, MAX_VERSION_LENGTH);
  if (packed !== undefined) return { telemetry: packed, unknownKeys: NO_KEYS, refused: NONE_REFUSED };
  return readTelemetryDecoded(bytes, fields);
}

/** readTelemetry through the general CBOR decoder: every shape, and every refusal's reason (exported for the tests that hold the packed path to it). */
export function readTelemetryDecoded(bytes: Uint8Array, fields: TelemetryFields = TelemetryFields.none): DecodedTelemetry {
  const what = 'telemetry';
  const map = decodeMap(bytes, what);
  const telemetry: Telemetry = {};
  const version = optionalText(map, 0, 'version', what, MAX_VERSION_LENGTH);
  // Pyrinas's rsrp is a u32: a float (such as -95.5) is refused, with the value in the message.
  const rsrp = optionalInt(map, 1, 'rsrp', what, 0, U32);
  const rssiHub = optionalInt(map, 2, 'rssi_hub', what, -I32, I32 - 1);
  const rssiClient = optionalInt(map, 3, 'rssi_client', what, -I32, I32 - 1);
  if (version !== undefined) telemetry.version = version;
  if (rsrp !== undefined) telemetry.rsrp = rsrp;
  if (rssiHub !== undefined) telemetry.rssi_hub = rssiHub;
  if (rssiClient !== undefined) telemetry.rssi_client = rssiClient;
  const unknownKeys: (number | string)[] = [];
  const refused: RefusedTelemetryField[] = [];
  let extra: Record<string, TelemetryExtraValue> | undefined;
  for (const [key, raw] of map) {
    if (isBuiltinKey(key)) continue;
    const spec = fields.get(key);
    if (!spec) {
      unknownKeys.push(typeof key === 'number' || typeof key === 'string' ? key : describeValue(key));
      continue;
    }
    // serde's None, as for the built-in fields: absent.
    if (raw === null) continue;
    const typed = typedValue(spec, raw);
    if (typed === undefined) refused.push({ key: spec.key, name: spec.name, type: spec.type, value: describeValue(raw) });
    else (extra ??= {})[spec.name] = typed;
  }
  if (extra) telemetry.extra = extra;
  return { telemetry, unknownKeys, refused };
}

/** Built-in keys by index and by name: looked up for every key of every telemetry message. */
const BUILTIN_KEYS: ReadonlySet<unknown> = new Set(BUILTIN_TELEMETRY_FIELDS.flatMap((field) => [field.index, field.name]));

function isBuiltinKey(key: unknown): boolean {
  return BUILTIN_KEYS.has(key);
}

export interface DecodedOtaRequest {
  cmd: OtaCommand;
  id?: string;
  startPos?: number;
  endPos?: number;
}

const OTA_COMMANDS: readonly OtaCommand[] = ['Check', 'Done', 'DownloadBytes'];

export function decodeOtaRequest(bytes: Uint8Array): DecodedOtaRequest {
  const what = 'ota request';
  const map = decodeMap(bytes, what);
  const cmdIndex = optionalInt(map, 0, 'cmd', what, 0, OTA_COMMANDS.length - 1);
  if (cmdIndex === undefined) throw new PayloadError('bad_field', `${what}: field cmd is missing`);
  const request: DecodedOtaRequest = { cmd: OTA_COMMANDS[cmdIndex] as OtaCommand };
  const id = optionalText(map, 1, 'id', what, MAX_VERSION_LENGTH);
  const startPos = optionalInt(map, 2, 'start_pos', what, 0, U32);
  const endPos = optionalInt(map, 3, 'end_pos', what, 0, U32);
  if (id !== undefined) request.id = id;
  if (startPos !== undefined) request.startPos = startPos;
  if (endPos !== undefined) request.endPos = endPos;
  return request;
}

/** Pyrinas carries the short git hash as an array of 8 byte values. */
function hashBytes(hash: string): number[] {
  const bytes = [...Buffer.from(hash, 'ascii')].slice(0, 8);
  while (bytes.length < 8) bytes.push(0);
  return bytes;
}

function versionMap(version: OtaVersion): Map<number, unknown> {
  return new Map<number, unknown>([
    [0, version.major],
    [1, version.minor],
    [2, version.patch],
    [3, version.commit],
    [4, hashBytes(version.hash)],
  ]);
}

/**
 * Encodes the package exactly as serde_cbor packed encodes Pyrinas's OtaUpdate
 * (vector `ota_response_packed`). The optional URL goes under key 5, which
 * Pyrinas firmware ignores.
 */
export function encodeOtaPackage(pkg: OtaPackage): Buffer {
  const map = new Map<number, unknown>([
    [0, pkg.id],
    [1, versionMap(pkg.version)],
    [2, null],
    [3, pkg.size],
    [4, pkg.dateAdded],
  ]);
  if (pkg.url !== undefined && pkg.url !== '') map.set(5, pkg.url);
  return encoder.encode(map);
}

export function encodeOtaChunk(chunk: OtaChunk): Buffer {
  const data = Buffer.isBuffer(chunk.data) ? chunk.data : Buffer.from(chunk.data.buffer, chunk.data.byteOffset, chunk.data.byteLength);
  return encoder.encode(
    new Map<number, unknown>([
      [0, chunk.startPos],
      [1, chunk.endPos],
      [2, data],
      [3, chunk.len],
    ]),
  );
}

/** For tests and tools: decodes what we send, with the same Map shape. */
export function decodeCbor(bytes: Uint8Array): unknown {
  return decoder.decode(bytes);
}

export function encodeCbor(value: unknown): Buffer {
  return encoder.encode(value);
}

/** Parses `major.minor.patch-commit-hash`, e.g. `1.2.3-4-g965b9df`. */
export function parseVersionId(id: string): OtaVersion | undefined {
  const match = /^(\d{1,9})\.(\d{1,9})\.(\d{1,9})-(\d{1,9})-([0-9A-Za-z]{1,8})$/.exec(id);
  if (!match) return undefined;
  const [, major, minor, patch, commit, hash] = match;
  return { major: Number(major), minor: Number(minor), patch: Number(patch), commit: Number(commit), hash: hash ?? '' };
}

/** Orders versions by major, minor, patch, then commit count. */
export function compareVersions(a: OtaVersion, b: OtaVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch || a.commit - b.commit;
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (value instanceof Map) return 'a map';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'a byte string';
  if (typeof value === 'string') return 'text';
  return typeof value;
}
