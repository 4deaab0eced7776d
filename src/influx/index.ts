// Telemetry and application points to InfluxDB (README "Telemetry and InfluxDB").
export { InfluxRunner } from './runner.js';
export { InfluxWriter, type InfluxWriterOptions, type LineSink } from './writer.js';
export { LineBatch, LineBuffer } from './line-buffer.js';
export { InfluxHttpSink, type WriteOutcome, type InfluxTarget } from './http-sink.js';
export { Spool, type SpoolRecord, type SpoolOptions } from './spool.js';
export { InfluxMetrics, type DropReason } from './metrics.js';
export { telemetryToLine, influxPointToLine, InvalidPointError, TELEMETRY_MEASUREMENT, DEVICE_TAG, type Precision } from './points.js';
