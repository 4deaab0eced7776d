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
/** String field values escape the quote and the backslash. */
const QUOTED_SPECIAL = /["\\]/;
const ESCAPES: Record<string, string> = { ',': '\\,', ' ': '\\ ', '=': '\\=', '\n': '\\n', '\r': '\\r', '\t': '\\t', '"': '\\"', '\\': '\\\\' };
const MEASUREMENT_ALL = /[, \n\r\t]/g;
const KEY_ALL = /[, =\n\r\t]/g;
const QUOTED_ALL = /["\\]/g;
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
