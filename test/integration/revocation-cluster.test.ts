// Cluster mode (real redis-server, two instances as processes): a revoke or a
// kick sent to instance A closes the device's session on instance B at once,
// and neither instance lets it back until unrevoke (README "Revocation").
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { addDevice, device, startCluster, startInstance, waitFor } from '../helpers/cluster-harness.js';

/** Resolves with the time the client's connection closed; rejects when it is still open after `boundMs`. */
function closedAt(client: MqttClient, after: string, boundMs = 5000): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${client.options.clientId ?? 'client'} still connected ${boundMs} ms after ${after} (connected: ${String(client.connected)})`)), boundMs);
    client.once('close', () => {
      clearTimeout(timer);
      resolve(performance.now());
    });
  });
}

test('a device on instance B is closed within 1 s by devices.revoke sent to instance A, refused by both, back after unrevoke; kick through A closes it on B', async (t) => {
  const cluster = await startCluster(t);
  if (!cluster) return;
  const [a, b] = await Promise.all([startInstance(t, cluster, 'a'), startInstance(t, cluster, 'b')]);
  await addDevice(cluster, 'dev-c');
  const adminA = await a.admin();

  const onB = await device(t, b, 'dev-c');
  const closed = closedAt(onB, 'the revoke');
  const sent = performance.now();
  await adminA.request('devices.revoke', { uid: 'dev-c', reason: 'stolen' });
  const elapsed = (await closed) - sent;
  assert.ok(elapsed < 1000, `closed on B ${elapsed.toFixed(0)} ms after the revoke on A`);

  await assert.rejects(device(t, b, 'dev-c'), /Not authorized/);
  await assert.rejects(device(t, a, 'dev-c'), /Not authorized/);

  await adminA.request('devices.unrevoke', { uid: 'dev-c' });
  // Pub/sub reaches B soon after A answers; until then B may still refuse.
  const back = await waitFor(
    () =>
      device(t, b, 'dev-c').then(
        (client) => client,
        () => undefined,
      ),
    'dev-c back on B after unrevoke',
    5000,
  );

  const kicked = closedAt(back, 'the kick');
  const kickSent = performance.now();
  await adminA.request('devices.kick', { uid: 'dev-c' });
  const kickElapsed = (await kicked) - kickSent;
  assert.ok(kickElapsed < 1000, `kicked on B ${kickElapsed.toFixed(0)} ms after the kick on A`);
  // A kick is not a revocation: it logs in again.
  const again = await device(t, b, 'dev-c');
  assert.ok(again.connected);
});
