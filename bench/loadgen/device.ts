// First: mqtt-packet's disabled debug loggers cost the generator as they cost a broker (patches/quiet-debug.ts).
import '../../src/mqtt/aedes/patches/quiet-debug.js';
import tls, { type TLSSocket } from 'node:tls';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { monotonicMs } from '../lib/latency.js';
import { pubacks } from './packets.js';

export interface ConnectOptions {
  host: string;
  port: number;
  clientId: string;
  keepalive: number;
  clean: boolean;
  timeoutMs: number;
}

/**
 * One simulated device: a raw TLS socket speaking MQTT 3.1.1 through
 * mqtt-packet's parser. It acknowledges QoS 1 deliveries in batches (one write
 * per incoming chunk) and reports its own PUBACKs to whoever publishes.
 *
 * A chunk of nothing but whole PUBACKs (what a publishing device gets back,
 * nearly always) is counted without the parser: the generator shares the
 * brokers' cores, and parsing tens of thousands of PUBACKs a second was
 * most of its CPU beside TLS (bench scenario 12).
 */
export class BenchDevice {
  sent = 0;
  acked = 0;
  inflight = 0;
  received = 0;
  firstReceivedMs = 0;
  lastReceivedMs = 0;
  closed = false;
  closeReason: string | undefined;
  /** Called after each incoming chunk with the PUBACKs it carried. */
  onAcks: ((count: number) => void) | undefined;
  /** Called for every PUBLISH the broker delivers to this device. */
  onPublish: ((topic: string, payload: Buffer) => void) | undefined;

  private socket: TLSSocket | undefined;
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });
  private newAcks = 0;
  private readonly acksToSend: number[] = [];
  private waiter: { cmd: Packet['cmd']; resolve: (packet: Packet) => void; reject: (error: Error) => void } | undefined;

  constructor(readonly uid: string) {
    this.parser.on('packet', (packet: Packet) => this.onPacket(packet));
    this.parser.on('error', (error: Error) => this.fail(`protocol error: ${error.message}`));
  }

  connect(options: ConnectOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(`no CONNACK within ${options.timeoutMs} ms`);
      }, options.timeoutMs);
      this.waiter = {
        cmd: 'connack',
        resolve: (packet) => {
          clearTimeout(timer);
          const code = packet.cmd === 'connack' ? packet.returnCode : undefined;
          if (code === 0) resolve();
          else {
            this.destroy(`CONNACK return code ${code}`);
            reject(new Error(`${this.uid}: CONNACK return code ${code}`));
          }
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const socket = tls.connect({ host: options.host, port: options.port, rejectUnauthorized: false, servername: 'localhost' });
      this.socket = socket;
      socket.setNoDelay(true);
      socket.on('secureConnect', () => {
        socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: options.clientId, clean: options.clean, keepalive: options.keepalive }));
      });
      socket.on('data', (chunk: Buffer) => this.onData(chunk));
      socket.on('error', (error) => this.fail(`socket error: ${error.message}`));
      socket.on('close', () => this.fail('connection closed by the broker'));
    });
  }

  async subscribe(topic: string, qos: 0 | 1, timeoutMs: number): Promise<void> {
    const done = new Promise<Packet>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.uid}: no SUBACK within ${timeoutMs} ms`)), timeoutMs);
      this.waiter = {
        cmd: 'suback',
        resolve: (packet) => {
          clearTimeout(timer);
          resolve(packet);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
    this.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos }] }));
    const suback = await done;
    const granted = suback.cmd === 'suback' ? suback.granted[0] : undefined;
    if (granted !== qos) throw new Error(`${this.uid}: subscription to ${topic} granted ${JSON.stringify(granted)}, wanted ${qos}`);
  }

  /** Writes to the socket; false when the socket buffer is full (wait for `drain`). */
  write(data: Buffer): boolean {
    if (!this.socket || this.closed) return false;
    return this.socket.write(data);
  }

  /** Resolves when the socket buffer has room again, or the connection is gone. */
  drained(): Promise<void> {
    const socket = this.socket;
    if (!socket || this.closed || !socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        socket.off('drain', done);
        socket.off('close', done);
        resolve();
      };
      socket.on('drain', done);
      socket.on('close', done);
    });
  }

  /** Polite close: DISCONNECT, then end; resolves when the socket closed (bounded). */
  async disconnect(timeoutMs = 5000): Promise<void> {
    const socket = this.socket;
    if (!socket || this.closed) return;
    this.closeReason = 'disconnected by the bench';
    this.closed = true;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        socket.destroy();
        resolve();
      }, timeoutMs);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.end(mqttPacket.generate({ cmd: 'disconnect' }));
    });
  }

  destroy(reason: string): void {
    if (!this.closed) this.closeReason = reason;
    this.closed = true;
    this.socket?.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.parserIdle() && onlyPubacks(chunk)) this.newAcks += chunk.length / PUBACK_BYTES;
    else this.parser.parse(chunk);
    if (this.acksToSend.length > 0) {
      this.write(pubacks(this.acksToSend));
      this.acksToSend.length = 0;
    }
    if (this.newAcks > 0) {
      const count = this.newAcks;
      this.newAcks = 0;
      this.acked += count;
      this.inflight -= count;
      this.onAcks?.(count);
    }
  }

  private onPacket(packet: Packet): void {
    switch (packet.cmd) {
      case 'puback':
        this.newAcks++;
        return;
      case 'publish': {
        const now = monotonicMs();
        if (this.received === 0) this.firstReceivedMs = now;
        this.lastReceivedMs = now;
        this.received++;
        if (packet.qos === 1 && packet.messageId !== undefined) this.acksToSend.push(packet.messageId);
        this.onPublish?.(packet.topic, packet.payload as Buffer);
        return;
      }
      default: {
        const waiter = this.waiter;
        if (waiter && waiter.cmd === packet.cmd) {
          this.waiter = undefined;
          waiter.resolve(packet);
        }
      }
    }
  }

  /** Between packets: nothing buffered and no packet begun (mqtt-packet 9's state; anything else reads as busy). */
  private parserIdle(): boolean {
    const state = this.parser as unknown as { _list?: { length?: unknown }; packet?: { length?: unknown } };
    return state._list?.length === 0 && state.packet?.length === -1;
  }

  private fail(reason: string): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    if (!this.closed) this.closeReason = reason;
    this.closed = true;
    this.socket?.destroy();
    waiter?.reject(new Error(`${this.uid}: ${reason}`));
  }
}

const PUBACK_BYTES = 4;

/** Whether the chunk is whole PUBACKs only (0x40, remaining length 2, packet id). */
function onlyPubacks(chunk: Buffer): boolean {
  if (chunk.length === 0 || chunk.length % PUBACK_BYTES !== 0) return false;
  for (let at = 0; at < chunk.length; at += PUBACK_BYTES) {
    if (chunk[at] !== 0x40 || chunk[at + 1] !== 0x02) return false;
  }
  return true;
}
