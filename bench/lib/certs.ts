import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * One CA and server certificate (ECDSA P-256) shared by all three brokers, so
 * every TLS handshake and record costs the same. Laid out as Nucleon's
 * `certs.dir` expects (ca.crt, ca.key, server.crt, server.key).
 */
export interface BenchCerts {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  madeBy: 'src/certs' | 'openssl';
}

type CertsModule = typeof import('../../src/certs/index.js');

/**
 * Made by Nucleon's own `src/certs` (the built `dist/certs`, ECDSA P-256) when
 * it is there; otherwise with openssl, as bench-only tooling.
 */
export async function makeBenchCerts(dir: string): Promise<BenchCerts> {
  const built = fileURLToPath(new URL('../../dist/certs/index.js', import.meta.url));
  if (existsSync(built)) {
    const certs = (await import(pathToFileURL(built).href)) as CertsModule;
    const tls = await certs.initCertificates({ dir, auto_generate: true, server_names: [], ca_days: 2, server_days: 2, device_days: 2, rotation_grace_s: 0, crl_days: 1 }, { force: true });
    return { dir, caCert: tls.caPath, serverCert: tls.certPath, serverKey: tls.keyPath, madeBy: 'src/certs' };
  }
  return makeWithOpenssl(dir);
}

async function makeWithOpenssl(dir: string): Promise<BenchCerts> {
  const file = (name: string) => path.join(dir, name);
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ext = file('server.ext');
  await writeFile(ext, 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n');
  run(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', file('ca.key.sec1')]);
  run(['pkcs8', '-topk8', '-nocrypt', '-in', file('ca.key.sec1'), '-out', file('ca.key')]);
  run(['req', '-x509', '-new', '-key', file('ca.key'), '-subj', '/CN=Nucleon bench CA', '-days', '2', '-out', file('ca.crt')]);
  run(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', file('server.key.sec1')]);
  run(['pkcs8', '-topk8', '-nocrypt', '-in', file('server.key.sec1'), '-out', file('server.key')]);
  run(['req', '-new', '-key', file('server.key'), '-subj', '/CN=localhost', '-out', file('server.csr')]);
  run(['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', file('server.crt')]);
  for (const name of ['ca.crt', 'server.crt', 'server.key']) if (!existsSync(file(name))) throw new Error(`openssl did not produce ${name}`);
  return { dir, caCert: file('ca.crt'), serverCert: file('server.crt'), serverKey: file('server.key'), madeBy: 'openssl' };
}
