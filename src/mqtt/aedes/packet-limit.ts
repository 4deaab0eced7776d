import { createRequire } from 'node:module';
import type { Aedes } from 'aedes';
import { DependencyMismatchError, PacketTooLargeError } from '../../errors.js';
import { installedVersion } from './versions.js';

/** The part of mqtt-packet's parser (inside each aedes client) the limit hooks into. */
interface ParserInternals {
  packet: { length: number };
  /** Set by aedes: the client that owns this parser. */
  client?: { broker?: object };
  _parseLength: (this: ParserInternals) => boolean;
  _emitError: (this: ParserInternals, error: Error) => void;
}

/** The limit of each broker (aedes instance) that has one. */
const limits = new WeakMap<object, number>();
let hooked = false;

/**
 * Refuses an MQTT packet whose declared length exceeds `maxBytes` as soon as
 * its fixed header is read, before the body is buffered, for every client of
 * `aedes`. aedes creates its parsers without options and mqtt-packet 9 has no
 * limit of its own, so this wraps the parsers' length step, once, on the
 * prototype: a parser finds its limit through its client's broker (nothing is
 * allocated per connection; a closure per client cost ~0.1 KB of each idle
 * device). Parsers of other brokers or clients (mqtt.js) have no limit here.
 * `assertPacketLimitSupported` checks the internals at start-up.
 */
export function limitPacketSize(aedes: Aedes, maxBytes: number): void {
  limits.set(aedes, maxBytes);
  if (hooked) return;
  const require = createRequire(import.meta.url);
  const parserPath = createRequire(require.resolve('aedes')).resolve('mqtt-packet/parser.js');
  const prototype = (require(parserPath) as { prototype: ParserInternals }).prototype;
  const parseLength = prototype._parseLength;
  prototype._parseLength = function limitedParseLength(this: ParserInternals): boolean {
    const complete = parseLength.call(this);
    if (!complete) return false;
    const broker = this.client?.broker;
    const max = broker === undefined ? undefined : limits.get(broker);
    if (max !== undefined && this.packet.length > max) {
      this._emitError(new PacketTooLargeError(this.packet.length, max));
      return false;
    }
    return true;
  };
  hooked = true;
}

/** Fails the start (before any listener opens; run against the in-memory probe client) if an aedes / mqtt-packet upgrade moved the internals the limit relies on. */
export function assertPacketLimitSupported(aedes: Aedes, client: object): void {
  const parser = (client as unknown as { _parser?: Partial<ParserInternals> })._parser;
  const hookedHere = (parser?._parseLength as { name?: string } | undefined)?.name === 'limitedParseLength';
  if (!hookedHere || typeof parser?._emitError !== 'function' || parser.client !== client || (client as unknown as { broker?: unknown }).broker !== aedes) {
    throw new DependencyMismatchError('mqtt-packet', installedVersion('mqtt-packet'), 'Parser._parseLength / _emitError or the parser-to-client link are not where src/mqtt/aedes/packet-limit.ts expects them (mqtt.limits.max_packet_size cannot be enforced)');
  }
}
