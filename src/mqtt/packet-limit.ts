import type { Client } from 'aedes';

/** The part of mqtt-packet's parser (inside each aedes client) the limit hooks into. */
interface ParserInternals {
  packet: { length: number };
  _parseLength: (this: ParserInternals) => boolean;
  _emitError: (this: ParserInternals, error: Error) => void;
}

/**
 * Refuses an MQTT packet whose declared length exceeds `maxBytes` as soon as
 * its fixed header is read, before the body is buffered. aedes creates its
 * parser without options and mqtt-packet 9 has no limit of its own, so this
 * wraps the parser's length step (checked at start-up by `assertPacketLimitSupported`).
 */
export function limitPacketSize(client: Client, maxBytes: number): void {
  const parser = (client as unknown as { _parser: ParserInternals })._parser;
  const parseLength = parser._parseLength;
  parser._parseLength = function limitedParseLength(this: ParserInternals): boolean {
    const complete = parseLength.call(this);
    if (complete && this.packet.length > maxBytes) {
      this._emitError(new Error(`packet too large: ${this.packet.length} bytes, the limit is ${maxBytes}`));
      return false;
    }
    return complete;
  };
}

/** Fails loudly at start-up if an aedes / mqtt-packet upgrade moved the internals the limit relies on. */
export function assertPacketLimitSupported(client: Client): void {
  const parser = (client as unknown as { _parser?: Partial<ParserInternals> })._parser;
  if (typeof parser?._parseLength !== 'function' || typeof parser._emitError !== 'function') {
    throw new Error('mqtt.limits.max_packet_size cannot be enforced: the aedes client parser changed (check the aedes / mqtt-packet versions)');
  }
}
