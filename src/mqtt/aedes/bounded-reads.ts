/*
 * aedes reads a connection in batches: `conn.read(null)` takes everything
 * the socket has buffered, the parser turns it into packets, and the next
 * read waits until every packet of the batch has called back (for a device's
 * publish: once it is in the ingest log and routed). A device that writes
 * faster than that (QoS 0 has no acknowledgement to pace it) has tens of
 * kilobytes buffered per read, so hundreds of its messages were in the heap
 * at once, each waiting for the disk and the router; across 64 such devices
 * tens of thousands of messages lived long enough to be promoted out of the
 * young generation, and the scavenges that copied them, and the mark-compacts
 * that freed them, took about a third of the broker's CPU (bench scenario 10,
 * QoS 0: 20 µs per message, heap growing to 200 MB in a 2 s burst).
 *
 * Here each read takes at most READ_BATCH_BYTES. What is not read yet stays
 * in the socket's buffer (and past its high-water mark in the kernel's, so
 * TCP slows the device down) instead of in the heap as parsed packets. The
 * loop is aedes' `nextBatch` with that one bound, plus what the bound needs:
 * a read that ends inside a packet completes no packet, so no callback would
 * read on, and the loop reads again at once.
 */
import type { Aedes } from 'aedes';
import { DependencyMismatchError } from '../../errors.js';
import { adjustNewClients } from './new-clients.js';
import { bodyOf } from './method-body.js';
import { installedVersion } from './versions.js';

/**
 * At most this much of a connection is parsed at a time: a QoS 1 window of
 * 32 small messages (about 3 KB) still arrives in one read, and a 4 KB batch
 * of 64-byte QoS 0 messages is about 50 in the heap per connection. Bench
 * scenario 10, QoS 0, Nucleon only, quick runs: 19–20 µs broker CPU per
 * message unbounded, 13–14 µs at 4 KB, 16 µs at 8 KB; at 1 KB and below the
 * QoS 1 windows were cut and QoS 1 cost 24–29 µs against 17.
 */
export const READ_BATCH_BYTES = 4096;

/** The parts of aedes 1.x's Client the bounded read replaces or reads. */
interface BatchingClient {
  conn: {
    readableLength: number;
    destroyed: boolean;
    read(size?: number | null): Buffer | string | null;
    listeners(event: string): ((...args: unknown[]) => void)[];
    removeListener(event: string, listener: (...args: unknown[]) => void): unknown;
    on(event: string, listener: (...args: unknown[]) => void): unknown;
  };
  _parser: { parse(buffer: Buffer | string): unknown };
  _paused: boolean;
  _parsingBatch: number;
  _nextBatch: (error?: Error) => void;
  emit(event: 'error', error: Error): boolean;
  /** Packets let go by readAhead whose callbacks have not come yet (set on bounded clients only). */
  [AHEAD]?: number;
}

/** aedes 1.2's `nextBatch`, whitespace removed: what the guard expects before replacing it. */
const EXPECTED_NEXT_BATCH =
  'if(err){that.emit(\'error\',err)return}constclient=thatif(client._paused){return}that._parsingBatch--if(that._parsingBatch<=0){that._parsingBatch=0constbuf=client.conn.read(null)if(buf){client._parser.parse(buf)}}';

/**
 * The client whose parser is running now. A packet handler that calls back
 * at once (an allowed QoS 0 publish) runs the client's nextBatch inside
 * `parse()`; aedes' read found nothing more there (it had taken everything),
 * but a bounded read would, and mqtt-packet's parser is not re-entrant (its
 * `_newPacket` resets the state after emitting). Such a call only counts its
 * packet; the loop below reads on once `parse()` has returned.
 */
let parsing: BatchingClient | undefined;

/** aedes' nextBatch as every packet's callback (and aedes' resume), with reads of at most READ_BATCH_BYTES (`this` is the client: it is bound per client). */
function nextBoundedBatch(this: BatchingClient, error?: Error): void {
  if (error) {
    this.emit('error', error);
    return;
  }
  if (this._paused) return;
  const ahead = this[AHEAD] ?? 0;
  if (ahead > 0) {
    // A packet readAhead let go: it no longer counts in the batch. (Callbacks carry no packet, so this may be
    // another packet's callback; then the batch waits for one more callback than it needs: a later read, never an early one.)
    this[AHEAD] = ahead - 1;
    return;
  }
  this._parsingBatch--;
  if (this._parsingBatch > 0) return;
  this._parsingBatch = 0;
  if (parsing !== this) readOn(this);
}

/** Reads and parses bounded chunks until packets are pending, the client is paused, or nothing is buffered. */
function readOn(client: BatchingClient): void {
  const conn = client.conn;
  const outer = parsing;
  parsing = client;
  try {
    for (;;) {
      const buffered = conn.readableLength;
      const chunk = conn.read(buffered > READ_BATCH_BYTES ? READ_BATCH_BYTES : null);
      if (chunk === null) return;
      client._parser.parse(chunk);
      // Packets still pending: their callbacks read on. None (all called back, or the read ended inside a packet): read on here.
      // A packet that closed the client (a protocol error) ends the batch: what is left of a destroyed socket is not parsed.
      if (client._parsingBatch > 0 || client._paused || conn.destroyed || conn.readableLength === 0) return;
    }
  } finally {
    parsing = outer;
  }
}

/**
 * Read ahead of the disk. A device's publish calls back (and aedes reads its
 * connection on) only once its message is durable, so with durability
 * "fsync" a device's next messages waited in the socket for every group
 * commit of the log before they were even parsed: at a paced 5,000 msg/s the
 * log's write latency was in their latency to subscribers, and a commit
 * spacing (segment-log.ts) doubled the p99 for that reason alone. The
 * publish path calls `readAhead` for a device message the log has taken and
 * whose acknowledgement still waits for the disk: the message stops counting
 * in its read batch, so the connection reads on. Its callback (the PUBACK)
 * still comes only once it is durable. At most MAX_READ_AHEAD packets per
 * connection are let go this way before their callbacks come: past that the
 * connection waits for the disk as before, which bounds what one connection
 * has in the heap.
 */
const AHEAD = Symbol('nucleon.readAhead');

/** Packets per connection let go ahead of their callbacks at most (a QoS 1 window of 32 fits twice). */
export const MAX_READ_AHEAD = 64;

/**
 * Lets `client` read on as if the packet being handled had called back;
 * its callback, when it comes, then does not count again. A client that does
 * not read in bounded batches, or has MAX_READ_AHEAD packets let go already,
 * is left as it is (false).
 */
export function readAhead(client: object): boolean {
  const batching = client as BatchingClient;
  const ahead = batching[AHEAD];
  if (ahead === undefined || ahead >= MAX_READ_AHEAD || batching._parsingBatch <= 0 || batching._paused) return false;
  batching[AHEAD] = ahead + 1;
  batching._parsingBatch--;
  // Inside this client's parse (the usual case: the publish path runs from it) the read loop goes on by itself.
  if (batching._parsingBatch === 0 && parsing !== batching) readOn(batching);
  return true;
}

/** Marks aedes.handle once it bounds its clients' reads. */
const BOUNDED_READS = Symbol('nucleon.boundedReads');

/**
 * The stream's 'readable' listener: new data, which is not a packet's
 * callback. aedes uses one function for both, so a 'readable' counted as a
 * callback. With packets let go by readAhead that cost a stall: the event
 * used up a let-go packet's count instead of reading, and a device's next
 * message waited in the buffer for the previous one's disk write (bench
 * scenario 4 with a 2 ms commit spacing: 2 % of messages read more than
 * 2 ms after they were sent, p99 4.9-6.6 ms against 0.65 without the
 * spacing; the wait was between the device's send and the read). It also
 * read on past packets still pending (aedes' quirk), through back-pressure
 * that holds a device's publishes unanswered. Here new data is read at once
 * when no packet of the batch is pending, and otherwise left to the pending
 * packets' callbacks.
 */
function onReadable(this: BatchingClient): void {
  if (this._paused || this._parsingBatch > 0) return;
  if (parsing !== this) readOn(this);
}

function bound(client: BatchingClient): void {
  const original = client._nextBatch;
  client.conn.removeListener('readable', original as (...args: unknown[]) => void);
  client.conn.on('readable', onReadable.bind(client));
  client._nextBatch = nextBoundedBatch.bind(client);
  // aedes starts at 1, which its first 'readable' took away: nothing is pending before the first read.
  client._parsingBatch = 0;
  client[AHEAD] = 0;
}

/**
 * Checks the probe client (made by aedes.handle on an in-memory stream) reads
 * as aedes 1.2 does, then wraps this broker's `handle` (once) so every new
 * client reads in bounded batches. Throws DependencyMismatchError when the
 * client does not look as expected.
 */
export function boundReads(aedes: Aedes, probe: object): void {
  const client = probe as Partial<BatchingClient>;
  const next = client._nextBatch;
  const shapeOk =
    typeof next === 'function' &&
    bodyOf(next) === EXPECTED_NEXT_BATCH &&
    typeof client._parsingBatch === 'number' &&
    typeof client._parser?.parse === 'function' &&
    typeof client.conn?.readableLength === 'number' &&
    client.conn.listeners('readable').includes(next as (...args: unknown[]) => void);
  if (!shapeOk) throw new DependencyMismatchError('aedes', installedVersion('aedes'), "a client's nextBatch is not aedes 1.2's (read everything buffered, parse it, next read once the batch's packets called back), or is not its stream's 'readable' listener");
  adjustNewClients(aedes, BOUNDED_READS, (made) => bound(made as BatchingClient));
}
