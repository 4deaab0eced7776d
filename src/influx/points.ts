import { Point, dateToProtocolTimestamp, type WritePrecisionType } from '@influxdata/influxdb-client';
import type { InfluxPoint, Telemetry } from '../events.js';

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

/**
 * Telemetry as Pyrinas wrote it: measurement `telemetry`, tag `id=<uid>`,
 * `version` as a string field and the radio values as integer fields (Pyrinas
 * wrote u32/i32, i.e. `80i`; a float here would be a field type conflict in an
 * existing bucket). Absent values are left out, as Pyrinas did with `None`.
 */
export function telemetryToLine(uid: string, telemetry: Telemetry, receivedAtMs: number, precision: Precision): string {
  const point = new Point(TELEMETRY_MEASUREMENT).tag(DEVICE_TAG, requireText(uid, 'device uid'));
  if (telemetry.version !== undefined && telemetry.version !== null) point.stringField('version', telemetry.version);
  for (const name of ['rsrp', 'rssi_hub', 'rssi_client'] as const) {
    const value = telemetry[name];
    if (value === undefined || value === null) continue;
    if (!Number.isSafeInteger(value)) throw new InvalidPointError(`telemetry field ${name} must be an integer, got ${String(value)}`);
    point.intField(name, value);
  }
  return serialize(point.timestamp(timestampOf(receivedAtMs)), precision);
}

/**
 * A point from an application runner. Numbers are written as floats (InfluxDB's
 * type for a bare number), so one field keeps one type whatever the value.
 * Tags with an empty value are left out: InfluxDB cannot store them and treats
 * a missing tag as empty anyway.
 */
export function influxPointToLine(input: InfluxPoint, nowMs: number, precision: Precision): string {
  const point = new Point(requireText(input.measurement, 'measurement'));
  for (const [key, value] of Object.entries(input.tags)) {
    if (typeof value !== 'string') throw new InvalidPointError(`tag ${key} must be a string`);
    if (value !== '') point.tag(requireText(key, 'tag name'), value);
  }
  let fields = 0;
  for (const [key, value] of Object.entries(input.fields)) {
    requireText(key, 'field name');
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) throw new InvalidPointError(`field ${key} must be a finite number, got ${String(value)}`);
      point.floatField(key, value);
    } else if (typeof value === 'boolean') point.booleanField(key, value);
    else if (typeof value === 'string') point.stringField(key, value);
    else throw new InvalidPointError(`field ${key} must be a number, string or boolean`);
    fields++;
  }
  if (fields === 0) throw new InvalidPointError(`measurement ${input.measurement} has no fields`);
  return serialize(point.timestamp(timestampOf(input.timestampMs ?? nowMs)), precision);
}

function serialize(point: Point, precision: Precision): string {
  const line = point.toLineProtocol({ convertTime: (value) => (value instanceof Date ? dateToProtocolTimestamp[precision](value) : undefined) });
  // toLineProtocol returns undefined only for a point without fields, which the callers rule out.
  if (line === undefined) throw new InvalidPointError('point has no fields');
  return line;
}

function timestampOf(ms: number): Date {
  if (!Number.isFinite(ms) || ms < 0) throw new InvalidPointError(`timestamp must be milliseconds since the epoch, got ${String(ms)}`);
  return new Date(ms);
}

function requireText(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new InvalidPointError(`${what} must be a non-empty string`);
  // A trailing backslash would escape the separator after it (the library leaves it to the caller).
  if (value.endsWith('\\')) throw new InvalidPointError(`${what} must not end with a backslash`);
  return value;
}
