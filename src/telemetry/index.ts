// Where device telemetry goes: InfluxDB when configured, else the embedded "recent" keeper.
import type { Config } from '../config/index.js';
import { InfluxRunner } from '../influx/index.js';
import type { Runner } from '../runner.js';
import { RecentTelemetryRunner } from './runner.js';

export { RecentTelemetry, type RecentTelemetryPoint } from './recent.js';
export { RecentTelemetryRunner } from './runner.js';

/** The telemetry runner for this config: Influx when `[influx]` is present, else the embedded keeper (unless N is 0). */
export function telemetryRunners(config: Readonly<Config>): Runner[] {
  if (config.influx) return [new InfluxRunner()];
  if (config.telemetry.recent_per_device > 0) return [new RecentTelemetryRunner()];
  return [];
}
