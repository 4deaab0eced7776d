import { once } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';

/**
 * An mqtt.js client with the tests' defaults: MQTT 3.1.1, a 5 s connect
 * timeout and no automatic reconnect (a test decides when to reconnect).
 * Ended after the test.
 */
export async function testClient(t: TestContext, url: string, options: IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...options });
  t.after(() => client.endAsync(true));
  return client;
}

/**
 * Sends one CONNECT (MQTT 3.1.1) on a socket being opened, once it is ready
 * (`connect` for TCP, `secureConnect` for TLS), and resolves with the CONNACK
 * return code, or why there was none. Bounded by `timeoutMs`; the socket is
 * destroyed either way. For tests that look at CONNACK codes mqtt.js hides.
 */
export function connackOf(socket: Socket, ready: 'connect' | 'secureConnect', connect: { clientId: string; username?: string; password?: string }, timeoutMs = 10_000): Promise<number | string> {
  return new Promise((resolve) => {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const timer = setTimeout(() => finish(`no CONNACK within ${timeoutMs} ms`), timeoutMs);
    function finish(outcome: number | string): void {
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    }
    parser.on('packet', (packet) => finish(packet.cmd === 'connack' ? (packet.returnCode ?? -1) : `unexpected ${packet.cmd}`));
    socket.on('data', (data: Buffer) => parser.parse(data));
    socket.on('error', (error) => finish(`error: ${error.message}`));
    socket.on('close', () => finish('closed without CONNACK'));
    const { clientId, username, password } = connect;
    const packet = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 60, ...(username === undefined ? {} : { username }), ...(password === undefined ? {} : { password: Buffer.from(password) }) });
    socket.once(ready, () => socket.write(packet));
  });
}

/**
 * A byte-level MQTT 3.1.1 client over plain TCP, for packets a real client
 * library would never send (a zero packet id, invalid UTF-8, a DUP resend):
 * `send` writes raw bytes or a packet made by mqtt-packet, `next` waits for
 * the next packet of a type, `closed` resolves when the server hangs up.
 */
export class RawMqtt {
  readonly packets: mqttPacket.Packet[] = [];
  readonly closed: Promise<void>;
  private readonly waiting: (() => void)[] = [];

  private constructor(private readonly socket: Socket) {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (packet) => {
      this.packets.push(packet);
      for (const wake of this.waiting.splice(0)) wake();
    });
    socket.on('data', (chunk) => parser.parse(chunk));
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  /** Opens a connection and (unless `sendConnect` is false) sends CONNECT. */
  static async connect(t: TestContext, port: number, connect: Partial<mqttPacket.IConnectPacket> & { clientId: string }, sendConnect = true): Promise<RawMqtt> {
    const socket = createConnection({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    const client = new RawMqtt(socket);
    t.after(() => socket.destroy());
    if (sendConnect) client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60, ...connect });
    return client;
  }

  send(packet: mqttPacket.Packet | Buffer): void {
    this.socket.write(Buffer.isBuffer(packet) ? packet : mqttPacket.generate(packet));
  }

  /** The next packet of `cmd` not taken yet (rejects after `timeoutMs`, or when the connection closes first). */
  async next<C extends mqttPacket.Packet['cmd']>(cmd: C, timeoutMs = 10_000): Promise<Extract<mqttPacket.Packet, { cmd: C }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = this.packets.findIndex((packet) => packet.cmd === cmd);
      if (at >= 0) return this.packets.splice(at, 1)[0] as Extract<mqttPacket.Packet, { cmd: C }>;
      if (this.socket.destroyed) throw new Error(`the connection closed before a ${cmd}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${cmd} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        this.waiting.push(wake);
        this.socket.once('close', wake);
      });
    }
  }

  /** Resolves true when the server closes the connection within `timeoutMs`. */
  async closesWithin(timeoutMs = 5000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      return await Promise.race([this.closed.then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  end(): void {
    this.socket.destroy();
  }
}
