import { Readable } from 'node:stream';
import type { PublishPacket } from 'aedes';

/**
 * A QoS 1/2 message sent again when a persistent session reconnects must
 * carry DUP [MQTT-3.3.1-1]; aedes resends a session's stored messages as
 * they were stored, without it. A stored message that already has a packet
 * id was sent before (aedes gives it one when it first sends it), so it is
 * a redelivery; one without an id was queued while the client was away.
 * Used by both session stores' `outgoingStream`.
 */
export function markRedeliveries(stored: AsyncIterable<PublishPacket> | NodeJS.ReadableStream): Readable {
  return Readable.from(
    (async function* redeliveries() {
      for await (const packet of stored as AsyncIterable<PublishPacket>) {
        if (packet.cmd === 'publish' && packet.qos > 0 && packet.messageId) packet.dup = true;
        yield packet;
      }
    })(),
  );
}
