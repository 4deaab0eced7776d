export * from './cbor.js';
export * from './topics.js';
