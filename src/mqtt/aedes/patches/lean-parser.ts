/*
 * Every aedes client owns an mqtt-packet Parser, and the parser buffers input
 * in `bl()`: a BufferListStream, which is a whole readable-stream Duplex
 * (ReadableState, WritableState, bound callbacks) around a BufferList. The
 * parser only appends, reads, slices and consumes, never streams, so a plain
 * BufferList does the same job: about 985 B of heap per parser for `bl()`
 * against 85 B, measured with 50,000 of each; that is 0.9 KB per idle device
 * (bench scenario 5). A plain BufferList also gets the fast readers of
 * fast-buffer-list.ts, which patches BufferList.prototype; BufferListStream
 * copied those methods when bl loaded and never sees the patch.
 *
 * Only the parser's `_resetState` changes, and only when its source is the
 * one this replaces (mqtt-packet 9); anything else is left alone and
 * `leanParserState` says why.
 */
import { createRequire } from 'node:module';

interface ParserPrototype {
  _resetState: (this: ParserInternals) => void;
}
interface ParserInternals {
  packet: unknown;
  error: Error | null;
  _list: unknown;
  _stateCounter: number;
}

export type LeanParserState = 'installed' | 'already-installed' | 'parser-changed' | 'no-buffer-list';

/** The body of mqtt-packet 9's `_resetState`, less its debug call and whitespace. */
const EXPECTED = 'this.packet=newPacket()this.error=nullthis._list=bl()this._stateCounter=0';

function install(): LeanParserState {
  const require = createRequire(import.meta.url);
  // The copy of mqtt-packet that aedes loads, and the bl and Packet it uses.
  const parserPath = createRequire(require.resolve('aedes')).resolve('mqtt-packet/parser.js');
  const fromParser = createRequire(parserPath);
  const Parser = fromParser(parserPath) as { prototype: ParserPrototype };
  const Packet = fromParser('./packet.js') as new () => unknown;
  const { BufferList } = fromParser('bl') as { BufferList?: new () => unknown };
  const original = Parser.prototype._resetState;
  if ((original as { lean?: boolean }).lean) return 'already-installed';
  if (typeof BufferList !== 'function') return 'no-buffer-list';
  const body = original
    .toString()
    .replace(/^[^{]*\{|\}$/g, '')
    .replace(/debug\([^)]*\)/g, '')
    .replace(/[\s;]/g, '');
  if (body !== EXPECTED) return 'parser-changed';
  const lean = function leanResetState(this: ParserInternals): void {
    this.packet = new Packet();
    this.error = null;
    this._list = new BufferList();
    this._stateCounter = 0;
  };
  (lean as { lean?: boolean }).lean = true;
  Parser.prototype._resetState = lean;
  return 'installed';
}

/** Whether aedes' parsers buffer in a plain BufferList ('installed') or why not. */
export const leanParserState: LeanParserState = install();
