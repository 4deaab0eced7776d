import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { once } from 'node:events';
import path from 'node:path';
import { test } from 'node:test';
import tls from 'node:tls';
import { commonNameOf, ensureServerTls, initCertificates, issueDeviceCertificate } from '../../src/certs/index.js';
import { validateConfig } from '../../src/config/index.js';
import { NucleonError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { requireBinary, tempDir } from '../helpers/index.js';

function certsConfig(dir: string, extra: Record<string, unknown> = {}) {
  return validateConfig({ certs: { dir: path.join(dir, 'certs'), ...extra } }).certs;
}

function openssl(args: string[]): string {
  const result = spawnSync('openssl', args, { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout;
}

test('ensureServerTls generates a CA and a server certificate once, keys 0600, SANs included, and reloads them', async (t) => {
  const dir = await tempDir(t);
  const certs = certsConfig(dir, { server_names: ['broker.example.com', '10.1.2.3'] });
  const first = await ensureServerTls(certs, silentLogger());
  assert.equal(first.caPath, path.join(dir, 'certs', 'ca.crt'));
  assert.match(first.cert, /^-----BEGIN CERTIFICATE-----/);
  assert.match(first.key, /^-----BEGIN PRIVATE KEY-----/);
  for (const key of [first.keyPath, path.join(dir, 'certs', 'ca.key')]) assert.equal((await stat(key)).mode & 0o777, 0o600, key);
  const again = await ensureServerTls(certs, silentLogger());
  assert.equal(again.cert, first.cert, 'existing certificates are loaded, not replaced');
  assert.equal(again.ca, first.ca);

  if (!requireBinary(t, 'openssl', 'openssl')) return;
  assert.match(openssl(['verify', '-CAfile', first.caPath, first.certPath]), /server\.crt: OK/);
  const text = openssl(['x509', '-in', first.certPath, '-noout', '-ext', 'subjectAltName,extendedKeyUsage']);
  for (const name of ['DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:0:0:0:0:0:0:0:1', 'DNS:broker.example.com', 'IP Address:10.1.2.3', 'TLS Web Server Authentication']) {
    assert.ok(text.includes(name), `${name} missing in\n${text}`);
  }
});

test('concurrent ensureServerTls calls in one process share one CA', async (t) => {
  const dir = await tempDir(t);
  const certs = certsConfig(dir);
  const [a, b] = await Promise.all([ensureServerTls(certs, silentLogger()), ensureServerTls(certs, silentLogger())]);
  assert.equal(a.ca, b.ca);
  assert.equal(a.cert, b.cert);
});

test('without certificates and auto_generate = false, ensureServerTls fails with CERTS_MISSING and a hint', async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(ensureServerTls(certsConfig(dir, { auto_generate: false }), silentLogger()), (error: unknown) => {
    assert.ok(error instanceof NucleonError);
    assert.equal(error.code, 'CERTS_MISSING');
    assert.match(error.message, /missing ca\.crt, server\.crt, server\.key\): run "nucleon certs init"/);
    return true;
  });
});

test('initCertificates refuses to replace a CA unless forced', async (t) => {
  const dir = await tempDir(t);
  const certs = certsConfig(dir);
  const first = await initCertificates(certs);
  await assert.rejects(initCertificates(certs), { code: 'CERTS_EXIST' });
  const forced = await initCertificates(certs, { force: true });
  assert.notEqual(forced.ca, first.ca);
});

test('issueDeviceCertificate: CN = uid, signed by the CA, CA copy beside it; bad uid and missing CA are clear errors', async (t) => {
  const dir = await tempDir(t);
  const certs = certsConfig(dir);
  await assert.rejects(issueDeviceCertificate(certs, 'dev1'), { code: 'CA_MISSING' });
  await initCertificates(certs);
  await assert.rejects(issueDeviceCertificate(certs, 'a/b'), { code: 'INVALID_ARGUMENT' });
  const files = await issueDeviceCertificate(certs, '352656100000001', path.join(dir, 'out'));
  assert.deepEqual(files, {
    certPath: path.join(dir, 'out', '352656100000001.crt'),
    keyPath: path.join(dir, 'out', '352656100000001.key'),
    caPath: path.join(dir, 'out', 'ca.crt'),
  });
  assert.equal((await stat(files.keyPath)).mode & 0o777, 0o600);
  const { readFile } = await import('node:fs/promises');
  assert.equal(commonNameOf(await readFile(files.certPath, 'utf8')), '352656100000001');
  const byDefault = await issueDeviceCertificate(certs, 'dev2');
  assert.equal(byDefault.certPath, path.join(dir, 'certs', 'devices', 'dev2.crt'));
  if (!requireBinary(t, 'openssl', 'openssl')) return;
  assert.match(openssl(['verify', '-CAfile', files.caPath, '-purpose', 'sslclient', files.certPath]), /: OK/);
});

test('Node TLS 1.2+ accepts the generated server and device certificates both ways', async (t) => {
  const dir = await tempDir(t);
  const certs = certsConfig(dir);
  const server = await ensureServerTls(certs, silentLogger());
  const device = await issueDeviceCertificate(certs, 'tls-dev');
  const { readFile } = await import('node:fs/promises');
  const seen: { authorized: boolean; cn: unknown }[] = [];
  const listener = tls.createServer({ cert: server.cert, key: server.key, ca: server.ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, (socket) => {
    seen.push({ authorized: socket.authorized, cn: socket.getPeerCertificate().subject?.CN });
    socket.end('ok');
  });
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  t.after(() => new Promise<void>((resolve) => listener.close(() => resolve())));
  const address = listener.address();
  assert.ok(address && typeof address === 'object');
  const client = tls.connect({
    host: '127.0.0.1',
    port: address.port,
    servername: 'localhost',
    ca: await readFile(device.caPath),
    cert: await readFile(device.certPath),
    key: await readFile(device.keyPath),
  });
  const [data] = (await once(client, 'data')) as [Buffer];
  assert.equal(data.toString(), 'ok');
  assert.equal(client.authorized, true, String(client.authorizationError));
  client.destroy();
  assert.deepEqual(seen, [{ authorized: true, cn: 'tls-dev' }]);
});
