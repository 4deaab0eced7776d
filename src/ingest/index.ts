export { IngestLog, type Acknowledge, type CursorSource, type IngestLogOptions, type IngestStats } from './ingest-log.js';
export { LogReader, SegmentLog, type Durability, type Recovery } from './segment-log.js';
export { deviceEvent, type DecodeResult, type TelemetryNotes } from './device-event.js';
export type { DeviceMessage, DeviceMessageKind, LogRecord } from './record.js';
