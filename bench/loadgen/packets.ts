import mqttPacket from 'mqtt-packet';
import { TIMESTAMP_OFFSET } from '../lib/latency.js';

/**
 * A PUBLISH encoded once with mqtt-packet; sending copies it and patches only
 * the packet id and the send timestamp, so the generator spends its CPU on
 * TLS and sockets rather than on encoding.
 */
export class PublishTemplate {
  private readonly packet: Buffer;
  private readonly payloadOffset: number;
  /** Where the 2-byte packet id sits; -1 for QoS 0 (no id). */
  private readonly idOffset: number;

  /** False for payloads that must stay as given (telemetry CBOR): no timestamp is written into them. */
  private readonly stamped: boolean;

  /** `payload`: a fixed payload, or a size for filler bytes carrying the send timestamp. */
  constructor(
    topic: string,
    readonly qos: 0 | 1,
    payload: number | Buffer,
  ) {
    this.stamped = typeof payload === 'number';
    const bytes = typeof payload === 'number' ? Buffer.alloc(Math.max(payload, TIMESTAMP_OFFSET + 8), 0xa5) : payload;
    this.packet = mqttPacket.generate({ cmd: 'publish', topic, payload: bytes, qos, messageId: qos === 1 ? 1 : undefined, retain: false, dup: false });
    this.payloadOffset = this.packet.length - bytes.length;
    this.idOffset = qos === 1 ? this.payloadOffset - 2 : -1;
  }

  get size(): number {
    return this.packet.length;
  }

  /**
   * `count` packets back to back in one buffer (one socket write), ids
   * `firstId`, `firstId+1`, ... wrapping within 1..65535.
   */
  batch(count: number, firstId: number, timestampMs: number): Buffer {
    const size = this.packet.length;
    const out = Buffer.allocUnsafe(size * count);
    let id = firstId;
    for (let i = 0; i < count; i++) {
      const base = i * size;
      this.packet.copy(out, base);
      if (this.stamped) out.writeDoubleBE(timestampMs, base + this.payloadOffset + TIMESTAMP_OFFSET);
      if (this.idOffset >= 0) {
        out.writeUInt16BE(id, base + this.idOffset);
        id = id === 65535 ? 1 : id + 1;
      }
    }
    return out;
  }
}

/** Next packet id after advancing `count` from `id` within 1..65535. */
export function advanceId(id: number, count: number): number {
  return ((id - 1 + count) % 65535) + 1;
}

const PUBACK_SIZE = 4;

/** PUBACKs for the given packet ids, in one buffer. */
export function pubacks(ids: readonly number[]): Buffer {
  const out = Buffer.allocUnsafe(ids.length * PUBACK_SIZE);
  for (let i = 0; i < ids.length; i++) {
    out[i * PUBACK_SIZE] = 0x40;
    out[i * PUBACK_SIZE + 1] = 0x02;
    out.writeUInt16BE(ids[i] ?? 0, i * PUBACK_SIZE + 2);
  }
  return out;
}
