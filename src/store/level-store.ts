import { mkdir } from 'node:fs/promises';
import { ClassicLevel } from 'classic-level';
import type { KvOperation, KvStore } from './kv.js';

/** The embedded default: LevelDB in `<store.path>/kv`, crash-safe through its write-ahead log. */
export class LevelStore implements KvStore {
  private readonly db: ClassicLevel<string, string>;

  constructor(private readonly dir: string) {
    this.db = new ClassicLevel<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  }

  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await this.db.open();
  }

  async close(): Promise<void> {
    if (this.db.status === 'open' || this.db.status === 'opening') await this.db.close();
  }

  async get<T>(key: string): Promise<T | undefined> {
    const value = await this.db.get(key);
    return value === undefined ? undefined : (JSON.parse(value) as T);
  }

  async put(key: string, value: unknown): Promise<void> {
    await this.db.put(key, JSON.stringify(value), { sync: true });
  }

  async del(key: string): Promise<void> {
    await this.db.del(key, { sync: true });
  }

  async batch(operations: KvOperation[]): Promise<void> {
    if (operations.length === 0) return;
    await this.db.batch(
      operations.map((op) => (op.type === 'put' ? { type: 'put' as const, key: op.key, value: JSON.stringify(op.value) } : { type: 'del' as const, key: op.key })),
      { sync: true },
    );
  }

  async *entries<T>(prefix: string): AsyncIterable<[string, T]> {
    // '\uffff' sorts after every key that starts with the prefix.
    for await (const [key, value] of this.db.iterator({ gte: prefix, lt: `${prefix}\uffff` })) {
      yield [key, JSON.parse(value) as T];
    }
  }
}
