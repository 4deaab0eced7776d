/*
 * aedes' mqtt-packet parsers buffer input in a `bl` BufferList (a plain one
 * since lean-parser.ts; bl's BufferListStream copied these methods when bl
 * loaded and never sees this patch). BufferList's readers allocate on every
 * call, even when the bytes lie in the list's first buffer, which is nearly
 * always:
 *
 * - readUInt8 / readUInt16BE / readUInt32BE slice a new Buffer view and then
 *   read from it: several Buffer objects per MQTT packet just to read its
 *   header bytes, packet id and topic length (about 0.9 KB of garbage per
 *   packet in bench scenario 4's allocation profile);
 * - slice (a PUBLISH payload) and toString (its topic) first find the offset
 *   as a new two-element array (twice for slice's copy), and toString slices a
 *   view only to decode it (bl's `copy` and `_offset` were 9 % of the bytes
 *   allocated in bench scenario 10, QoS 0);
 * - consume goes through Buffer#slice, a wrapper of subarray.
 *
 * Within the first buffer the fast paths read it directly: the same result
 * (test/unit/fast-buffer-list.test.ts compares every offset and split) without
 * the allocations. Anything else takes bl's own path.
 */
import { createRequire } from 'node:module';

interface BufferListInternals {
  _bufs: Buffer[];
  length: number;
}
type Reader = (this: BufferListInternals, offset?: number) => number;
type Slicer = (this: BufferListInternals, start?: number, end?: number) => Buffer;
type Decoder = (this: BufferListInternals, encoding?: BufferEncoding, start?: number, end?: number) => string;
type Consumer = (this: BufferListInternals, bytes: number) => BufferListInternals;

const WIDTHS = { readUInt8: 1, readUInt16BE: 2, readUInt32BE: 4 } as const;

/** Every method this file gives a fast path, in the order installed. */
export const FAST_METHODS = ['readUInt8', 'readUInt16BE', 'readUInt32BE', 'slice', 'toString', 'consume'] as const;

/** Whether [start, end) is a non-empty range inside the first buffer (bl's own arithmetic handles the rest). */
function inFirst(list: BufferListInternals, start: unknown, end: unknown): list is BufferListInternals & { _bufs: [Buffer, ...Buffer[]] } {
  const first = list._bufs[0];
  return first !== undefined && typeof start === 'number' && typeof end === 'number' && start >= 0 && start < end && end <= first.length;
}

function fastReader(method: keyof typeof WIDTHS, width: number, original: Reader): Reader {
  return function (this: BufferListInternals, offset = 0): number {
    const first = this._bufs[0];
    if (first !== undefined && offset >= 0 && offset + width <= first.length) return first[method](offset);
    return original.call(this, offset);
  };
}

function fastSlice(original: Slicer): Slicer {
  return function (this: BufferListInternals, start?: number, end?: number): Buffer {
    // The whole of a one-buffer list is that buffer itself in bl: left to bl.
    if (inFirst(this, start, end) && !(start === 0 && end === this.length)) return this._bufs[0].subarray(start, end);
    return original.call(this, start, end);
  };
}

function fastToString(original: Decoder): Decoder {
  return function (this: BufferListInternals, encoding?: BufferEncoding, start?: number, end?: number): string {
    if (inFirst(this, start, end)) return this._bufs[0].toString(encoding, start, end);
    return original.call(this, encoding, start, end);
  };
}

function fastConsume(original: Consumer): Consumer {
  return function (this: BufferListInternals, bytes: number): BufferListInternals {
    const first = this._bufs[0];
    // A whole number of bytes ending inside the first buffer; anything else (NaN, fractions, whole buffers) is bl's.
    if (first !== undefined && Number.isInteger(bytes) && bytes > 0 && bytes < first.length) {
      this._bufs[0] = first.subarray(bytes);
      this.length -= bytes;
      return this;
    }
    return original.call(this, bytes);
  };
}

function install(): string[] {
  const require = createRequire(import.meta.url);
  // The copy of bl that mqtt-packet (inside aedes) loads.
  const parserPath = createRequire(require.resolve('aedes')).resolve('mqtt-packet/parser.js');
  const { BufferList } = createRequire(parserPath)('bl') as { BufferList: { prototype: Record<string, unknown> } };
  const prototype = BufferList.prototype;
  const patched: string[] = [];
  for (const method of FAST_METHODS) {
    const original = Reflect.get(prototype, method) as ((...args: never[]) => unknown) | undefined;
    if (typeof original !== 'function' || (original as { fastPath?: boolean }).fastPath) continue;
    let fast: (...args: never[]) => unknown;
    if (method === 'slice') fast = fastSlice(original as unknown as Slicer);
    else if (method === 'toString') fast = fastToString(original as unknown as Decoder);
    else if (method === 'consume') fast = fastConsume(original as unknown as Consumer);
    else fast = fastReader(method, WIDTHS[method], original as unknown as Reader);
    (fast as { fastPath?: boolean }).fastPath = true;
    prototype[method] = fast;
    patched.push(method);
  }
  return patched;
}

/** The BufferList methods given a fast path (empty when bl lacks them or they are patched already). */
export const fastBufferListMethods: string[] = install();
