import type { Socket } from 'node:net';
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
