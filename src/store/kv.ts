/**
 * The storage interface every runner uses for its state (OTA metadata, groups,
 * links, device credentials and state, recent telemetry). Two implementations:
 * the embedded LevelDB store (default) and Redis (cluster mode).
 *
 * Keys are `/`-separated strings such as `ota/image/1.2.3-4-gabc`; values are
 * JSON documents. Firmware bytes do not live here but in a BlobStore.
 */
export type KvOperation = { type: 'put'; key: string; value: unknown } | { type: 'del'; key: string };

export interface KvStore {
  open(): Promise<void>;
  close(): Promise<void>;
  get<T>(key: string): Promise<T | undefined>;
  put(key: string, value: unknown): Promise<void>;
  del(key: string): Promise<void>;
  /** Applies all operations or none. */
  batch(operations: KvOperation[]): Promise<void>;
  /** Entries whose key starts with `prefix`, in key order. */
  entries<T>(prefix: string): AsyncIterable<[string, T]>;
}
