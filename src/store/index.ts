export type { KvStore, KvOperation } from './kv.js';
export { LevelStore } from './level-store.js';
