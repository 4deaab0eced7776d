// The device page's telemetry: per numeric field, [ms, value] points of the
// last hour, first from devices.detail, then appended from the live
// 'telemetry' events. Pure (no DOM): test/unit/console-telemetry.test.ts.
import { numericFields } from '../../src/protocol/numeric-fields.js';
import type { Telemetry } from './api/types.js';

export const WINDOW_MS = 60 * 60 * 1000;
/** Points kept per field; a device reporting every second fills an hour. */
export const MAX_POINTS = 3600;
/** Fields drawn per device (the server keeps 16 by default). */
export const MAX_FIELDS = 16;

export type FieldSeries = Record<string, Array<[number, number]>>;

/** A new series object with the message's fields appended and points older than the window (or past the bound) dropped. */
export function appendTelemetry(series: FieldSeries, at: number, telemetry: Telemetry): FieldSeries {
  const fields = numericFields(telemetry);
  if (fields.length === 0) return series;
  const next: FieldSeries = { ...series };
  for (const [name, value] of fields) {
    const points = next[name];
    if (!points && Object.keys(next).length >= MAX_FIELDS) continue;
    const kept = (points ?? []).filter(([t]) => t >= at - WINDOW_MS && t !== at);
    kept.push([at, value]);
    kept.sort((a, b) => a[0] - b[0]);
    next[name] = kept.length > MAX_POINTS ? kept.slice(kept.length - MAX_POINTS) : kept;
  }
  return next;
}

/** One field's points as uPlot data (x in seconds). */
export function chartData(points: ReadonlyArray<readonly [number, number]>): [number[], number[]] {
  return [points.map(([t]) => t / 1000), points.map(([, value]) => value)];
}
