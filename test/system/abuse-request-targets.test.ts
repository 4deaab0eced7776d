// Request targets that do not parse as URLs (`//[`, `http://[`), sent as raw
// bytes over real TCP sockets to every HTTP listener of one Nucleon process:
// each must be answered 400 and counted, logged without a stack, and the
// process must go on serving MQTT, OTA and admin. Before the fix one such
// request to the admin port ended the process (`new URL` threw in the request
// and upgrade handlers), and the OTA server answered 500 with an error-level
// stack trace per request.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import WebSocket from 'ws';
import { waitFor } from '../helpers/index.js';
import { ADMIN_KEY, Canary, metricValue, startInstance } from '../helpers/reliability-support.js';

const UPGRADE_HEADERS = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n';

/** The four requests from the report: each killed the broker through the admin port. */
const BAD_TARGETS: Record<string, string> = {
  'GET //[': 'GET //[ HTTP/1.1\r\nHost: x\r\n\r\n',
  'HEAD //[': 'HEAD //[ HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET http://[': 'GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n',
  'upgrade //[': `GET //[ HTTP/1.1\r\nHost: x\r\n${UPGRADE_HEADERS}\r\n`,
};

/** Writes `bytes` to a fresh connection and resolves with the status line of the answer ('' when the server closed without one). */
function rawStatusLine(port: number, bytes: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from port ${port} within ${timeoutMs} ms (got ${JSON.stringify(received)})`));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(received.split('\r\n')[0] ?? '');
    };
    socket.on('data', (data: Buffer) => {
      received += data.toString('latin1');
      if (received.includes('\r\n')) finish();
    });
    socket.once('close', finish);
    socket.once('error', () => undefined);
    socket.once('connect', () => socket.write(bytes));
  });
}

function adminPing(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    const timer = setTimeout(() => reject(new Error('no ping answer within 5 s')), 5000);
    socket.once('error', reject);
    socket.once('open', () => socket.send(JSON.stringify({ id: 'p', cmd: 'ping' })));
    socket.once('message', (data: Buffer) => {
      clearTimeout(timer);
      socket.terminate();
      resolve(data.toString());
    });
  });
}

test('request targets that are not URLs get 400 on the admin and OTA ports, counted, without a stack; MQTT, OTA and admin keep working', async (t) => {
  const instance = await startInstance(t, {
    certDevices: ['canary-targets'],
    omit: ['log'],
    // Debug, so the refusal lines are in the output and can be checked for stacks.
    extraToml: ['[log]', 'level = "debug"', 'format = "json"'],
  });
  const canary = await Canary.start(t, instance, 'canary-targets');
  await canary.roundTrip();

  const answers: Record<string, string> = {};
  for (const [name, bytes] of Object.entries(BAD_TARGETS)) {
    answers[`admin ${name}`] = await rawStatusLine(instance.ports.admin, bytes);
    answers[`ota ${name}`] = await rawStatusLine(instance.ports.ota, bytes);
    // MQTT over WebSocket ignores the path: an upgrade is accepted (101), a plain request told to upgrade (426).
    answers[`mqtt_ws ${name}`] = await rawStatusLine(instance.ports.ws, bytes);
    assert.ok(instance.alive(), `the process is still running after ${name}:\n${instance.process.output().slice(-2000)}`);
  }
  for (const name of Object.keys(BAD_TARGETS)) {
    assert.equal(answers[`admin ${name}`], 'HTTP/1.1 400 Bad Request', `admin ${name}`);
    assert.equal(answers[`ota ${name}`], 'HTTP/1.1 400 Bad Request', `ota ${name}`);
    assert.match(answers[`mqtt_ws ${name}`] ?? '', /^HTTP\/1\.1 (101|426) /, `mqtt_ws ${name}`);
  }

  // Still serving: a device round trip over MQTT, an OTA answer, the admin API and /metrics.
  await canary.roundTrip();
  const ota = await fetch(`http://127.0.0.1:${instance.ports.ota}/images/1.0.0-1-g965b9df`);
  assert.equal(ota.status, 404);
  assert.match(await adminPing(instance.ports.admin), /"ok":true/);
  const text = await instance.metricsText();
  for (const server of ['admin', 'ota']) {
    assert.equal(metricValue(text, 'nucleon_http_refused_total', { server, reason: 'bad_target' }), Object.keys(BAD_TARGETS).length, server);
  }

  // The process-level safety net is installed (test/system/process-guard.test.ts) and has had nothing to catch.
  assert.match(text, /^nucleon_process_unhandled_total\{kind="rejection"\} 0$/m);
  assert.match(text, /^nucleon_process_unhandled_total\{kind="exception"\} 0$/m);

  // Logged as refusals (debug, no stack), never as errors.
  const lines = await waitFor(() => {
    const found = instance.process
      .output()
      .split('\n')
      .filter((line) => line.includes('"reason":"bad_target"'));
    return found.length >= 2 * Object.keys(BAD_TARGETS).length ? found : undefined;
  }, 'the refusals in the log');
  for (const line of lines) assert.doesNotMatch(line, /"stack"|"level":(50|60)/, line);
  const errors = instance.process
    .output()
    .split('\n')
    .filter((line) => /"level":(50|60)/.test(line));
  assert.deepEqual(errors, [], 'nothing logged at error or fatal');
});
