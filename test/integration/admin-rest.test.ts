// The REST API (/api/v1) of a real Nucleon (MQTT over TLS, the OTA and
// campaigns runners, the admin endpoint), driven with plain fetch: no project
// client code. The OpenAPI document is checked by @readme/openapi-parser.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import { validate } from '@readme/openapi-parser';
import mqtt from 'mqtt';
import type { MqttRunner } from '../../src/mqtt/index.js';
import { API_KEY, startFullInstance } from '../helpers/admin-harness.js';
import { waitFor } from '../helpers/index.js';

const IMAGE_ID = '1.2.3-4-g965b9df';

interface Answer {
  status: number;
  headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read field by field and checked by value
  body: any;
}

function client(port: number) {
  const base = `http://127.0.0.1:${port}/api/v1`;
  return async (method: string, route: string, options: { json?: unknown; key?: string | null; body?: string; headers?: Record<string, string> } = {}): Promise<Answer> => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.key !== null) headers.authorization = `Bearer ${options.key ?? API_KEY}`;
    let body = options.body;
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.json);
    }
    const response = await fetch(`${base}${route}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text === '' ? undefined : JSON.parse(text) };
  };
}

/**
 * PUT with node:http, the body written in pieces as a large image arrives:
 * the server sees Content-Length first and never the whole body at once.
 * `send: false` sends only the headers and waits for the answer.
 */
function putStream(port: number, route: string, bytes: Buffer, options: { pieceBytes?: number; length?: number; send?: boolean; key?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers = { authorization: `Bearer ${options.key ?? API_KEY}`, 'content-type': 'application/octet-stream', 'content-length': String(options.length ?? bytes.length) };
    const request = httpRequest({ host: '127.0.0.1', port, method: 'PUT', path: `/api/v1${route}`, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const answerHeaders = new Headers();
        for (const [name, value] of Object.entries(response.headers)) if (typeof value === 'string') answerHeaders.set(name, value);
        resolve({ status: response.statusCode ?? 0, headers: answerHeaders, body: text === '' ? undefined : JSON.parse(text) });
      });
      response.on('error', reject);
    });
    request.on('error', reject);
    if (options.send === false) {
      request.flushHeaders();
      return;
    }
    const piece = options.pieceBytes ?? 64 * 1024;
    let offset = 0;
    const writeMore = (): void => {
      while (offset < bytes.length) {
        const chunk = bytes.subarray(offset, offset + piece);
        offset += chunk.length;
        if (!request.write(chunk)) {
          request.once('drain', writeMore);
          return;
        }
      }
      request.end();
    };
    writeMore();
  });
}

test('without the key, or with a wrong one, every route but the OpenAPI document answers 401 with a JSON error', async (t) => {
  const { adminPort } = await startFullInstance(t);
  const api = client(adminPort);

  const missing = await api('GET', '/devices', { key: null });
  assert.equal(missing.status, 401);
  assert.deepEqual(missing.body, { error: { code: 'UNAUTHENTICATED', message: 'send the admin API key: Authorization: Bearer <key>' } });
  assert.equal(missing.headers.get('www-authenticate'), 'Bearer');

  const wrong = await api('GET', '/devices', { key: 'not-the-key-at-all-0000' });
  assert.equal(wrong.status, 401);
  assert.deepEqual(wrong.body, { error: { code: 'UNAUTHORIZED', message: 'invalid API key' } });

  // Unknown routes say no more than known ones without the key.
  assert.equal((await api('GET', '/no-such-thing', { key: null })).status, 401);
  const unknown = await api('GET', '/no-such-thing');
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.error.code, 'NOT_FOUND');

  const doc = await api('GET', '/openapi.json', { key: null });
  assert.equal(doc.status, 200);
  assert.equal(doc.body.openapi, '3.1.0');
  // The Host check of the whole admin endpoint (DNS rebinding) comes first, key or not.
  const rebound = await new Promise<number>((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port: adminPort, path: '/api/v1/devices', headers: { host: 'evil.example', authorization: `Bearer ${API_KEY}` } }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on('error', reject);
    request.end();
  });
  assert.equal(rebound, 421);
});

test('devices: add a password (PUT and POST), log in over MQTT with it, list, get, revoke and unrevoke, and remove', async (t) => {
  const { nucleon, adminPort } = await startFullInstance(t);
  const api = client(adminPort);
  const mqttPort = (nucleon.runner('mqtt') as MqttRunner).port('tls') ?? 0;
  const ca = await readFile(path.join(nucleon.config.certs.dir, 'ca.crt'));

  const set = await api('PUT', '/devices/dev-1/password', { json: { password: 'a-password-of-dev-1' } });
  assert.equal(set.status, 200);
  assert.deepEqual(set.body, { uid: 'dev-1', password: 'a-password-of-dev-1' });
  const generated = await api('POST', '/devices', { json: { uid: 'dev-2' } });
  assert.equal(generated.status, 201);
  assert.equal(generated.body.uid, 'dev-2');
  assert.equal(generated.body.password.length, 32);

  // The password set over REST is the one MQTT checks.
  const device = await mqtt.connectAsync(`mqtts://localhost:${mqttPort}`, { ca, clientId: 'dev-1', username: 'dev-1', password: 'a-password-of-dev-1', reconnectPeriod: 0, connectTimeout: 5000 });
  t.after(() => device.endAsync(true));
  const online = await waitFor(async () => {
    const list = await api('GET', '/devices?online=true');
    return list.body.devices.length === 1 ? list : undefined;
  }, 'dev-1 online in GET /devices?online=true');
  assert.equal(online.body.devices[0].uid, 'dev-1');
  assert.deepEqual((await api('GET', '/devices?online=false')).body, { devices: [] });
  const one = await api('GET', '/devices/dev-1');
  assert.equal(one.status, 200);
  assert.equal(one.body.uid, 'dev-1');
  assert.equal(one.body.online, true);
  assert.equal((await api('GET', '/devices/dev-never-seen')).status, 404);

  // Revocation over REST: the session is closed, the list shows it, unrevoke lifts it.
  const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
  const revoked = await api('POST', '/devices/dev-1/revoke', { json: { reason: 'stolen' } });
  assert.equal(revoked.status, 200);
  assert.equal(revoked.body.revocation.uid, 'dev-1');
  assert.equal(revoked.body.revocation.reason, 'stolen');
  await closed;
  const listed = await api('GET', '/revocations');
  assert.deepEqual(
    listed.body.revocations.map((r: { uid?: string; reason: string }) => [r.uid, r.reason]),
    [['dev-1', 'stolen']],
  );
  assert.deepEqual((await api('POST', '/devices/dev-1/unrevoke')).body, { uid: 'dev-1', revoked: false });
  assert.equal((await api('POST', '/devices/dev-1/unrevoke')).status, 404);
  assert.deepEqual((await api('GET', '/revocations')).body, { revocations: [] });

  const removed = await api('DELETE', '/devices/dev-2');
  assert.equal(removed.status, 200);
  assert.deepEqual(removed.body, { uid: 'dev-2', removed: true, password: true, record: false });
  const again = await api('DELETE', '/devices/dev-2');
  assert.equal(again.status, 404);
  assert.deepEqual(again.body, { error: { code: 'NOT_FOUND', message: 'device dev-2 has no password' } });
  await assert.rejects(
    mqtt.connectAsync(`mqtts://localhost:${mqttPort}`, { ca, clientId: 'dev-2', username: 'dev-2', password: generated.body.password, reconnectPeriod: 0, connectTimeout: 5000 }),
    /Not authorized|Bad username or password/,
  );
});

test('images: a streamed body becomes an image (sha256 checked), is linked to a device and shows in groups and links', async (t) => {
  const { adminPort } = await startFullInstance(t, { admin: { max_upload_bytes: 8 * 1024 * 1024 } });
  const api = client(adminPort);
  const bytes = randomBytes(3 * 1024 * 1024 + 17);
  const sha256 = createHash('sha256').update(bytes).digest('hex');

  // A wrong sha256: refused, and nothing is stored.
  const bad = await putStream(adminPort, `/images/${IMAGE_ID}?sha256=${'0'.repeat(64)}`, bytes);
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.code, 'INVALID_ARGUMENT');
  assert.match(bad.body.error.message, /^sha256 mismatch: announced 0{64}, received [0-9a-f]{64}$/);
  assert.deepEqual((await api('GET', '/images')).body, { images: [] });

  const added = await putStream(adminPort, `/images/${IMAGE_ID}?sha256=${sha256}&description=field%20test`, bytes);
  assert.equal(added.status, 200, JSON.stringify(added.body));
  assert.equal(added.body.image.id, IMAGE_ID);
  assert.equal(added.body.image.size, bytes.length);
  assert.equal(added.body.image.sha256, sha256);
  assert.equal(added.body.image.description, 'field test');
  const list = await api('GET', '/images');
  assert.deepEqual(
    list.body.images.map((i: { id: string; imageType: string; sha256: string }) => [i.id, i.imageType, i.sha256]),
    [[IMAGE_ID, 'primary', sha256]],
  );

  // Over admin.max_upload_bytes: refused from Content-Length, before a byte is sent.
  const tooLarge = await putStream(adminPort, '/images/2.0.0-0-g0000000', Buffer.alloc(0), { length: 8 * 1024 * 1024 + 1, send: false });
  assert.equal(tooLarge.status, 413);
  assert.deepEqual(tooLarge.body, { error: { code: 'TOO_LARGE', message: 'the image of 8388609 bytes exceeds admin.max_upload_bytes (8388608)' } });
  // JSON is not an image.
  const notOctets = await api('PUT', '/images/2.0.0-0-g0000000', { json: { data: 'AAAA' } });
  assert.equal(notOctets.status, 415, JSON.stringify(notOctets.body));
  assert.equal(notOctets.body.error.code, 'BAD_MESSAGE');

  // Link a device to a group and the image; groups shows both.
  const link = await api('PUT', '/links', { json: { device: 'dev-1', group: 'field', image: IMAGE_ID } });
  assert.equal(link.status, 200, JSON.stringify(link.body));
  const groups = await api('GET', '/groups');
  assert.deepEqual(groups.body.groups, [{ name: 'field', imageId: IMAGE_ID, devices: ['dev-1'] }]);
  const unlink = await api('DELETE', '/links?device=dev-1');
  assert.equal(unlink.status, 200, JSON.stringify(unlink.body));
  assert.deepEqual((await api('GET', '/groups')).body.groups, [{ name: 'field', imageId: IMAGE_ID, devices: [] }]);

  const removed = await api('DELETE', `/images/${IMAGE_ID}`);
  assert.equal(removed.status, 200, JSON.stringify(removed.body));
  assert.deepEqual((await api('GET', '/images')).body, { images: [] });
  const gone = await api('DELETE', `/images/${IMAGE_ID}`);
  assert.equal(gone.status, 404);
  assert.equal(gone.body.error.code, 'NOT_FOUND');
});

test('a validation error is a 400 naming the field; unknown things are 404; campaigns, ACL rules, ingest and the app over REST', async (t) => {
  const { adminPort } = await startFullInstance(t);
  const api = client(adminPort);

  const badUid = await api('PUT', '/devices/not%20a%20uid/password', { json: {} });
  assert.equal(badUid.status, 400);
  assert.deepEqual(badUid.body, { error: { code: 'INVALID_ARGUMENT', message: 'uid: expected a device uid ([A-Za-z0-9_-], 1..64 characters)' } });
  const unknownField = await api('POST', '/devices', { json: { uid: 'dev-1', colour: 'red' } });
  assert.equal(unknownField.status, 400);
  assert.deepEqual(unknownField.body, { error: { code: 'INVALID_ARGUMENT', message: 'unknown argument colour' } });
  const badQuery = await api('GET', '/devices?online=maybe');
  assert.equal(badQuery.status, 400);
  assert.match(badQuery.body.error.message, /^online: /);
  const badLink = await api('PUT', '/links', { json: { image: IMAGE_ID } });
  assert.equal(badLink.status, 400);
  assert.equal(badLink.body.error.message, 'give a device, a group, or both');
  const notJson = await api('POST', '/devices', { body: '{"uid":', headers: { 'content-type': 'application/json' } });
  assert.equal(notJson.status, 400);
  assert.equal(notJson.body.error.code, 'BAD_MESSAGE');
  const huge = await api('PUT', '/acl/rules', { json: { rules: [], padding: 'x'.repeat(2 * 1024 * 1024) } });
  assert.equal(huge.status, 413);
  assert.deepEqual(huge.body, { error: { code: 'TOO_LARGE', message: 'the JSON body exceeds admin.max_message_bytes' } });

  assert.equal((await api('GET', '/campaigns/no-such-campaign')).status, 404);
  assert.equal((await api('DELETE', '/images/9.9.9-9-g0000000')).status, 404);
  assert.equal((await api('POST', '/devices/dev-1/password', { json: {} })).status, 404, 'a method a path does not take is not found');

  // Campaigns: an image to roll out first.
  const image = randomBytes(4096);
  assert.equal((await putStream(adminPort, `/images/${IMAGE_ID}`, image)).status, 200);
  const spec = { id: 'fw-rest', imageId: IMAGE_ID, target: { devices: ['dev-1', 'dev-2'] }, stages: [{ percent: 50 }, { percent: 100 }] };
  const created = await api('POST', '/campaigns', { json: spec });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.id, 'fw-rest');
  assert.equal(created.body.state, 'running');
  const twice = await api('POST', '/campaigns', { json: spec });
  assert.equal(twice.status, 409);
  assert.equal(twice.body.error.code, 'CAMPAIGN_EXISTS');
  const badSpec = await api('POST', '/campaigns', { json: { ...spec, id: 'fw-bad', stages: [{ percent: 150 }] } });
  assert.equal(badSpec.status, 400);
  assert.match(badSpec.body.error.message, /stages\.0\.percent/);
  assert.deepEqual(
    (await api('GET', '/campaigns')).body.campaigns.map((c: { id: string }) => c.id),
    ['fw-rest'],
  );
  const shown = await api('GET', '/campaigns/fw-rest?devices=true');
  assert.equal(shown.status, 200);
  assert.deepEqual(shown.body.devices.map((d: { uid: string }) => d.uid).sort(), ['dev-1', 'dev-2']);
  assert.equal((await api('POST', '/campaigns/fw-rest/pause')).body.state, 'paused');
  assert.equal((await api('POST', '/campaigns/fw-rest/resume')).body.state, 'running');
  const promoted = await api('POST', '/campaigns/fw-rest/promote');
  assert.equal(promoted.status, 200, JSON.stringify(promoted.body));
  assert.equal(promoted.body.stage, 1);
  const aborted = await api('POST', '/campaigns/fw-rest/abort', { json: { rollback: false } });
  assert.equal(aborted.body.state, 'aborted');
  const late = await api('POST', '/campaigns/fw-rest/pause');
  assert.equal(late.status, 409);
  assert.equal(late.body.error.code, 'CAMPAIGN_STATE');

  // ACL rules, set live and read back; the ingest log.
  const rules = [{ who: 'service:backend', action: 'subscribe', effect: 'allow', topic: '+/tel/#' }];
  assert.deepEqual((await api('PUT', '/acl/rules', { json: { rules } })).body, { live: rules });
  assert.deepEqual((await api('GET', '/acl/rules')).body.live, rules);
  const ingest = await api('GET', '/ingest');
  assert.equal(ingest.status, 200);
  assert.equal(typeof ingest.body.durability, 'string');

  // No application runner in this instance: said so, as 503.
  const app = await api('POST', '/app/requests', { json: { target: 'reports', payload: { month: 11 } } });
  assert.equal(app.status, 503);
  assert.equal(app.body.error.code, 'UNAVAILABLE');
});

test('the OpenAPI document is valid OpenAPI 3.1, and every route it documents answers', async (t) => {
  const { adminPort } = await startFullInstance(t);
  const api = client(adminPort);
  const { body: doc } = await api('GET', '/openapi.json', { key: null });
  // The validator dereferences in place: give it a copy.
  const result = await validate(structuredClone(doc));
  assert.deepEqual(result.valid ? [] : result.errors, [], 'OpenAPI validation errors');
  assert.equal(doc.components.securitySchemes.bearer.type, 'http');
  assert.equal(doc.components.securitySchemes.bearer.scheme, 'bearer');
  assert.deepEqual(doc.security, [{ bearer: [] }]);

  const operations = Object.entries(doc.paths as Record<string, Record<string, { parameters?: { name: string; in: string }[]; responses: Record<string, unknown> }>>).flatMap(
    ([route, item]) => Object.entries(item).map(([method, operation]) => ({ route, method: method.toUpperCase(), operation })),
  );
  assert.ok(operations.length >= 20, `${operations.length} operations`);
  for (const { route, method, operation } of operations) {
    assert.ok(operation.responses['401'] !== undefined || route.endsWith('/openapi.json'), `${method} ${route} documents 401`);
    const target = route.replace('/api/v1', '').replace(/\{[^}]+\}/g, 'dev-0');
    // Arguments are left out on purpose: a 400 answers too; what must not happen is "no such route".
    const answer = method === 'PUT' && route.endsWith('/images/{id}') ? await putStream(adminPort, '/images/0.0.1-0-g0000000', Buffer.from('x')) : await api(method, target, method === 'GET' || method === 'DELETE' ? {} : { json: {} });
    assert.notEqual(answer.status, 405, `${method} ${route}`);
    if (answer.status === 404) assert.doesNotMatch(answer.body.error.message, /^no route/, `${method} ${route}`);
    assert.ok(answer.status < 500 || answer.status === 503, `${method} ${route}: ${answer.status} ${JSON.stringify(answer.body)}`);
  }
});

test('wrong keys from one address block are refused with 429 and Retry-After past the limit; the right key still gets in', async (t) => {
  const { adminPort } = await startFullInstance(t, { admin: { auth_failures_per_minute: 2 } });
  const api = client(adminPort);
  for (let i = 0; i < 2; i++) assert.equal((await api('GET', '/devices', { key: `wrong-key-number-${i}-000000` })).status, 401);
  const limited = await api('GET', '/devices', { key: 'wrong-key-number-3-000000' });
  assert.equal(limited.status, 429);
  assert.equal(limited.body.error.code, 'RATE_LIMITED');
  assert.match(limited.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
  assert.equal((await api('GET', '/devices')).status, 200);
});

test('an image body cut short leaves no file behind and no image; while it streams, REST commands past admin.max_pending_per_client get 429', async (t) => {
  const { adminPort, dir } = await startFullInstance(t, { admin: { max_pending_per_client: 1 } });
  const api = client(adminPort);
  const uploads = path.join(dir, 'data', 'uploads');
  const request = httpRequest({
    host: '127.0.0.1',
    port: adminPort,
    method: 'PUT',
    path: `/api/v1/images/${IMAGE_ID}`,
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/octet-stream', 'content-length': String(1024 * 1024) },
  });
  request.on('error', () => undefined);
  request.write(randomBytes(100 * 1024));
  // The bytes are on disk as they arrive: the upload file exists before the body is complete.
  await waitFor(async () => (await readdir(uploads)).length === 1, 'the upload file appears');
  const busy = await api('GET', '/images');
  assert.equal(busy.status, 429);
  assert.deepEqual(busy.body, { error: { code: 'TOO_MANY_PENDING', message: 'at most 1 REST requests in flight (admin.max_pending_per_client)' } });
  request.destroy();
  await waitFor(async () => (await readdir(uploads)).length === 0, 'the upload file is removed');
  assert.deepEqual((await api('GET', '/images')).body, { images: [] });
});

test('a read-only key reads but gets 403 FORBIDDEN on a change (an image before its body is read); audit.list shows every REST change with the key name and via rest', async (t) => {
  const readOnlyKey = 'grafana-key-0123456789abcdefgh';
  const keys = [{ name: 'grafana', role: 'read-only' as const, key_sha256: createHash('sha256').update(readOnlyKey).digest('hex') }];
  const { adminPort, dir } = await startFullInstance(t, { admin: { keys } });
  const api = client(adminPort);
  const asGrafana = { key: readOnlyKey };

  // Reads are fine; they are not audited.
  assert.equal((await api('GET', '/devices', asGrafana)).status, 200);
  assert.deepEqual((await api('GET', '/service-accounts', asGrafana)).body, { accounts: [] });
  // Changes are refused, with the key and its role named.
  const refused = await api('POST', '/devices', { ...asGrafana, json: { uid: 'dev-2' } });
  assert.equal(refused.status, 403);
  assert.deepEqual(refused.body, { error: { code: 'FORBIDDEN', message: 'devices.add changes something; the key "grafana" is read-only (a key with role "admin" may)' } });
  assert.equal((await api('POST', '/service-accounts', { ...asGrafana, json: { name: 'billing' } })).status, 403);
  // Only the headers are sent: the refusal comes before the server waits for a byte of the image.
  const image = await putStream(adminPort, `/images/${IMAGE_ID}`, Buffer.alloc(0), { length: 4096, send: false, key: readOnlyKey });
  assert.equal(image.status, 403);
  assert.equal(image.body.error.code, 'FORBIDDEN');
  assert.equal(image.headers.get('connection'), 'close', 'the unread body is not drained');
  assert.deepEqual(await readdir(path.join(dir, 'data', 'uploads')), []);

  // The main key (named "default", role admin) manages service accounts over REST.
  const added = await api('POST', '/service-accounts', { json: { name: 'billing', password: 'billing-secret-123456' } });
  assert.equal(added.status, 201, JSON.stringify(added.body));
  assert.deepEqual(added.body, { name: 'billing', password: 'billing-secret-123456' });
  assert.deepEqual(
    (await api('GET', '/service-accounts', asGrafana)).body.accounts.map((a: { name: string }) => a.name),
    ['billing'],
  );
  assert.equal((await api('DELETE', '/service-accounts/billing', asGrafana)).status, 403);
  assert.deepEqual((await api('DELETE', '/service-accounts/billing')).body, { name: 'billing', removed: true });
  assert.equal((await api('DELETE', '/service-accounts/billing')).status, 404);
  // A failed upload is audited as images.add too.
  const bad = await putStream(adminPort, `/images/${IMAGE_ID}?sha256=${'0'.repeat(64)}`, randomBytes(1024));
  assert.equal(bad.status, 400);

  const audit = await api('GET', '/audit?limit=100', asGrafana);
  assert.equal(audit.status, 200);
  assert.deepEqual(
    audit.body.entries.map((e: { actor: string; via: string; command: string; target?: string; result: string }) => [e.actor, e.via, e.command, e.target, e.result]),
    [
      ['grafana', 'rest', 'devices.add', 'dev-2', 'FORBIDDEN'],
      ['grafana', 'rest', 'service-accounts.add', 'billing', 'FORBIDDEN'],
      ['grafana', 'rest', 'images.add', IMAGE_ID, 'FORBIDDEN'],
      ['default', 'rest', 'service-accounts.add', 'billing', 'ok'],
      ['grafana', 'rest', 'service-accounts.remove', 'billing', 'FORBIDDEN'],
      ['default', 'rest', 'service-accounts.remove', 'billing', 'ok'],
      ['default', 'rest', 'service-accounts.remove', 'billing', 'NOT_FOUND'],
      ['default', 'rest', 'images.add', IMAGE_ID, 'INVALID_ARGUMENT'],
    ],
  );
  assert.equal((await api('GET', '/audit?limit=1', asGrafana)).body.entries.length, 1);
});
