/*
 * The bytes an aedes mqtt-packet parser has read and not yet parsed, in place
 * of bl's BufferList (lean-parser.ts installs it). mqtt-packet calls eight
 * members of its list: append, length, readUInt8/16BE/32BE, slice, toString
 * and consume. bl's consume takes a new Buffer view of the rest of the first
 * chunk each time, and the parser consumes three times per packet (its fixed
 * header byte, its length, its body): about 290 of the 3,300 bytes the broker
 * allocated per message in bench scenario 10's QoS 0 clean case. Here the
 * consumed bytes of the first chunk are an offset instead.
 *
 * Reads inside the first chunk read it where it lies; a read or slice that
 * crosses into the next chunks first joins the chunks it needs into one (a
 * packet split across socket reads: at most one copy of those bytes, as bl's
 * own slice across chunks copies them). Everything else answers as bl does
 * (test/unit/parser-input.test.ts compares every offset, range and split with
 * bl): a slice is clamped to the bytes there, a read past the end throws
 * Buffer's RangeError. A reversed range, which the parser never asks for, is
 * empty (bl's answer to one depends on where its chunks end).
 */
export class ParserInput {
  /** Chunks appended and not wholly consumed; the first one from `head` on. */
  _bufs: Buffer[] = [];
  /** Bytes not consumed. */
  length = 0;
  /** Bytes of `_bufs[0]` already consumed. */
  private head = 0;

  append(chunk: Buffer): this {
    if (!Buffer.isBuffer(chunk)) throw new TypeError('ParserInput takes Buffers only (what a socket read gives)');
    if (chunk.length === 0) return this;
    this._bufs.push(chunk);
    this.length += chunk.length;
    return this;
  }

  readUInt8(offset = 0): number {
    if (offset < 0) throw new RangeError(`offset ${String(offset)} is before the first byte`);
    return this.first(offset + 1).readUInt8(this.head + offset);
  }

  readUInt16BE(offset = 0): number {
    if (offset < 0) throw new RangeError(`offset ${String(offset)} is before the first byte`);
    return this.first(offset + 2).readUInt16BE(this.head + offset);
  }

  readUInt32BE(offset = 0): number {
    if (offset < 0) throw new RangeError(`offset ${String(offset)} is before the first byte`);
    return this.first(offset + 4).readUInt32BE(this.head + offset);
  }

  /** The bytes [start, end) (clamped to what is there) as a view where they lie in one chunk. */
  slice(start?: number, end?: number): Buffer {
    const [from, to] = this.range(start, end);
    if (from >= to) return Buffer.alloc(0);
    // bl hands the one chunk of a one-chunk list itself when asked for all of it.
    return this.first(to).subarray(this.head + from, this.head + to);
  }

  toString(encoding?: BufferEncoding, start?: number, end?: number): string {
    const [from, to] = this.range(start, end);
    if (from >= to) return '';
    return this.first(to).toString(encoding, this.head + from, this.head + to);
  }

  consume(bytes: number): this {
    // bl's: a fraction is cut off, NaN and anything not positive consume nothing.
    let left = Math.trunc(bytes);
    if (!(left > 0)) return this;
    left = Math.min(left, this.length);
    this.length -= left;
    while (left > 0) {
      const first = this._bufs[0];
      if (first === undefined) break;
      const rest = first.length - this.head;
      if (left < rest) {
        this.head += left;
        return this;
      }
      left -= rest;
      this._bufs.shift();
      this.head = 0;
    }
    // An emptied array keeps its grown backing store (152 B) for as long as the connection is idle; a fresh one has none.
    if (this._bufs.length === 0) this._bufs = [];
    return this;
  }

  /** bl's slice arithmetic: a negative bound counts from the end, then both are clamped to what is there. */
  private range(start: number | undefined, end: number | undefined): [number, number] {
    let from = typeof start === 'number' && !Number.isNaN(start) ? Math.trunc(start) : 0;
    let to = typeof end === 'number' && !Number.isNaN(end) ? Math.trunc(end) : this.length;
    if (from < 0) from = Math.max(0, from + this.length);
    if (to < 0) to += this.length;
    if (to > this.length) to = this.length;
    return [from, to];
  }

  /**
   * The first chunk, holding at least `bytes` unconsumed bytes from `head` if
   * the list has them: chunks after it are joined into it as far as needed.
   * With fewer bytes in the list, all of them (a read then throws Buffer's RangeError).
   */
  private first(bytes: number): Buffer {
    const first = this._bufs[0];
    if (first !== undefined && this.head + bytes <= first.length) return first;
    if (first === undefined) return EMPTY;
    let have = first.length - this.head;
    let count = 1;
    while (have < bytes && count < this._bufs.length) have += (this._bufs[count++] as Buffer).length;
    if (count === 1) return first;
    const joined = Buffer.concat([first.subarray(this.head), ...this._bufs.slice(1, count)], have);
    this._bufs.splice(0, count, joined);
    this.head = 0;
    return joined;
  }
}

const EMPTY = Buffer.alloc(0);
