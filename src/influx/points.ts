import type { WritePrecisionType } from '@influxdata/influxdb-client';
import type { InfluxPoint, Telemetry, TelemetryExtraValue } from '../events.js';

/** The measurement and tag Pyrinas used, so existing Grafana panels keep working. */
export const TELEMETRY_MEASUREMENT = 'telemetry';
export const DEVICE_TAG = 'id';

export type Precision = WritePrecisionType;

/** A point that cannot be written; `reason` is short and goes into logs. */
export class InvalidPointError extends Error {
  constructor(readonly reason: string) {
    super(`invalid point: ${reason}`);
    this.name = 'InvalidPointError';
  }
}

/*
 * Line protocol is written here directly rather than through the client's
 * Point class: building a Point (field and tag objects, sorted key lists, a
 * Date) cost 4 to 8 µs per point, the largest part of the Influx runner's CPU
 * at 150k points/s. The output is byte for byte what Point.toLineProtocol
 * writes (test/unit/influx-points.test.ts compares them): tags and fields sorted by
 * key, the same escaping, `i` after integers, T/F for booleans.
 */

/** Measurement names escape comma, space and the control characters Point escapes. */
const MEASUREMENT_SPECIAL = /[, \n\r\t]/;
/** Tag keys, tag values and field keys also escape `=`. */
const KEY_SPECIAL = /[, =\n\r\t]/;
/**
 * String field values escape the quote and the backslash, as Point does, and
 * (unlike Point) a raw newline as `\n`: a newline inside the quotes is one line
 * to InfluxDB's parser but two to every tool that splits a body on newlines,
 * ours included (a rejected batch is split line by line, the spool is read
 * back by line), so a device could have written a line of its own choosing
 * through its firmware version. InfluxDB keeps `\n` as the two characters.
 */
const QUOTED_SPECIAL = /["\\\n]/;
const ESCAPES: Record<string, string> = { ',': '\\,', ' ': '\\ ', '=': '\\=', '\n': '\\n', '\r': '\\r', '\t': '\\t', '"': '\\"', '\\': '\\\\' };
const MEASUREMENT_ALL = /[, \n\r\t]/g;
const KEY_ALL = /[, =\n\r\t]/g;
const QUOTED_ALL = /["\\\n]/g;
const escapeChar = (char: string): string => ESCAPES[char] ?? char;

/** The JavaScript Date range: later timestamps cannot be written by the client either. */
const MAX_TIMESTAMP_MS = 8.64e15;

/**
 * Telemetry as Pyrinas wrote it: measurement `telemetry`, tag `id=<uid>`,
 * `version` as a string field and the radio values as integer fields (Pyrinas
 * wrote u32/i32, i.e. `80i`; a float here would be a field type conflict in an
 * existing bucket). Absent values are left out, as Pyrinas did with `None`.
 */
export function telemetryToLine(uid: string, telemetry: Telemetry, receivedAtMs: number, precision: Precision): string {
  const prefix = `${TELEMETRY_MEASUREMENT},${DEVICE_TAG}=${escapeKey(requireText(uid, 'device uid'))} `;
  let fields = '';
  // Sorted by name: rsrp, rssi_client, rssi_hub, version.
  fields = appendInt(fields, 'rsrp', telemetry.rsrp);
  fields = appendInt(fields, 'rssi_client', telemetry.rssi_client);
  fields = appendInt(fields, 'rssi_hub', telemetry.rssi_hub);
  const version = telemetry.version;
  if (version !== undefined && version !== null) fields += `${fields === '' ? '' : ','}version=${quoted(version)}`;
  if (telemetry.extra) fields = withExtraFields(telemetry);
  if (fields === '') throw new InvalidPointError('point has no fields');
  return `${prefix}${fields} ${timestampOf(receivedAtMs, precision)}`;
}

/*
 * The same line written straight into a buffer (the writer's, see
 * line-buffer.ts): the string above is a tree of pieces that the buffer's
 * UTF-8 write then flattens and copies, 0.52 µs a point together, about 6 %
 * of the broker's CPU per device telemetry message at scenario 8's rate; the
 * bytes here take a fraction of that. The uid's tag and the version's field
 * are encoded once, by the same escaping as the string, and kept; the
 * integers and the timestamp are written as ASCII. Extra fields, and a uid or
 * value telemetryToLine refuses, answer -1 and take the string path;
 * test/unit/influx-points.test.ts compares the bytes with it.
 */

/** Bytes writeTelemetryLine may write for this uid and telemetry (room to reserve before calling it). */
export function telemetryLineMaxBytes(uid: string, telemetry: Telemetry): number {
  // Escaped text takes at most 3 bytes per UTF-16 unit; names and separators, 3 integers of at most 17 characters, a timestamp of at most 25.
  return 64 + 3 * uid.length + 3 * (telemetry.version?.length ?? 0) + 3 * 17 + 25;
}

const TELEMETRY_PREFIX = `${TELEMETRY_MEASUREMENT},${DEVICE_TAG}=`;

/**
 * Writes telemetryToLine's line into `buffer` at `at` (with
 * telemetryLineMaxBytes of room); returns the bytes written, or -1 when the
 * telemetry takes the string path. Throws as telemetryToLine does for a
 * timestamp it refuses.
 */
export function writeTelemetryLine(buffer: Buffer, at: number, uid: string, telemetry: Telemetry, receivedAtMs: number, precision: Precision): number {
  if (telemetry.extra !== undefined) return -1;
  const prefix = prefixBytes(uid);
  if (prefix === undefined) return -1;
  const { rsrp, rssi_client: rssiClient, rssi_hub: rssiHub, version } = telemetry;
  if (!plainInt(rsrp) || !plainInt(rssiClient) || !plainInt(rssiHub)) return -1;
  const versionField = version !== undefined && version !== null ? versionBytes(version) : undefined;
  if (rsrp == null && rssiClient == null && rssiHub == null && versionField === undefined) return -1;
  const timestamp = timestampOf(receivedAtMs, precision);
  buffer.set(prefix, at);
  let to = at + prefix.length;
  let first = true;
  if (rsrp != null) {
    to = writeIntField(buffer, to, 'rsrp=', rsrp);
    first = false;
  }
  if (rssiClient != null) {
    if (!first) buffer[to++] = COMMA;
    to = writeIntField(buffer, to, 'rssi_client=', rssiClient);
    first = false;
  }
  if (rssiHub != null) {
    if (!first) buffer[to++] = COMMA;
    to = writeIntField(buffer, to, 'rssi_hub=', rssiHub);
    first = false;
  }
  if (versionField !== undefined) {
    if (!first) buffer[to++] = COMMA;
    buffer.set(versionField, to);
    to += versionField.length;
  }
  buffer[to++] = SPACE;
  to = writeAscii(buffer, to, timestamp);
  return to - at;
}

/*
 * A fleet has a few thousand uids and a handful of firmware versions: their
 * escaped, encoded bytes are kept (bounded; emptied when full) rather than
 * escaped and encoded for every point.
 */
const MAX_REMEMBERED = 16_384;
const prefixes = new Map<string, Buffer | null>();
const versions = new Map<string, Buffer>();

/** `telemetry,id=<uid> ` as bytes, or undefined for a uid telemetryToLine refuses (it then says why). */
function prefixBytes(uid: string): Buffer | undefined {
  let bytes = prefixes.get(uid);
  if (bytes === undefined) {
    bytes = refusedAsKey(uid) ? null : Buffer.from(`${TELEMETRY_PREFIX}${escapeKey(uid)} `, 'utf8');
    if (prefixes.size >= MAX_REMEMBERED) prefixes.clear();
    prefixes.set(uid, bytes);
  }
  return bytes ?? undefined;
}

/** `version="<version>"` as bytes. */
function versionBytes(version: string): Buffer {
  let bytes = versions.get(version);
  if (bytes === undefined) {
    bytes = Buffer.from(`version=${quoted(version)}`, 'utf8');
    if (versions.size >= MAX_REMEMBERED) versions.clear();
    versions.set(version, bytes);
  }
  return bytes;
}

const SPACE = 0x20;
const COMMA = 0x2c;
const MINUS = 0x2d;
const DIGIT_0 = 0x30;
const LETTER_I = 0x69;

/** Whether requireText refuses `uid` as a tag value. */
function refusedAsKey(uid: string): boolean {
  try {
    requireText(uid, 'device uid');
    return false;
  } catch (error) {
    if (error instanceof InvalidPointError) return true;
    throw error;
  }
}

/** Absent, or an integer telemetryToLine writes as it is. */
function plainInt(value: number | null | undefined): boolean {
  return value === undefined || value === null || Number.isSafeInteger(value);
}

function writeAscii(buffer: Buffer, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) buffer[at + i] = text.charCodeAt(i);
  return at + text.length;
}

/** `name=<value>i` for a safe integer, digits as String(value) writes them (-0 as 0). */
function writeIntField(buffer: Buffer, at: number, nameAndEquals: string, value: number): number {
  let to = writeAscii(buffer, at, nameAndEquals);
  let rest = value;
  if (rest < 0) {
    buffer[to++] = MINUS;
    rest = -rest;
  }
  let digits = 1;
  for (let scale = 10; scale <= rest; scale *= 10) digits++;
  for (let i = digits - 1; i >= 0; i--) {
    buffer[to + i] = DIGIT_0 + (rest % 10);
    rest = Math.floor(rest / 10);
  }
  to += digits;
  buffer[to++] = LETTER_I;
  return to;
}

/**
 * All fields with the configured extra ones, sorted by name as the client
 * writes them. Each extra field is written in its configured type so one
 * field keeps one InfluxDB type: `i` after an int, a float as a bare number
 * (also when its value is whole), T/F, a quoted string.
 */
function withExtraFields(telemetry: Telemetry): string {
  const parts: [string, string][] = [];
  for (const name of ['rsrp', 'rssi_client', 'rssi_hub'] as const) {
    const encoded = appendInt('', name, telemetry[name]);
    if (encoded !== '') parts.push([name, encoded]);
  }
  if (telemetry.version !== undefined && telemetry.version !== null) parts.push(['version', `version=${quoted(telemetry.version)}`]);
  for (const [name, field] of Object.entries(telemetry.extra ?? {})) {
    parts.push([name, `${escapeKey(requireText(name, 'field name'))}=${extraValue(name, field)}`]);
  }
  parts.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return parts.map(([, encoded]) => encoded).join(',');
}

function appendInt(fields: string, name: string, value: number | null | undefined): string {
  if (value === undefined || value === null) return fields;
  if (!Number.isSafeInteger(value)) throw new InvalidPointError(`telemetry field ${name} must be an integer, got ${String(value)}`);
  // String(-0) is "0", as the client writes it.
  return `${fields}${fields === '' ? '' : ','}${name}=${String(value)}i`;
}

function extraValue(name: string, field: TelemetryExtraValue): string {
  switch (field.type) {
    case 'int':
      if (!Number.isSafeInteger(field.value)) throw new InvalidPointError(`telemetry field ${name} must be an integer, got ${String(field.value)}`);
      return `${String(field.value)}i`;
    case 'float':
      if (!Number.isFinite(field.value)) throw new InvalidPointError(`telemetry field ${name} must be a finite number, got ${String(field.value)}`);
      return String(field.value);
    case 'bool':
      return field.value ? 'T' : 'F';
    case 'string':
      return quoted(field.value);
  }
}

/**
 * A point from an application runner. Numbers are written as floats (InfluxDB's
 * type for a bare number), so one field keeps one type whatever the value.
 * Tags with an empty value are left out: InfluxDB cannot store them and treats
 * a missing tag as empty anyway.
 */
export function influxPointToLine(input: InfluxPoint, nowMs: number, precision: Precision): string {
  let line = escapeMeasurement(requireText(input.measurement, 'measurement'));
  const tagKeys = Object.keys(input.tags);
  if (tagKeys.length > 1) tagKeys.sort();
  for (const key of tagKeys) {
    const value = input.tags[key];
    if (typeof value !== 'string') throw new InvalidPointError(`tag ${key} must be a string`);
    if (value !== '') line += `,${escapeKey(requireText(key, 'tag name'))}=${escapeKey(value)}`;
  }
  const fieldKeys = Object.keys(input.fields);
  if (fieldKeys.length === 0) throw new InvalidPointError(`measurement ${input.measurement} has no fields`);
  if (fieldKeys.length > 1) fieldKeys.sort();
  let separator = ' ';
  for (const key of fieldKeys) {
    const value = input.fields[key];
    line += `${separator}${escapeKey(requireText(key, 'field name'))}=`;
    separator = ',';
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) throw new InvalidPointError(`field ${key} must be a finite number, got ${String(value)}`);
      line += String(value);
    } else if (typeof value === 'boolean') line += value ? 'T' : 'F';
    else if (typeof value === 'string') line += quoted(value);
    else throw new InvalidPointError(`field ${key} must be a number, string or boolean`);
  }
  return `${line} ${timestampOf(input.timestampMs ?? nowMs, precision)}`;
}

/**
 * The last timestamp written and its text: at tens of thousands of points a
 * second most points share their millisecond with the one before, and turning
 * a 13-digit number into text took 2 % of the broker's CPU per telemetry point
 * (bench scenario 8 profile).
 */
let lastMs = Number.NaN;
let lastPrecision: Precision | undefined;
let lastText = '';

/** As the client's dateToProtocolTimestamp: whole milliseconds, scaled to the precision. */
function timestampOf(ms: number, precision: Precision): string {
  if (ms === lastMs && precision === lastPrecision) return lastText;
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_TIMESTAMP_MS) throw new InvalidPointError(`timestamp must be milliseconds since the epoch, got ${String(ms)}`);
  lastText = formatTimestamp(Math.trunc(ms), precision);
  lastMs = ms;
  lastPrecision = precision;
  return lastText;
}

function formatTimestamp(whole: number, precision: Precision): string {
  switch (precision) {
    case 'ms':
      return String(whole);
    case 'us':
      return `${whole}000`;
    case 'ns':
      return `${whole}000000`;
    case 's':
      return String(Math.floor(whole / 1000));
  }
}

function escapeMeasurement(value: string): string {
  return MEASUREMENT_SPECIAL.test(value) ? value.replace(MEASUREMENT_ALL, escapeChar) : value;
}

function escapeKey(value: string): string {
  return KEY_SPECIAL.test(value) ? value.replace(KEY_ALL, escapeChar) : value;
}

function quoted(value: string): string {
  return `"${QUOTED_SPECIAL.test(value) ? value.replace(QUOTED_ALL, escapeChar) : value}"`;
}

function requireText(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new InvalidPointError(`${what} must be a non-empty string`);
  // A trailing backslash would escape the separator after it (the client leaves it to the caller).
  if (value.endsWith('\\')) throw new InvalidPointError(`${what} must not end with a backslash`);
  return value;
}
