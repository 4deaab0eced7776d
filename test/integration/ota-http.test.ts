// HTTP(S) firmware downloads with real requests on loopback (RFC 9110 section 14: ranges).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { test } from 'node:test';
import { issueDeviceCertificate } from '../../src/certs/index.js';
import { validateConfig } from '../../src/config/index.js';
import { deviceCredentials } from '../../src/devices/index.js';
import type { ImageInfo } from '../../src/events.js';
import { FileBlobStore } from '../../src/store/blob-file.js';
import { tempDir, waitFor } from '../helpers/index.js';
import { firmware, startOta, type OtaHarness } from '../helpers/ota-harness.js';

const ID = '1.2.3-4-g965b9df';

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface TlsClient {
  ca: string;
  cert?: string;
  key?: string;
}

function get(base: string, pathname: string, options: { method?: string; headers?: Record<string, string>; tls?: TlsClient } = {}): Promise<Reply> {
  const url = new URL(pathname, base);
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const request = transport.request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false, ...options.tls }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.setTimeout(10_000, () => request.destroy(new Error('request timed out')));
    request.end();
  });
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function withImage(h: OtaHarness, size: number): Promise<{ bytes: Buffer; image: ImageInfo; base: string }> {
  const bytes = firmware(size, 11);
  const { image } = await h.ota.addImage({ id: ID, imageType: 'primary', source: { kind: 'bytes', data: bytes } });
  const base = h.http?.url();
  assert.ok(base);
  return { bytes, image, base };
}

test('GET serves the whole image with its length, type, ETag = SHA-256 and Accept-Ranges', async (t) => {
  const h = await startOta(t, { http: true });
  const { bytes, base } = await withImage(h, 100_000);
  const reply = await get(base, `/images/${ID}`);
  assert.equal(reply.status, 200);
  assert.equal(reply.headers['content-length'], '100000');
  assert.equal(reply.headers['content-type'], 'application/octet-stream');
  assert.equal(reply.headers['accept-ranges'], 'bytes');
  assert.equal(reply.headers.etag, `"${sha256(bytes)}"`);
  assert.equal(sha256(reply.body), sha256(bytes));
  // Counted at the response's 'finish' on the server, which may come after this client has read the body.
  const counted = /nucleon_ota_http_requests_total\{method="GET",status="200"\} 1\n/;
  await waitFor(async () => counted.test(await h.metrics.metrics()), 'the request counted');
});

test('many 2 KB ranges (as nRF9160 FOTA asks) reassemble to the image, and progress is counted for the device', async (t) => {
  const h = await startOta(t, { http: true });
  const size = 50_000;
  const { bytes, base } = await withImage(h, size);
  const parts: Buffer[] = [];
  for (let start = 0; start < size; start += 2048) {
    const last = Math.min(start + 2047, size - 1);
    const reply = await get(base, `/images/${ID}?uid=dev-http`, { headers: { Range: `bytes=${start}-${last}` } });
    assert.equal(reply.status, 206);
    assert.equal(reply.headers['content-range'], `bytes ${start}-${last}/${size}`);
    assert.equal(reply.headers['content-length'], String(last - start + 1));
    parts.push(reply.body);
  }
  assert.equal(sha256(Buffer.concat(parts)), sha256(bytes));
  // The response ends before the progress is recorded; wait for the report.
  const state = await waitFor(async () => {
    const current = await h.ota.deviceState('dev-http');
    return current?.bytesServed === size ? current : undefined;
  }, 'the HTTP progress of dev-http');
  assert.equal(state?.downloadImageId, ID);
});

test('ranges up to 64 KiB are one read of exactly the range through the blob store; larger ranges are streamed; a failed read is 500', async (t) => {
  const dir = await tempDir(t, 'nucleon-ota-http-spy-');
  const real = new FileBlobStore(dir);
  const reads: [number, number][] = [];
  const streams: [number, number][] = [];
  let failReads = false;
  const spy = Object.assign(Object.create(real) as FileBlobStore, {
    readRange: (sha: string, start: number, end: number) => {
      reads.push([start, end]);
      return failReads ? Promise.reject(new Error('disk gone (test)')) : real.readRange(sha, start, end);
    },
    createReadStream: (sha: string, range?: { start: number; end: number }) => {
      streams.push([range?.start ?? 0, range?.end ?? -1]);
      return real.createReadStream(sha, range);
    },
  });
  const h = await startOta(t, { http: true, blobs: spy });
  const { bytes, base } = await withImage(h, 300_000);
  const small = await get(base, `/images/${ID}`, { headers: { Range: 'bytes=2048-4095' } });
  assert.equal(small.status, 206);
  assert.deepEqual(small.body, bytes.subarray(2048, 4096));
  const edge = await get(base, `/images/${ID}`, { headers: { Range: `bytes=0-${64 * 1024 - 1}` } });
  assert.deepEqual(edge.body, bytes.subarray(0, 64 * 1024));
  assert.deepEqual(reads, [
    [2048, 4096],
    [0, 64 * 1024],
  ]);
  assert.deepEqual(streams, []);
  const large = await get(base, `/images/${ID}`, { headers: { Range: `bytes=0-${64 * 1024}` } });
  assert.deepEqual(large.body, bytes.subarray(0, 64 * 1024 + 1));
  const whole = await get(base, `/images/${ID}`);
  assert.equal(sha256(whole.body), sha256(bytes));
  assert.deepEqual(streams, [
    [0, 64 * 1024 + 1],
    [0, 300_000],
  ]);
  // The small-range read happens before the status line, so a failure is an answer, not a cut-off body.
  failReads = true;
  const failed = await get(base, `/images/${ID}`, { headers: { Range: 'bytes=0-2047' } });
  assert.equal(failed.status, 500);
});

test('open and suffix ranges; a range past the end is 416 with Content-Range bytes */size', async (t) => {
  const h = await startOta(t, { http: true });
  const { bytes, base } = await withImage(h, 10_000);
  const open = await get(base, `/images/${ID}`, { headers: { Range: 'bytes=9000-' } });
  assert.equal(open.status, 206);
  assert.deepEqual(open.body, bytes.subarray(9000));
  const suffix = await get(base, `/images/${ID}`, { headers: { Range: 'bytes=-100' } });
  assert.equal(suffix.headers['content-range'], 'bytes 9900-9999/10000');
  assert.deepEqual(suffix.body, bytes.subarray(9900));
  const clipped = await get(base, `/images/${ID}`, { headers: { Range: 'bytes=9990-20000' } });
  assert.equal(clipped.headers['content-range'], 'bytes 9990-9999/10000');
  for (const range of ['bytes=10000-', 'bytes=20000-20010', 'bytes=-0']) {
    const reply = await get(base, `/images/${ID}`, { headers: { Range: range } });
    assert.equal(reply.status, 416, range);
    assert.equal(reply.headers['content-range'], 'bytes */10000');
  }
  // Ranges we cannot use are ignored (RFC 9110 14.2): the whole image.
  for (const range of ['items=0-1', 'bytes=5-2', 'bytes=0-1,5-6']) {
    const reply = await get(base, `/images/${ID}`, { headers: { Range: range } });
    assert.equal(reply.status, 200, range);
    assert.equal(reply.body.length, 10_000);
  }
});

test('If-Range resumes only while the image is unchanged; If-None-Match gives 304', async (t) => {
  const h = await startOta(t, { http: true });
  const { bytes, base } = await withImage(h, 8192);
  const first = await get(base, `/images/${ID}`, { headers: { Range: 'bytes=0-4095' } });
  const etag = String(first.headers.etag);
  const lastModified = String(first.headers['last-modified']);
  const resumed = await get(base, `/images/${ID}`, { headers: { Range: 'bytes=4096-', 'If-Range': etag } });
  assert.equal(resumed.status, 206);
  assert.deepEqual(Buffer.concat([first.body, resumed.body]), bytes);
  const byDate = await get(base, `/images/${ID}`, { headers: { Range: 'bytes=4096-', 'If-Range': lastModified } });
  assert.equal(byDate.status, 206);
  for (const stale of ['"0000"', `W/${etag}`, 'Thu, 01 Jan 2015 00:00:00 GMT']) {
    const reply = await get(base, `/images/${ID}`, { headers: { Range: 'bytes=4096-', 'If-Range': stale } });
    assert.equal(reply.status, 200, stale);
    assert.deepEqual(reply.body, bytes);
  }
  const cached = await get(base, `/images/${ID}`, { headers: { 'If-None-Match': etag } });
  assert.equal(cached.status, 304);
  assert.equal(cached.body.length, 0);
});

test('HEAD answers the headers without a body; wrong ids and paths are 404, other methods 405', async (t) => {
  const h = await startOta(t, { http: true });
  const { base } = await withImage(h, 3000);
  const head = await get(base, `/images/${ID}`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '3000');
  assert.equal(head.body.length, 0);
  const headRange = await get(base, `/images/${ID}`, { method: 'HEAD', headers: { Range: 'bytes=0-9' } });
  assert.equal(headRange.status, 206);
  assert.equal(headRange.headers['content-length'], '10');
  for (const wrong of ['/images/9.9.9-9-gnothere', '/images/nope', '/images/..%2F..%2Fetc%2Fpasswd', '/images/%E0%A4%A', '/', `/images/${ID}/x`, '/../../etc/passwd']) {
    const reply = await get(base, wrong);
    assert.equal(reply.status, 404, wrong);
  }
  const post = await get(base, `/images/${ID}`, { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
});

test('over TLS with require_auth: no certificate is 401, a device certificate downloads and is credited to its CN', async (t) => {
  const h = await startOta(t, { http: true, config: { certs: { auto_generate: true }, ota: { http: { tls: true, require_auth: true } } } });
  const { bytes, base } = await withImage(h, 4000);
  assert.match(base, /^https:/);
  const certsDir = path.join(h.dir, 'certs');
  const ca = await readFile(path.join(certsDir, 'ca.crt'), 'utf8');
  const anonymous = await get(base, `/images/${ID}`, { tls: { ca } });
  assert.equal(anonymous.status, 401);
  const config = validateConfig({ certs: { dir: certsDir } });
  const files = await issueDeviceCertificate(config.certs, 'dev-cert', path.join(h.dir, 'device'));
  const device = { ca, cert: await readFile(files.certPath, 'utf8'), key: await readFile(files.keyPath, 'utf8') };
  const ok = await get(base, `/images/${ID}`, { tls: device, headers: { Range: 'bytes=0-3999' } });
  assert.equal(ok.status, 206);
  assert.deepEqual(ok.body, bytes);
  const impostor = await get(base, `/images/${ID}?uid=someone-else`, { tls: device });
  assert.equal(impostor.status, 403);
  await waitFor(async () => (await h.ota.deviceState('dev-cert'))?.bytesServed === 4000, 'the HTTPS progress of dev-cert');
});

test('require_auth also takes the device password as HTTP Basic (for devices behind a TLS proxy)', async (t) => {
  const h = await startOta(t, { http: true, config: { ota: { http: { require_auth: true } } } });
  const { bytes, base } = await withImage(h, 1500);
  const password = await deviceCredentials(h.store).add('dev-pw');
  const basic = (user: string, secret: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:${secret}`).toString('base64')}` });
  const none = await get(base, `/images/${ID}`);
  assert.equal(none.status, 401);
  assert.match(String(none.headers['www-authenticate']), /^Basic realm="nucleon-ota"/);
  assert.equal((await get(base, `/images/${ID}`, { headers: basic('dev-pw', `${password}x`) })).status, 401);
  assert.equal((await get(base, `/images/${ID}`, { headers: basic('nobody', password) })).status, 401);
  const ok = await get(base, `/images/${ID}`, { headers: basic('dev-pw', password) });
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body, bytes);
  assert.equal((await get(base, `/images/${ID}?uid=other`, { headers: basic('dev-pw', password) })).status, 403);
  await waitFor(async () => (await h.ota.deviceState('dev-pw'))?.bytesServed === 1500, 'the progress of dev-pw');
});

test('a revoked device downloads nothing: 403 with the right password or its certificate (README "Revocation")', async (t) => {
  const revoked = new Set<string>();
  const h = await startOta(t, { http: true, config: { ota: { http: { require_auth: true } } }, revocations: { check: ({ uid }) => (revoked.has(uid) ? { uid } : undefined) } });
  const { base } = await withImage(h, 1500);
  const password = await deviceCredentials(h.store).add('dev-rv');
  const headers = { Authorization: `Basic ${Buffer.from(`dev-rv:${password}`).toString('base64')}` };
  assert.equal((await get(base, `/images/${ID}`, { headers })).status, 200);
  revoked.add('dev-rv');
  const refused = await get(base, `/images/${ID}`, { headers });
  assert.equal(refused.status, 403);
  assert.match(refused.body.toString(), /revoked/);
});

test('HTTP Basic shares the login limits: past the failures an address may have, it gets 429 with Retry-After without a password check, even with the right password', async (t) => {
  const h = await startOta(t, { http: true, config: { ota: { http: { require_auth: true } }, limits: { login_failures_per_address: 2 } } });
  const { base } = await withImage(h, 1500);
  const password = await deviceCredentials(h.store).add('dev-limited');
  const basic = (secret: string) => ({ Authorization: `Basic ${Buffer.from(`dev-limited:${secret}`).toString('base64')}` });
  assert.deepEqual([(await get(base, `/images/${ID}`, { headers: basic('wrong-1') })).status, (await get(base, `/images/${ID}`, { headers: basic('wrong-2') })).status], [401, 401]);
  const limited = await get(base, `/images/${ID}`, { headers: basic(password) });
  assert.equal(limited.status, 429);
  assert.equal(limited.headers['retry-after'], '30');
  const metrics = await h.metrics.metrics();
  assert.match(metrics, /nucleon_password_checks_total\{result="wrong_password"\} 2/);
  assert.match(metrics, /nucleon_password_checks_total\{result="login_limited_address"\} 1/);
});

test('stop closes the listener and open connections, and is safe twice', async (t) => {
  const h = await startOta(t, { http: true });
  const { base } = await withImage(h, 1000);
  assert.equal((await get(base, `/images/${ID}`)).status, 200);
  await h.http?.stop();
  await h.http?.stop();
  await assert.rejects(get(base, `/images/${ID}`), /ECONNREFUSED/);
});
