// Abuse of the HTTP and WebSocket side (OTA downloads, the admin endpoint, MQTT
// over WebSocket), against one Nucleon process while a canary device keeps
// round-tripping: slowloris on headers and after the WebSocket upgrade,
// oversized headers and frames, wrong and missing admin keys (with the failure
// rate limit), and the key comparison's timing. Each refusal is counted.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import WebSocket from 'ws';
import { AdminKeys } from '../../src/admin/auth.js';
import { delay, waitFor } from '../helpers/index.js';
import { ADMIN_KEY, Canary, freePorts, metricValue, startInstance, summary, type Instance } from '../helpers/reliability-support.js';

const CONNECT_TIMEOUT_MS = 1000;
const LOGIN_TIMEOUT_MS = 1000;
const AUTH_FAILURES = 5;
/** The header deadline (1 s here) plus the 1 s check interval, with slack. */
const HTTP_DEADLINE_BOUND_MS = CONNECT_TIMEOUT_MS + 4000;

async function counter(instance: Instance, name: string, labels: Record<string, string>): Promise<number> {
  return metricValue(await instance.metricsText(), name, labels);
}

/** Sends a request line, then one header line every 500 ms, never the blank line; resolves with what the server answered and when it closed. */
async function slowHeaders(port: number, path: string, boundMs: number): Promise<{ answer: string; closedAfterMs: number | undefined }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  let answer = '';
  socket.on('data', (data: Buffer) => (answer += data.toString('latin1')));
  await new Promise((resolve) => socket.once('connect', resolve));
  const started = Date.now();
  let closedAfterMs: number | undefined;
  socket.once('close', () => (closedAfterMs = Date.now() - started));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`);
  for (let i = 0; closedAfterMs === undefined && Date.now() - started < boundMs; i++) {
    if (!socket.destroyed) socket.write(`X-Drip-${i}: ${i}\r\n`);
    await delay(500);
  }
  socket.destroy();
  return { answer: answer.split('\r\n')[0] ?? '', closedAfterMs };
}

function openWs(url: string, options: WebSocket.ClientOptions & { protocols?: string[] } = {}): Promise<{ socket: WebSocket; closed: Promise<{ code: number; reason: string }> }> {
  const socket = new WebSocket(url, options.protocols ?? [], options);
  socket.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve({ socket, closed }));
    socket.once('unexpected-response', (_request, response) => reject(Object.assign(new Error(`HTTP ${response.statusCode}`), { status: response.statusCode, headers: response.headers })));
  });
}

function httpStatusOf(error: unknown): number | undefined {
  return (error as { status?: number }).status;
}

test('HTTP and WebSocket abuse is refused and counted while a legitimate device keeps working', async (t) => {
  const ports = await freePorts();
  const instance = await startInstance(t, {
    ports,
    certDevices: ['canary-http-abuse'],
    omit: ['admin', 'mqtt.limits', 'limits'],
    extraToml: [
      '[limits]',
      // Every HTTP listener shares this header deadline (MQTT over WebSocket included).
      `http_headers_timeout_ms = ${CONNECT_TIMEOUT_MS}`,
      'tls_handshake_timeout_ms = 2000',
      '[admin]',
      'host = "127.0.0.1"',
      `port = ${ports.admin}`,
      `api_key = "${ADMIN_KEY}"`,
      `auth_failures_per_minute = ${AUTH_FAILURES}`,
      `login_timeout_ms = ${LOGIN_TIMEOUT_MS}`,
      'max_message_bytes = 4096',
      '[mqtt.limits]',
      `connect_timeout_ms = ${CONNECT_TIMEOUT_MS}`,
      'max_packet_size = 4096',
    ],
  });
  const canary = await Canary.start(t, instance, 'canary-http-abuse');
  const background = canary.inBackground(100);
  const figures: Record<string, number | string> = {};
  const admin = `127.0.0.1:${instance.ports.admin}`;

  await t.test('slowloris on headers: OTA, admin and MQTT-over-WebSocket servers answer 408 at their deadline and count it', async () => {
    const [ota, adminServer, mqttWs] = await Promise.all([
      slowHeaders(instance.ports.ota, '/images/1.0.0-1-g965b9df', HTTP_DEADLINE_BOUND_MS),
      slowHeaders(instance.ports.admin, '/ws', HTTP_DEADLINE_BOUND_MS),
      slowHeaders(instance.ports.ws, '/', CONNECT_TIMEOUT_MS + 4000),
    ]);
    for (const [name, outcome] of Object.entries({ ota, admin: adminServer, mqtt_ws: mqttWs })) {
      assert.equal(outcome.answer, 'HTTP/1.1 408 Request Timeout', `${name}: ${JSON.stringify(outcome)}`);
      assert.ok(outcome.closedAfterMs !== undefined, `${name} closed the connection`);
      assert.equal(await counter(instance, 'nucleon_http_refused_total', { server: name, reason: 'headers_timeout' }), 1, name);
      figures[`slowloris_${name}_closed_after_ms`] = outcome.closedAfterMs ?? -1;
    }
  });

  await t.test('slowloris after the WebSocket upgrade: no login on the admin socket, no CONNECT on MQTT over WebSocket', async () => {
    const quietAdmin = await openWs(`ws://${admin}/ws`);
    t.after(() => quietAdmin.socket.terminate());
    const quietMqtt = await openWs(`ws://127.0.0.1:${instance.ports.ws}/`, { protocols: ['mqtt'] });
    t.after(() => quietMqtt.socket.terminate());
    const connectTimeoutsBefore = await counter(instance, 'nucleon_mqtt_refused_total', { reason: 'connect_timeout' });
    assert.equal((await quietAdmin.closed).code, 4408);
    assert.ok((await quietMqtt.closed).code > 0);
    assert.equal(await counter(instance, 'nucleon_admin_auth_failures_total', { reason: 'login_timeout' }), 1);
    await waitFor(async () => (await counter(instance, 'nucleon_mqtt_refused_total', { reason: 'connect_timeout' })) === connectTimeoutsBefore + 1, 'the MQTT connect timeout counted');
  });

  await t.test('oversized headers get 431 and oversized frames close with 1009; all counted', async () => {
    const big = { 'x-big': 'b'.repeat(20_000) };
    const ota = await fetch(`http://127.0.0.1:${instance.ports.ota}/images/1.0.0-1-g965b9df`, { headers: big });
    const adminHttp = await fetch(`http://${admin}/metrics`, { headers: big });
    assert.deepEqual([ota.status, adminHttp.status], [431, 431]);
    assert.equal(await counter(instance, 'nucleon_http_refused_total', { reason: 'headers_too_large' }), 2);

    const client = await openWs(`ws://${admin}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    client.socket.send(Buffer.alloc(3 * 4096));
    assert.equal((await client.closed).code, 1009);
    const mqttWs = await openWs(`ws://127.0.0.1:${instance.ports.ws}/`, { protocols: ['mqtt'] });
    mqttWs.socket.send(Buffer.alloc(8192));
    assert.equal((await mqttWs.closed).code, 1009);
  });

  await t.test('wrong and missing admin keys are refused and counted; past the limit wrong keys get 429, the right key still works', async () => {
    // The attacker's address; the canary and the real admin client use 127.0.0.1, the same (loopback) block.
    const attacker = { localAddress: '127.0.0.3' };
    const wrongHeader = await openWs(`ws://${admin}/ws`, { headers: { authorization: 'Bearer wrong-key-wrong-key-wrong' }, ...attacker }).catch((error: unknown) => error);
    assert.equal(httpStatusOf(wrongHeader), 401);
    const missing = await openWs(`ws://${admin}/ws`, attacker);
    missing.socket.send(JSON.stringify({ id: 1, cmd: 'images.list' }));
    assert.equal((await missing.closed).code, 4401);
    assert.equal(await counter(instance, 'nucleon_admin_auth_failures_total', { reason: 'missing' }), 1);
    for (let i = 1; i < AUTH_FAILURES; i++) {
      const wrongLogin = await openWs(`ws://${admin}/ws`, attacker);
      wrongLogin.socket.send(JSON.stringify({ id: 1, cmd: 'auth.login', args: { apiKey: `${ADMIN_KEY.slice(0, -1)}${i}` } }));
      assert.equal((await wrongLogin.closed).code, 4401);
    }
    assert.equal(await counter(instance, 'nucleon_admin_auth_failures_total', { reason: 'invalid' }), AUTH_FAILURES);
    // Wrong keys are refused unchecked now, from any loopback address, until the window passes.
    for (const localAddress of ['127.0.0.3', '127.0.0.1', '127.9.9.9']) {
      const limited = await openWs(`ws://${admin}/ws`, { headers: { authorization: 'Bearer wrong-key-wrong-key-wrong' }, localAddress }).catch((error: unknown) => error);
      assert.equal(httpStatusOf(limited), 429, localAddress);
      assert.ok(Number((limited as { headers?: Record<string, string> }).headers?.['retry-after']) > 0);
    }
    assert.ok((await counter(instance, 'nucleon_admin_auth_failures_total', { reason: 'rate_limited' })) >= 3);
    // The right key is never locked out, from the attacker's address or the operator's.
    const fromAttacker = await openWs(`ws://${admin}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` }, ...attacker });
    fromAttacker.socket.terminate();
    const legitimate = await openWs(`ws://${admin}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    t.after(() => legitimate.socket.terminate());
    const reply = await new Promise<string>((resolve) => {
      legitimate.socket.once('message', (data: Buffer) => resolve(data.toString()));
      legitimate.socket.send(JSON.stringify({ id: 'p', cmd: 'ping' }));
    });
    assert.match(reply, /"ok":true/);
  });

  const canaryError = await background.stop();
  assert.equal(canaryError, undefined, `the canary failed: ${String(canaryError)}`);
  assert.ok(instance.alive());
  const text = await instance.metricsText();
  figures.httpRefused = [...text.matchAll(/^nucleon_http_refused_total\{server="(\w+)",reason="(\w+)"\} (\d+)$/gm)].map((m) => `${m[1]}.${m[2]}:${m[3]}`).join(',');
  figures.adminAuthFailures = [...text.matchAll(/^nucleon_admin_auth_failures_total\{reason="(\w+)"\} (\d+)$/gm)].map((m) => `${m[1]}:${m[2]}`).join(',');
  figures.canaryRoundTrips = canary.roundTrips;
  summary('abuse http', figures);
});

/** Median of `samples` timings (ns) of `run`, each timing `batch` calls; a and b interleaved so drift hits both alike. */
function interleavedMedians(a: () => void, b: () => void, samples: number, batch: number): [number, number] {
  const times: [number[], number[]] = [[], []];
  for (let i = 0; i < samples; i++) {
    for (const run of i % 2 === 0 ? [a, b] : [b, a]) {
      const which = run === a ? 0 : 1;
      const start = process.hrtime.bigint();
      for (let j = 0; j < batch; j++) run();
      times[which].push(Number(process.hrtime.bigint() - start));
    }
  }
  const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)] ?? 0;
  return [median(times[0]), median(times[1])];
}

test('the admin key check does not leak the key through timing: a wrong key sharing a long prefix costs what an unrelated one does', () => {
  const key = 'k3y-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ';
  const keys = new AdminKeys([{ name: 'default', role: 'admin', key }]);
  const verifier = { matches: (candidate: string) => keys.match(candidate) !== undefined };
  const sharedPrefix = `${key.slice(0, -1)}X`;
  const noPrefix = `X${'z'.repeat(key.length - 1)}`;
  // Structurally: both sides are hashed first, so candidates of any length compare as equal-length digests (timingSafeEqual would throw otherwise).
  assert.equal(verifier.matches(key), true);
  assert.equal(verifier.matches(sharedPrefix), false);
  assert.equal(verifier.matches(''), false);
  assert.equal(verifier.matches('x'.repeat(10_000)), false);
  // Statistically, with a generous bound: medians of interleaved batches within 25 % of each other.
  const [prefixNs, unrelatedNs] = interleavedMedians(
    () => verifier.matches(sharedPrefix),
    () => verifier.matches(noPrefix),
    301,
    200,
  );
  const ratio = Math.max(prefixNs, unrelatedNs) / Math.min(prefixNs, unrelatedNs);
  summary('abuse admin-key-timing', { sharedPrefixNsPer200: prefixNs, unrelatedNsPer200: unrelatedNs, ratio: Math.round(ratio * 1000) / 1000 });
  assert.ok(ratio < 1.25, `median times differ by a factor of ${ratio}`);
});
