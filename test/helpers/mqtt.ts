import type { TestContext } from 'node:test';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

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
