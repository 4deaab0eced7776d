export * from './cbor.js';
export * from './topics.js';
export * from './telemetry-fields.js';
