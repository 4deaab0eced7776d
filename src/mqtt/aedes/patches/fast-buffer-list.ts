/*
 * aedes' mqtt-packet parsers buffer input in a `bl` BufferList (a plain one
 * since lean-parser.ts; bl's BufferListStream copied these methods when bl
 * loaded and never sees this patch). BufferList's readUInt8 /
 * readUInt16BE / readUInt32BE first slice a new Buffer view and then read from
 * it: several Buffer objects per MQTT packet just to read its header bytes,
 * packet id and topic length (about 0.9 KB of garbage per packet in bench
 * scenario 4's allocation profile). When the bytes lie in the list's first
 * buffer, which is nearly always, the value is read from that buffer directly:
 * the same result without the allocation. Anything else takes bl's own path.
 */
import { createRequire } from 'node:module';

type Reader = (this: BufferListInternals, offset?: number) => number;
interface BufferListInternals {
  _bufs: Buffer[];
}

const WIDTHS = { readUInt8: 1, readUInt16BE: 2, readUInt32BE: 4 } as const;

function install(): string[] {
  const require = createRequire(import.meta.url);
  // The copy of bl that mqtt-packet (inside aedes) loads.
  const parserPath = createRequire(require.resolve('aedes')).resolve('mqtt-packet/parser.js');
  const { BufferList } = createRequire(parserPath)('bl') as { BufferList: { prototype: Record<string, unknown> } };
  const patched: string[] = [];
  for (const [method, width] of Object.entries(WIDTHS) as [keyof typeof WIDTHS, number][]) {
    const original = BufferList.prototype[method] as Reader | undefined;
    if (typeof original !== 'function' || (original as { fastPath?: boolean }).fastPath) continue;
    const fast: Reader = function (this: BufferListInternals, offset = 0): number {
      const first = this._bufs[0];
      if (first !== undefined && offset >= 0 && offset + width <= first.length) return first[method](offset);
      return original.call(this, offset);
    };
    (fast as { fastPath?: boolean }).fastPath = true;
    BufferList.prototype[method] = fast;
    patched.push(method);
  }
  return patched;
}

/** The BufferList methods given a fast path (empty when bl lacks them or they are patched already). */
export const fastBufferListMethods: string[] = install();
