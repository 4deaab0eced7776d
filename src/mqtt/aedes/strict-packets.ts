/*
 * Two rules of MQTT 3.1.1 that mqtt-packet 9's parser does not enforce,
 * added to the parser aedes uses, so a packet breaking them closes the
 * connection as the spec requires (and is counted as a protocol error):
 *
 * - [MQTT-1.5.3-1] a UTF-8 string (topic, topic filter, client id, will
 *   topic, user name) that is not well-formed UTF-8, and [MQTT-1.5.3-2] one
 *   that contains U+0000. mqtt-packet decodes with replacement characters,
 *   so the raw bytes are checked only when the decoded string holds U+FFFD
 *   (which well-formed input may also contain, encoded as EF BF BD).
 * - [MQTT-2.3.1-1] a packet identifier of 0 in a PUBLISH with QoS > 0, a
 *   SUBSCRIBE or an UNSUBSCRIBE (and in their acknowledgements, which echo it).
 *
 * Only aedes' parsers (those with a `client`) are checked. A packet's first error wins: mqtt-packet's callers report a second,
 * vaguer one ("Cannot parse topic") after a string is refused here.
 */
import { isUtf8 } from 'node:buffer';
import { DependencyMismatchError } from '../../errors.js';
import { installedVersion } from './versions.js';

interface ParserInternals {
  _pos: number;
  _list: { slice(start: number, end: number): Buffer };
  packet: { messageId?: number };
  error: Error | null;
  /** Set by aedes on its clients' parsers: other parsers in the process (an mqtt.js client) are left alone. */
  client?: object;
  _parseString(this: ParserInternals, maybeBuffer?: unknown): string | null;
  _parseMessageId(this: ParserInternals): boolean;
  _emitError(this: ParserInternals, error: Error): void;
}

const INSTALLED = Symbol('nucleon.strictPackets');

export const INVALID_UTF8 = 'a string is not well-formed UTF-8 [MQTT-1.5.3-1]';
export const NULL_CHARACTER = 'a string contains U+0000 [MQTT-1.5.3-2]';
export const ZERO_PACKET_ID = 'packet identifier 0 [MQTT-2.3.1-1]';

/** Installs the checks on the prototype of aedes' parsers (once; idempotent), read from an in-memory client. */
export function enforceStrictPackets(probe: object): void {
  const parser = (probe as { _parser?: object })._parser;
  const prototype = parser ? (Object.getPrototypeOf(parser) as Partial<ParserInternals> & { [INSTALLED]?: true }) : undefined;
  if (prototype?.[INSTALLED]) return;
  if (!prototype || typeof prototype._parseString !== 'function' || typeof prototype._parseMessageId !== 'function' || typeof prototype._emitError !== 'function') {
    throw new DependencyMismatchError('mqtt-packet', installedVersion('mqtt-packet'), 'Parser._parseString/_parseMessageId/_emitError are not where src/mqtt/aedes/strict-packets.ts expects them');
  }
  const parseString = prototype._parseString;
  const parseMessageId = prototype._parseMessageId;
  const emitError = prototype._emitError;

  prototype._parseString = function strictParseString(this: ParserInternals, maybeBuffer?: unknown): string | null {
    // After the two length bytes; `_pos` moves past the string when it parses.
    const start = this._pos + 2;
    const result = parseString.call(this, maybeBuffer);
    if (result === null || this.client === undefined) return result;
    if (result.includes('\u0000')) {
      this._emitError(new Error(NULL_CHARACTER));
      return null;
    }
    if (result.includes('\uFFFD') && !isUtf8(this._list.slice(start, this._pos))) {
      this._emitError(new Error(INVALID_UTF8));
      return null;
    }
    return result;
  };
  prototype._parseMessageId = function strictParseMessageId(this: ParserInternals): boolean {
    if (!parseMessageId.call(this)) return false;
    if (this.packet.messageId === 0 && this.client !== undefined) {
      this._emitError(new Error(ZERO_PACKET_ID));
      return false;
    }
    return true;
  };
  prototype._emitError = function firstErrorWins(this: ParserInternals, error: Error): void {
    if (this.error) return;
    emitError.call(this, error);
  };
  prototype[INSTALLED] = true;
}
