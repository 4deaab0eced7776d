/*
 * Every aedes client owns an mqtt-packet Parser, and the parser buffers input
 * in `bl()`: a BufferListStream, which is a whole readable-stream Duplex
 * (ReadableState, WritableState, bound callbacks) around a BufferList. The
 * parser only appends, reads, slices and consumes, never streams: here it
 * buffers in a ParserInput (parser-input.ts), which answers those calls as
 * bl's BufferList does without a Buffer view per read or consume. A plain
 * BufferList already took the heap per parser from about 985 B for `bl()`
 * to 85 B, measured with 50,000 of each: 0.9 KB per idle device (bench
 * scenario 5); a ParserInput is no larger.
 *
 * Only the parser's `_resetState` changes, and only when its source is the
 * one this replaces (mqtt-packet 9); anything else is left alone and
 * `leanParserState` says why.
 *
 * A parser also keeps the CONNECT packet it parsed as its `settings` for as
 * long as the connection lasts (user name, password and will included), and
 * reads only `protocolVersion` and `bridgeMode` from it afterwards. aedes'
 * parsers (those with a `client`) keep a shared frozen object with those two
 * instead: about 0.2 KB less per connected client, and no password left in
 * memory. `leanConnectState` says whether that is installed.
 *
 * Between packets a parser holds a fresh empty Packet for the next one (made
 * as soon as the last was emitted): 120 B on every idle connection. Here an
 * idle parser points at one shared, frozen empty Packet instead, and makes
 * its own when the first byte of the next packet is parsed (the input a
 * packet empties drops its chunk array too: parser-input.ts).
 * `idlePacketState` says whether that is installed.
 */
// First: mqtt-packet creates its debug loggers when it loads, and parserModules() below loads it.
import './quiet-debug.js';
import { createRequire } from 'node:module';
import { bodyOf } from '../method-body.js';
import { ParserInput } from './parser-input.js';

interface ParserPrototype {
  _resetState: (this: ParserInternals) => void;
}
interface ParserInternals {
  packet: unknown;
  error: Error | null;
  _list: unknown;
  _stateCounter: number;
}

export type LeanParserState = 'installed' | 'already-installed' | 'parser-changed';

/** The copy of mqtt-packet that aedes loads: its Parser prototype and its Packet. */
interface ParserModules {
  prototype: ParserPrototype & IdleParser & ConnectParser & Record<string, unknown>;
  Packet: new () => { length: number };
}

let modules: ParserModules | undefined;

function parserModules(): ParserModules {
  if (modules) return modules;
  const require = createRequire(import.meta.url);
  const parserPath = createRequire(require.resolve('aedes')).resolve('mqtt-packet/parser.js');
  const fromParser = createRequire(parserPath);
  modules = {
    prototype: (fromParser(parserPath) as { prototype: ParserModules['prototype'] }).prototype,
    Packet: fromParser('./packet.js') as ParserModules['Packet'],
  };
  return modules;
}

/** The body of mqtt-packet 9's `_resetState`, less its debug call and whitespace. */
const EXPECTED = 'this.packet=newPacket()this.error=nullthis._list=bl()this._stateCounter=0';

function install(): LeanParserState {
  const { prototype, Packet } = parserModules();
  const original = prototype._resetState;
  if ((original as { lean?: boolean }).lean) return 'already-installed';
  if (bodyOf(original) !== EXPECTED) return 'parser-changed';
  const lean = function leanResetState(this: ParserInternals): void {
    this.packet = idlePacket ?? new Packet();
    this.error = null;
    this._list = new ParserInput();
    this._stateCounter = 0;
  };
  (lean as { lean?: boolean }).lean = true;
  prototype._resetState = lean;
  return 'installed';
}

export type IdlePacketState = 'installed' | 'already-installed' | 'parser-changed';

interface IdleParser {
  packet: unknown;
  _list: { consume(bytes: number): void };
  _pos: number;
  emit(event: 'packet', packet: unknown): boolean;
  _parseHeader: (this: IdleParser) => boolean;
  _newPacket: (this: IdleParser) => boolean;
}

/** The shared empty Packet of idle parsers; set only when idle packets are installed. */
let idlePacket: object | undefined;

/** The body of mqtt-packet 9's `_newPacket`, less its debug calls and whitespace. */
const EXPECTED_NEW_PACKET = "if(this.packet){this._list.consume(this.packet.length)this.emit('packet',this.packet)}this.packet=newPacket()this._pos=0returntrue";

function installIdlePacket(): IdlePacketState {
  const { prototype, Packet } = parserModules();
  if ((prototype._parseHeader as { lean?: boolean }).lean) return 'already-installed';
  // parse() reads only `packet.length` (-1: no packet begun) before a state runs; _parseHeader is the state that begins one.
  const parseReadsLength = /this\.packet\.length !== -1/.test(String(prototype.parse));
  const empty = new Packet();
  if (bodyOf(prototype._newPacket) !== EXPECTED_NEW_PACKET || !parseReadsLength || empty.length !== -1) return 'parser-changed';
  const idle = Object.freeze(empty);
  const parseHeader = prototype._parseHeader;
  const leanParseHeader = function leanParseHeader(this: IdleParser): boolean {
    if (this.packet === idle) this.packet = new Packet();
    return parseHeader.call(this);
  };
  const leanNewPacket = function leanNewPacket(this: IdleParser): boolean {
    const packet = this.packet as { length: number } | undefined;
    if (packet) {
      this._list.consume(packet.length);
      this.emit('packet', packet);
    }
    this.packet = idle;
    this._pos = 0;
    return true;
  };
  (leanParseHeader as { lean?: boolean }).lean = true;
  prototype._parseHeader = leanParseHeader;
  prototype._newPacket = leanNewPacket;
  idlePacket = idle;
  return 'installed';
}

/** Whether aedes' idle parsers share one empty Packet ('installed') or why not. Installed before the lean reset, which uses it. */
export const idlePacketState: IdlePacketState = installIdlePacket();

/** Whether aedes' parsers buffer in a ParserInput ('installed') or why not. */
export const leanParserState: LeanParserState = install();

interface ConnectSettings {
  protocolVersion?: number;
  bridgeMode?: boolean;
}
interface ConnectParser {
  settings: ConnectSettings;
  client?: object;
  _parseConnect: (this: ConnectParser) => ConnectSettings | null | undefined;
}

/** One frozen settings object per protocol version and bridge mode: all a parser reads of its CONNECT. */
const sharedSettings = new Map<string, Readonly<ConnectSettings>>();

function settingsOf(connect: ConnectSettings): Readonly<ConnectSettings> {
  const key = `${String(connect.protocolVersion)}:${String(connect.bridgeMode === true)}`;
  let settings = sharedSettings.get(key);
  if (!settings) {
    settings = Object.freeze(connect.bridgeMode === true ? { protocolVersion: connect.protocolVersion, bridgeMode: true } : { protocolVersion: connect.protocolVersion });
    sharedSettings.set(key, settings);
  }
  return settings;
}

export type LeanConnectState = 'installed' | 'already-installed' | 'parser-changed';

function installLeanConnect(): LeanConnectState {
  const { prototype } = parserModules();
  const original = prototype._parseConnect;
  if ((original as { lean?: boolean }).lean) return 'already-installed';
  // The settings fields the parser reads, and where _parseConnect sets them: anything else is another parser.
  const source = Object.getOwnPropertyNames(prototype)
    .map((name) => prototype[name])
    .filter((method): method is (...args: unknown[]) => unknown => typeof method === 'function')
    .map((method) => method.toString())
    .join('\n');
  const fieldsRead = new Set([...source.matchAll(/this\.settings\.(\w+)/g)].map((match) => match[1]));
  if (typeof original !== 'function' || !/this\.settings = packet\s/.test(original.toString()) || [...fieldsRead].some((field) => field !== 'protocolVersion' && field !== 'bridgeMode')) return 'parser-changed';
  const lean = function leanParseConnect(this: ConnectParser): ConnectSettings | null | undefined {
    const packet = original.call(this);
    if (this.client !== undefined && packet && this.settings === packet) this.settings = settingsOf(packet);
    return packet;
  };
  (lean as { lean?: boolean }).lean = true;
  prototype._parseConnect = lean;
  return 'installed';
}

/** Whether aedes' parsers drop their CONNECT packet for shared settings ('installed') or why not. */
export const leanConnectState: LeanConnectState = installLeanConnect();
