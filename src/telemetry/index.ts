// The embedded "recent telemetry" keeper, for when no InfluxDB is configured (Nucleon chooses).
export { RecentTelemetry, type RecentTelemetryPoint } from './recent.js';
export { RecentTelemetryRunner } from './runner.js';
