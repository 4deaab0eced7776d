// Child process for test/system/ota-crash.test.ts: starts Nucleon and adds an image
// from a file (a FIFO the test feeds), then gets killed part-way.
import { createNucleon, otaRunnerOf, silentLogger } from '../../src/index.js';

const [dir, source] = process.argv.slice(2);
if (!dir || !source) throw new Error('usage: ota-upload-child.ts <dir> <source file>');
const nucleon = createNucleon(
  { store: { path: `${dir}/data` }, certs: { dir: `${dir}/certs`, auto_generate: false }, mqtt: { tls: { enabled: false } }, ota: { http: { enabled: false } }, admin: { enabled: false } },
  { logger: silentLogger() },
);
await nucleon.start();
process.stdout.write('started\n');
await otaRunnerOf(nucleon).addImage({ id: '1.2.3-4-g965b9df', imageType: 'primary', source: { kind: 'file', path: source } });
process.stdout.write('added\n');
await nucleon.stop();
