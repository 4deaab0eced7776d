import { parseArgs } from 'node:util';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { deviceCertificateSerial, initCertificates, issueDeviceCertificate, signCrl } from '../certs/index.js';
import { loadConfigFile, type Config } from '../config/index.js';
import { NucleonError } from '../errors.js';
import type { Revocation } from '../revocation/index.js';
import { ADMIN_OPTIONS } from './admin-client.js';
import { listRevocations, revokeSerial } from './certs-revocation.js';
import type { CliAction } from './cli-action.js';

export const certsUsage = `nucleon certs init [--config <file>] [--force]
nucleon certs device <uid> [--config <file>] [--out <dir>] [--force | --rotate]
nucleon certs crl [--config <file>] [--out <file>]

init     creates a CA (ca.crt, ca.key) and a server certificate (server.crt,
         server.key) in certs.dir. Refuses to replace existing files unless
         --force (device certificates from the old CA then stop working).
device   creates <uid>.key and <uid>.crt (CN = uid, signed by the CA) plus a
         copy of ca.crt, in --out (default: <certs.dir>/devices). Flash all
         three onto the device. Refuses to replace an existing key or
         certificate of that uid unless --force or --rotate. --rotate: a new key and certificate replace
         the ones in --out, and the old certificate's serial is revoked
         certs.rotation_grace_s later (time to flash the new ones).
crl      a CRL signed by the CA listing our revoked certificates (each
         revoked serial, and for each revoked device the certificate in
         <certs.dir>/devices), PEM on stdout or in --out.

The revocation list is read and written in the embedded store with the
server stopped, else through the admin endpoint (--url, --api-key).`;

/** All three sign or write files on this machine (the CA key never leaves it). */
export const certsActions = { init: 'local', device: 'local', crl: 'local' } as const satisfies Record<string, CliAction>;

/** Exit code 2 with a one-line reason, as for other usage errors. */
function usageError(message: string): number {
  process.stderr.write(`nucleon: ${message}\n`);
  return 2;
}

/** `nucleon certs <init|device>`; resolves with the exit code. */
export async function certs(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action === 'init') {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { config: { type: 'string', short: 'c', default: 'config.toml' }, force: { type: 'boolean', default: false } },
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length > 0) return usageError(`certs init takes no arguments, got ${positionals.join(' ')}`);
    const { config } = await loadConfigFile(values.config ?? 'config.toml');
    const tls = await initCertificates(config.certs, { force: values.force === true });
    process.stdout.write(`CA:                 ${tls.caPath}\nserver certificate: ${tls.certPath}\nserver key:         ${tls.keyPath}\n`);
    return 0;
  }
  if (action === 'device') {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { ...ADMIN_OPTIONS, config: { type: 'string', short: 'c', default: 'config.toml' }, out: { type: 'string', short: 'o' }, force: { type: 'boolean', default: false }, rotate: { type: 'boolean', default: false } },
      strict: true,
      allowPositionals: true,
    });
    const [uid, ...extra] = positionals;
    if (uid === undefined || extra.length > 0) return usageError('certs device takes exactly one <uid>');
    const { config } = await loadConfigFile(values.config ?? 'config.toml');
    const old = values.rotate ? await deviceCertificateSerial(config.certs, uid, values.out) : undefined;
    if (values.rotate && old === undefined) throw new NucleonError('NOT_FOUND', `no certificate of ${uid} to rotate in ${path.resolve(values.out ?? path.join(config.certs.dir, 'devices'))}`);
    // --rotate replaces on purpose; otherwise an existing key is replaced only with --force.
    const files = await issueDeviceCertificate(config.certs, uid, values.out, { ifExists: values.force === true || values.rotate === true ? 'replace' : 'refuse' });
    process.stdout.write(`certificate: ${files.certPath}\nkey:         ${files.keyPath}\nCA:          ${files.caPath}\n`);
    if (old !== undefined) {
      const effectiveAt = Date.now() + config.certs.rotation_grace_s * 1000;
      try {
        await revokeSerial(config, values, { serial: old, uid, reason: 'rotated', effectiveAt });
      } catch (error) {
        process.stderr.write(`nucleon: the new certificate is written, but the old one (serial ${old}) is not revoked yet: run the rotation's revoke again (admin certs.revoke)\n`);
        throw error;
      }
      process.stdout.write(`old serial:  ${old}, refused from ${new Date(effectiveAt).toISOString()}\n`);
    }
    return 0;
  }
  if (action === 'crl') {
    const { values, positionals } = parseArgs({ args: rest, options: { ...ADMIN_OPTIONS, config: { type: 'string', short: 'c', default: 'config.toml' }, out: { type: 'string', short: 'o' } }, strict: true, allowPositionals: true });
    if (positionals.length > 0) return usageError(`certs crl takes no arguments, got ${positionals.join(' ')}`);
    const { config } = await loadConfigFile(values.config ?? 'config.toml');
    const pem = await signCrl(config.certs, await crlEntries(config, await listRevocations(config, values)), config.certs.crl_days);
    if (values.out === undefined) process.stdout.write(pem);
    else {
      await writeFile(values.out, pem);
      process.stderr.write(`CRL written to ${values.out}\n`);
    }
    return 0;
  }
  return usageError(`unknown certs action ${JSON.stringify(action ?? '')}: expected ${Object.keys(certsActions).join(', ')} (see nucleon certs --help)`);
}

/** What a CRL of ours lists: revoked serials in effect, and the certificate in certs.dir of each revoked device. */
async function crlEntries(config: Readonly<Config>, list: readonly Revocation[]): Promise<{ serial: string; revokedAt: Date }[]> {
  const now = Date.now();
  const entries = new Map<string, Date>();
  for (const revocation of list) {
    if (revocation.effectiveAt > now) continue;
    const serial = revocation.serial ?? (revocation.uid !== undefined ? await deviceCertificateSerial(config.certs, revocation.uid) : undefined);
    if (serial !== undefined) entries.set(serial, new Date(revocation.effectiveAt));
  }
  return [...entries].map(([serial, revokedAt]) => ({ serial, revokedAt }));
}
