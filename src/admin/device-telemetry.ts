import type { InfluxHistory } from './influx-history.js';
import type { TelemetryRings, TelemetrySeries } from './telemetry-rings.js';

/**
 * The device page's telemetry and where it came from: `influx` with [influx]
 * configured, `recent` (the embedded store) without it or when InfluxDB
 * failed, with `error` saying why.
 */
export type DeviceTelemetry = TelemetrySeries & { source: 'influx' | 'recent'; error?: string };

/** History from InfluxDB when there is one, the recent store when not or when InfluxDB fails (onError is told). */
export async function readDeviceTelemetry(
  uid: string,
  now: number,
  sources: { recent: TelemetryRings; influx: InfluxHistory | undefined; onError: (error: Error) => void },
): Promise<DeviceTelemetry> {
  if (sources.influx) {
    try {
      return { ...(await sources.influx.read(uid, now)), source: 'influx' };
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      sources.onError(failure);
      return { ...sources.recent.read(uid, now), source: 'recent', error: failure.message };
    }
  }
  return { ...sources.recent.read(uid, now), source: 'recent' };
}
