import { parseArgs } from 'node:util';
import { initCertificates, issueDeviceCertificate } from '../certs/index.js';
import { loadConfigFile } from '../config/index.js';
import type { CliAction } from './cli-action.js';

export const certsUsage = `nucleon certs init [--config <file>] [--force]
nucleon certs device <uid> [--config <file>] [--out <dir>]

init     creates a CA (ca.crt, ca.key) and a server certificate (server.crt,
         server.key) in certs.dir. Refuses to replace existing files unless
         --force (device certificates from the old CA then stop working).
device   creates <uid>.key and <uid>.crt (CN = uid, signed by the CA) plus a
         copy of ca.crt, in --out (default: <certs.dir>/devices). Flash all
         three onto the device.`;

/** Both write files on this machine (the CA key never leaves it). */
export const certsActions = { init: 'local', device: 'local' } as const satisfies Record<string, CliAction>;

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
      options: { config: { type: 'string', short: 'c', default: 'config.toml' }, out: { type: 'string', short: 'o' } },
      strict: true,
      allowPositionals: true,
    });
    const [uid, ...extra] = positionals;
    if (uid === undefined || extra.length > 0) return usageError('certs device takes exactly one <uid>');
    const { config } = await loadConfigFile(values.config ?? 'config.toml');
    const files = await issueDeviceCertificate(config.certs, uid, values.out);
    process.stdout.write(`certificate: ${files.certPath}\nkey:         ${files.keyPath}\nCA:          ${files.caPath}\n`);
    return 0;
  }
  return usageError(`unknown certs action ${JSON.stringify(action ?? '')}: expected ${Object.keys(certsActions).join(' or ')} (see nucleon certs --help)`);
}
