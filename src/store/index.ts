export type { KvStore, KvOperation } from './kv.js';
export { LevelStore } from './level-store.js';
export { RedisStore } from './redis-store.js';
