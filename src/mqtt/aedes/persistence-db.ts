/*
 * The database aedes-persistence-level is handed: its writes (put, del and
 * both forms of batch) go through a WriteCombiner (src/mqtt/write-combiner.ts),
 * so the writes of one loop turn are one LevelDB batch; its reads see writes
 * still being combined. It relies on which methods of the database the
 * library calls and how (utf8 keys, Buffer values, `valueEncoding: 'buffer'`):
 * a method it has not been written for fails with DependencyMismatchError
 * naming the package, rather than reaching the database around the combiner.
 * At start-up the stores' setup exercises it (loading subscriptions, the
 * queue-layout round trip of queue-layout.ts).
 */
import type { ClassicLevel } from 'classic-level';
import { DependencyMismatchError } from '../../errors.js';
import { WriteCombiner, type WriteOp } from '../write-combiner.js';
import { installedVersion } from './versions.js';

type Level = ClassicLevel<string, Buffer>;

interface BatchOpInput {
  type: string;
  key: unknown;
  value?: unknown;
}

interface ChainedBatch {
  put(key: string, value: Uint8Array): ChainedBatch;
  del(key: string): ChainedBatch;
  write(): Promise<void>;
}

/** The methods aedes-persistence-level 9.2.0 calls on its database. */
export interface PersistenceDb {
  get(key: string, options?: { valueEncoding?: string }): Promise<Buffer | undefined>;
  put(key: string, value: Uint8Array, options?: { valueEncoding?: string }): Promise<void>;
  del(key: string): Promise<void>;
  batch(): ChainedBatch;
  batch(ops: BatchOpInput[], options?: { valueEncoding?: string }): Promise<void>;
  clear(range: { gte?: string; gt?: string; lte?: string; lt?: string }): Promise<void>;
  values(options: object): AsyncIterable<Buffer>;
  close(): Promise<void>;
}

const METHODS: ReadonlySet<string> = new Set<keyof PersistenceDb>(['get', 'put', 'del', 'batch', 'clear', 'values', 'close']);

function mismatch(what: string): DependencyMismatchError {
  return new DependencyMismatchError('aedes-persistence-level', installedVersion('aedes-persistence-level'), `${what} (src/mqtt/aedes/persistence-db.ts)`);
}

function checkEncoding(options: { valueEncoding?: string } | undefined): void {
  const encoding = options?.valueEncoding;
  if (encoding !== undefined && encoding !== 'buffer' && encoding !== 'binary') throw mismatch(`it asked for valueEncoding "${encoding}"`);
}

function toOp(input: BatchOpInput): WriteOp {
  if (typeof input.key !== 'string') throw mismatch('it wrote a key that is not a string');
  if (input.type === 'del') return { type: 'del', key: input.key };
  if (input.type === 'put' && input.value instanceof Uint8Array) return { type: 'put', key: input.key, value: input.value };
  throw mismatch(`it wrote a ${input.type} operation whose value is not a Buffer`);
}

async function* valuesAfter(pending: Promise<void>, db: Level, options: object): AsyncGenerator<Buffer> {
  await pending;
  for await (const value of db.values(options as Parameters<Level['values']>[0])) yield value as Buffer;
}

/**
 * One atomic batch, written through abstract-level's chained batch: each op
 * goes straight to the native batch, in the database's own encodings (utf8
 * keys, Buffer values). Its array form copies every op into a new object
 * first: 1.5–4.5× the CPU per op in two runs on this machine (1,000-op
 * batches of 120-byte puts and dels).
 */
function writeChained(db: Level, ops: WriteOp[]): Promise<void> {
  const batch = db.batch();
  for (const op of ops) {
    if (op.type === 'put') batch.put(op.key, Buffer.isBuffer(op.value) ? op.value : Buffer.from(op.value.buffer, op.value.byteOffset, op.value.byteLength));
    else batch.del(op.key);
  }
  return batch.write();
}

export interface PersistenceDbOptions {
  /** Operations per combined batch before it is written without waiting for the turn to end. */
  maxBatchOps: number;
}

/**
 * The database for aedes-persistence-level over `db`, and the combiner its
 * writes go through.
 */
export function combiningPersistenceDb(db: Level, options: PersistenceDbOptions): { db: PersistenceDb; combiner: WriteCombiner } {
  const combiner = new WriteCombiner({ batch: (ops) => writeChained(db, ops) }, { maxOps: options.maxBatchOps });
  const chained = (): ChainedBatch => {
    const ops: WriteOp[] = [];
    const batch: ChainedBatch = {
      put: (key, value) => {
        ops.push(toOp({ type: 'put', key, value }));
        return batch;
      },
      del: (key) => {
        ops.push(toOp({ type: 'del', key }));
        return batch;
      },
      write: () => combiner.write(ops),
    };
    return batch;
  };
  const facade: PersistenceDb = {
    get: async (key, getOptions) => {
      checkEncoding(getOptions);
      const pending = combiner.pendingValue(key);
      if (pending !== undefined) return pending.value === undefined ? undefined : Buffer.from(pending.value.buffer, pending.value.byteOffset, pending.value.byteLength);
      // Read on the event loop: a point read of a small value the library
      // wrote moments ago (LevelDB's memtable or block cache) costs ~4 µs of
      // CPU here, the thread pool's round trip 16–105 µs (two thread wake-ups).
      return db.getSync(key, { valueEncoding: 'buffer' });
    },
    put: (key, value, putOptions) => {
      checkEncoding(putOptions);
      return combiner.write([toOp({ type: 'put', key, value })]);
    },
    del: (key) => combiner.write([toOp({ type: 'del', key })]),
    batch: ((ops?: BatchOpInput[], batchOptions?: { valueEncoding?: string }) => {
      if (ops === undefined) return chained();
      checkEncoding(batchOptions);
      return combiner.write(ops.map(toOp));
    }) as PersistenceDb['batch'],
    // A clear follows the writes issued before it, as it would on the database itself.
    clear: async (range) => {
      await combiner.flushed();
      await db.clear(range);
    },
    // A read follows the writes issued before it, as on the database itself
    // (a persistent session reconnecting reads its queue while the PUBACKs
    // of its last connection may still be being written).
    values: (valueOptions) => valuesAfter(combiner.flushed(), db, valueOptions),
    close: async () => {
      await combiner.flushed();
      await db.close();
    },
  };
  const guarded = new Proxy(facade, {
    get(target, property, receiver) {
      // `then` is looked up by anything that resolves a promise with this object.
      if (typeof property === 'string' && property !== 'then' && !METHODS.has(property)) throw mismatch(`it used the database's "${property}", which Nucleon does not pass through`);
      return Reflect.get(target, property, receiver) as unknown;
    },
  });
  return { db: guarded, combiner };
}
