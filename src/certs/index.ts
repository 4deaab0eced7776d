import os from 'node:os';
import path from 'node:path';
import type { Config } from '../config/index.js';
import { NucleonError } from '../errors.js';
import type { Logger } from '../logger.js';
import { isValidUid } from '../protocol/index.js';
import { CERT_MODE, KEY_MODE, exists, readText, writeFileAtomic } from './files.js';
import { createCa, createClientCertificate, createCrl, createServerCertificate, loadIssuer, notAfterOf, serialOf, type CrlEntry } from './x509.js';

export { commonNameOf, createCrl, issuerOf, readCrls, serialOf, type CrlEntry, type CrlList } from './x509.js';

export type CertsConfig = Config['certs'];

/** What a TLS listener needs: paths (for messages and clients) and the PEM text. */
export interface ServerTls {
  dir: string;
  caPath: string;
  certPath: string;
  keyPath: string;
  ca: string;
  cert: string;
  key: string;
}

export interface DeviceCertificateFiles {
  certPath: string;
  keyPath: string;
  caPath: string;
}

const CA_NAME = 'Nucleon development CA';

function filesIn(dir: string) {
  return {
    caPath: path.join(dir, 'ca.crt'),
    caKeyPath: path.join(dir, 'ca.key'),
    certPath: path.join(dir, 'server.crt'),
    keyPath: path.join(dir, 'server.key'),
  };
}

/** localhost, both loopback addresses, this host's name and the configured extra names. */
export function serverNames(certs: CertsConfig): string[] {
  const names = ['localhost', '127.0.0.1', '::1'];
  const host = os.hostname();
  // A SAN dNSName must be a DNS name; some container host names are not.
  if (/^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})$/.test(host)) names.push(host);
  names.push(...certs.server_names);
  return [...new Set(names)];
}

// Runners that start together (MQTT, OTA HTTPS) must not both generate a CA.
const generating = new Map<string, Promise<ServerTls>>();

/**
 * Loads `ca.crt`, `server.crt` and `server.key` from `certs.dir`. When they are
 * absent and `certs.auto_generate` is on, generates a development CA (unless
 * `ca.crt` + `ca.key` exist) and a server certificate, and logs where.
 */
export async function ensureServerTls(certs: CertsConfig, logger: Logger): Promise<ServerTls> {
  const dir = path.resolve(certs.dir);
  const pending = generating.get(dir);
  if (pending) return pending;
  const work = loadOrGenerate(certs, dir, logger).finally(() => generating.delete(dir));
  generating.set(dir, work);
  return work;
}

async function loadOrGenerate(certs: CertsConfig, dir: string, logger: Logger): Promise<ServerTls> {
  const files = filesIn(dir);
  const missing = [];
  for (const file of [files.caPath, files.certPath, files.keyPath]) if (!(await exists(file))) missing.push(path.basename(file));
  if (missing.length === 0) {
    const tls = await readServerTls(dir);
    warnIfExpiring(tls.cert, tls.certPath, logger);
    return tls;
  }
  if (!certs.auto_generate) {
    throw new NucleonError(
      'CERTS_MISSING',
      `no TLS certificates in ${dir} (missing ${missing.join(', ')}): run "nucleon certs init" or set certs.auto_generate = true`,
    );
  }
  const haveCa = (await exists(files.caPath)) && (await exists(files.caKeyPath));
  if (!haveCa) {
    if (await exists(files.caPath)) {
      throw new NucleonError('CA_KEY_MISSING', `${files.caPath} exists but ${files.caKeyPath} does not, so no server certificate can be signed: add the key or run "nucleon certs init --force"`);
    }
    await writeCa(certs, dir);
  }
  await writeServerCertificate(certs, dir);
  logger.warn(
    { dir, ca: files.caPath, names: serverNames(certs) },
    haveCa ? 'generated a server certificate signed by the existing CA' : 'generated a development CA and server certificate; give devices ca.crt',
  );
  return readServerTls(dir);
}

/**
 * `nucleon certs init`: a new CA and server certificate. Refuses to replace
 * existing ones unless `force` (replacing the CA invalidates every device certificate).
 */
export async function initCertificates(certs: CertsConfig, options: { force?: boolean } = {}): Promise<ServerTls> {
  const dir = path.resolve(certs.dir);
  const files = filesIn(dir);
  if (!options.force) {
    const present = [];
    for (const file of Object.values(files)) if (await exists(file)) present.push(path.basename(file));
    if (present.length > 0) {
      throw new NucleonError('CERTS_EXIST', `${dir} already holds ${present.join(', ')}; use --force to replace them (device certificates from the old CA stop working)`);
    }
  }
  await writeCa(certs, dir);
  await writeServerCertificate(certs, dir);
  return readServerTls(dir);
}

/**
 * A device key and certificate (CN = uid) signed by the CA, with a copy of `ca.crt` beside them.
 * An existing key and certificate of that uid are replaced, or with `ifExists: 'refuse'` (the CLI without --force) kept: DEVICE_CERT_EXISTS.
 */
export async function issueDeviceCertificate(certs: CertsConfig, uid: string, outDir?: string, options: { ifExists?: 'refuse' | 'replace' } = {}): Promise<DeviceCertificateFiles> {
  if (!isValidUid(uid)) throw new NucleonError('INVALID_ARGUMENT', `invalid device uid ${JSON.stringify(uid)}: expected 1 to 64 of A-Z a-z 0-9 _ -`);
  const dir = path.resolve(certs.dir);
  const issuer = await readIssuer(dir);
  const out = path.resolve(outDir ?? path.join(dir, 'devices'));
  const result = { certPath: path.join(out, `${uid}.crt`), keyPath: path.join(out, `${uid}.key`), caPath: path.join(out, 'ca.crt') };
  // The key may be on a device already: replacing it locks that device out until it is flashed again.
  // The CLI refuses unless --force; callers that reissue on purpose (tests, tools) replace.
  if (options.ifExists === 'refuse') {
    const present = [];
    for (const file of [result.keyPath, result.certPath]) if (await exists(file)) present.push(path.basename(file));
    if (present.length > 0) {
      throw new NucleonError('DEVICE_CERT_EXISTS', `${out} already holds ${present.join(' and ')} for device ${uid}; use --force to replace them (a device still using the old key must then be flashed again)`);
    }
  }
  const pair = await createClientCertificate(issuer, uid, certs.device_days);
  await writeFileAtomic(result.keyPath, pair.key, KEY_MODE);
  await writeFileAtomic(result.certPath, pair.cert, CERT_MODE);
  await writeFileAtomic(result.caPath, await readText(filesIn(dir).caPath), CERT_MODE);
  return result;
}

/** The serial of the device certificate in `outDir` (default `<certs.dir>/devices`); undefined when there is none. */
export async function deviceCertificateSerial(certs: CertsConfig, uid: string, outDir?: string): Promise<string | undefined> {
  if (!isValidUid(uid)) throw new NucleonError('INVALID_ARGUMENT', `invalid device uid ${JSON.stringify(uid)}: expected 1 to 64 of A-Z a-z 0-9 _ -`);
  const file = path.join(path.resolve(outDir ?? path.join(certs.dir, 'devices')), `${uid}.crt`);
  if (!(await exists(file))) return undefined;
  try {
    return serialOf(await readText(file));
  } catch (error) {
    throw new NucleonError('CERT_INVALID', `${file} is not a PEM certificate`, { cause: error });
  }
}

/** A CRL (PEM) signed by the CA in `certs.dir`, valid for `days`. */
export async function signCrl(certs: CertsConfig, entries: readonly CrlEntry[], days: number): Promise<string> {
  return createCrl(await readIssuer(path.resolve(certs.dir)), entries, days);
}

async function readIssuer(dir: string) {
  const files = filesIn(dir);
  for (const file of [files.caPath, files.caKeyPath]) {
    if (!(await exists(file))) throw new NucleonError('CA_MISSING', `${file} not found: run "nucleon certs init" (or start the server once) first`);
  }
  return loadIssuer(await readText(files.caPath), await readText(files.caKeyPath));
}

async function writeCa(certs: CertsConfig, dir: string): Promise<void> {
  const files = filesIn(dir);
  const ca = await createCa(CA_NAME, certs.ca_days);
  await writeFileAtomic(files.caKeyPath, ca.key, KEY_MODE);
  await writeFileAtomic(files.caPath, ca.cert, CERT_MODE);
}

async function writeServerCertificate(certs: CertsConfig, dir: string): Promise<void> {
  const files = filesIn(dir);
  const server = await createServerCertificate(await readIssuer(dir), serverNames(certs), certs.server_days);
  await writeFileAtomic(files.keyPath, server.key, KEY_MODE);
  await writeFileAtomic(files.certPath, server.cert, CERT_MODE);
}

async function readServerTls(dir: string): Promise<ServerTls> {
  const files = filesIn(dir);
  const [ca, cert, key] = await Promise.all([readText(files.caPath), readText(files.certPath), readText(files.keyPath)]);
  return { dir, caPath: files.caPath, certPath: files.certPath, keyPath: files.keyPath, ca, cert, key };
}

function warnIfExpiring(certPem: string, file: string, logger: Logger): void {
  let notAfter: Date;
  try {
    notAfter = notAfterOf(certPem);
  } catch (error) {
    throw new NucleonError('CERT_INVALID', `${file} is not a PEM certificate`, { cause: error });
  }
  const daysLeft = Math.floor((notAfter.getTime() - Date.now()) / 86_400_000);
  if (daysLeft < 30) logger.warn({ file, notAfter: notAfter.toISOString(), daysLeft }, 'the server certificate expires soon or has expired');
}
