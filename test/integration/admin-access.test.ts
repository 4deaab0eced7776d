// Who may reach the admin endpoint, against a real AdminRunner over real
// sockets: the failed-login limit never locks out the right key and cannot be
// dodged by changing address inside loopback; a WebSocket upgrade from a web
// page of another origin is refused; a Host that is not the listener's own or
// a configured name is refused (DNS rebinding on /metrics and the API).
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { AdminAccess } from '../../src/admin/access.js';
import { AdminTestClient, API_KEY, startAdmin } from '../helpers/admin-harness.js';

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

test('a WebSocket upgrade with an Origin other than the dashboard\'s own (or a configured one) is refused with 403; none is fine', async (t) => {
  const admin = await startAdmin(t, { allowed_hosts: ['admin.example.com'], allowed_origins: ['https://admin.example.com'] });
  const own = `127.0.0.1:${admin.port}`;
  const upgrade = (headers: Record<string, string>) => request(admin.port, { upgrade: true, headers: { authorization: `Bearer ${API_KEY}`, ...headers } });

  assert.equal((await upgrade({ origin: 'http://evil.example' })).status, 403);
  assert.equal((await upgrade({ origin: `http://evil.example:${admin.port}` })).status, 403);
  assert.equal((await upgrade({ origin: 'null' })).status, 403);
  assert.equal((await upgrade({ origin: '//[' })).status, 403);
  // The dashboard served from this listener, by any of its names; and scripts without an Origin.
  assert.equal((await upgrade({ origin: `http://${own}` })).status, 101);
  assert.equal((await upgrade({ host: `localhost:${admin.port}`, origin: `http://localhost:${admin.port}` })).status, 101);
  assert.equal((await upgrade({})).status, 101);
  // Behind a TLS proxy that keeps the Host: the configured origin.
  assert.equal((await upgrade({ host: 'admin.example.com', origin: 'https://admin.example.com' })).status, 101);
  // The origin must match the Host it came with, not just any allowed one.
  assert.equal((await upgrade({ host: 'admin.example.com', origin: `http://${own}` })).status, 403);

  assert.equal(await metric(admin.port, 'nucleon_http_refused_total', 'server="admin",reason="origin_not_allowed"'), 5);
  // The browser path end to end: a client that sends its page's Origin.
  const dashboard = await AdminTestClient.connect(t, admin.wsUrl, { headers: { origin: `http://${own}` } });
  assert.deepEqual((await dashboard.request('auth.login', { apiKey: API_KEY })).result, { authenticated: true });
});

test('a Host that is not the listener\'s own name or a configured one is refused with 421 (DNS rebinding), on HTTP and on the upgrade', async (t) => {
  const admin = await startAdmin(t, { allowed_hosts: ['admin.example.com', 'metrics.internal:9100'] });
  const get = (host: string, path = '/metrics') => request(admin.port, { path, headers: { host } });

  for (const host of ['evil.example', `evil.example:${admin.port}`, `127.0.0.2:${admin.port}`, `localhost:${admin.port + 1}`, 'metrics.internal:9101', 'admin.example.com.evil']) {
    assert.equal((await get(host)).status, 421, host);
  }
  assert.equal((await get(`rebound.example:${admin.port}`, '/healthz')).status, 421);
  assert.equal((await get(`rebound.example:${admin.port}`, '/')).status, 421);
  assert.equal((await request(admin.port, { upgrade: true, headers: { host: `evil.example:${admin.port}`, authorization: `Bearer ${API_KEY}` } })).status, 421);

  for (const host of [`127.0.0.1:${admin.port}`, `localhost:${admin.port}`, `LocalHost:${admin.port}`, `[::1]:${admin.port}`, 'admin.example.com', `admin.example.com:${admin.port}`, 'metrics.internal:9100']) {
    assert.equal((await get(host)).status, 200, host);
  }
  assert.equal(await metric(admin.port, 'nucleon_http_refused_total', 'server="admin",reason="host_not_allowed"'), 9);
});

/** The admission decision for a request with these headers (status 0: admitted). */
function decide(access: AdminAccess, headers: Record<string, string>, upgrade = false): number {
  const request = { url: '/ws', headers } as unknown as http.IncomingMessage;
  const admission = upgrade ? access.admitUpgrade(request) : access.admit(request);
  return admission.ok ? 0 : admission.refusal.status;
}

const bound = (address: string, port: number): AddressInfo => ({ address, port, family: address.includes(':') ? 'IPv6' : 'IPv4' });

test('own names: the bound address, loopback names on loopback, interface addresses when bound to all, admin.host when it is a name; port 80 may be left out', () => {
  const all = new AdminAccess({ listenHost: '0.0.0.0', allowedHosts: [], allowedOrigins: [], interfaceAddresses: () => ['10.1.2.3', 'fe80::1'] });
  all.bind(bound('0.0.0.0', 3032));
  for (const host of ['0.0.0.0:3032', '127.0.0.1:3032', 'localhost:3032', '[::1]:3032', '10.1.2.3:3032', '[fe80::1]:3032']) assert.equal(decide(all, { host }), 0, host);
  for (const host of ['10.1.2.4:3032', '10.1.2.3:3033', '10.1.2.3', 'fe80::1:3032', 'nucleon.local:3032']) assert.equal(decide(all, { host }), 421, host);
  // No Host at all (HTTP/1.0 from a script) is not a browser: admitted.
  assert.equal(decide(all, {}), 0);

  const named = new AdminAccess({ listenHost: 'admin.internal', allowedHosts: [], allowedOrigins: [] });
  named.bind(bound('10.9.9.9', 80));
  for (const host of ['admin.internal', 'admin.internal:80', '10.9.9.9', '10.9.9.9:80']) assert.equal(decide(named, { host }), 0, host);
  for (const host of ['localhost', '127.0.0.1:80', 'admin.internal:8080']) assert.equal(decide(named, { host }), 421, host);

  const v6 = new AdminAccess({ listenHost: '::1', allowedHosts: ['[2001:db8::5]'], allowedOrigins: [] });
  v6.bind(bound('::1', 3032));
  for (const host of ['[::1]:3032', 'localhost:3032', '127.0.0.1:3032', '[2001:db8::5]:9000', '[2001:DB8::5]']) assert.equal(decide(v6, { host }), 0, host);

  // Before the listener is bound nothing is admitted.
  assert.equal(decide(new AdminAccess({ listenHost: '127.0.0.1', allowedHosts: [], allowedOrigins: [] }), { host: 'localhost:3032' }), 421);
});

test('Origin: the dashboard\'s own under either scheme, configured ones, none; never opaque or unparsable ones', () => {
  const access = new AdminAccess({ listenHost: '127.0.0.1', allowedHosts: ['admin.example.com'], allowedOrigins: ['HTTPS://Admin.Example.com:443'] });
  access.bind(bound('127.0.0.1', 3032));
  const cases: [Record<string, string>, number][] = [
    [{ host: '127.0.0.1:3032' }, 0],
    [{ host: '127.0.0.1:3032', origin: 'http://127.0.0.1:3032' }, 0],
    [{ host: 'localhost:3032', origin: 'https://localhost:3032' }, 0],
    [{ host: 'admin.example.com', origin: 'https://admin.example.com' }, 0],
    [{ host: 'admin.example.com:443', origin: 'https://admin.example.com' }, 0],
    [{ host: '127.0.0.1:3032', origin: 'http://localhost:3032' }, 403],
    [{ host: '127.0.0.1:3032', origin: 'http://127.0.0.1:3033' }, 403],
    [{ host: '127.0.0.1:3032', origin: 'ws://127.0.0.1:3032' }, 403],
    [{ host: '127.0.0.1:3032', origin: 'null' }, 403],
    [{ host: '127.0.0.1:3032', origin: 'http://[' }, 403],
    [{ host: 'evil.example', origin: 'http://evil.example' }, 421],
  ];
  assert.deepEqual(
    cases.map(([headers]) => [headers, decide(access, headers, true)]),
    cases,
  );
  // Plain requests do not look at Origin (reads are the browser's same-origin policy's job).
  assert.equal(decide(access, { host: '127.0.0.1:3032', origin: 'http://evil.example' }), 0);
});
