// The Docker image's runtime stage, without a Docker engine: the files its
// COPY --from=build lines take are laid out as in the image (outside the
// repository, so nothing else of it is within reach), started with its
// ENTRYPOINT, CMD, ENV and deploy/config.toml (listeners moved to free ports
// on loopback, volume paths into a temporary folder), and its HEALTHCHECK command is run
// against it: healthy while it serves, unhealthy once it has stopped.
// Not covered: the base image, `npm ci` and `npm prune` themselves (node_modules
// is the repository's, dev dependencies included), the user and file modes.
import assert from 'node:assert/strict';
import { cp, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import { copiesOf, envOf, execForm, instructionsOf, only, readDockerfile } from '../helpers/dockerfile.js';
import { freePort, repoRoot, runToExit, startProcess, tempDir, waitFor } from '../helpers/index.js';

/** Where a path of the image lands in the temporary folder standing in for its file system. */
function inImage(root: string, imagePath: string): string {
  return path.join(root, imagePath);
}

async function runHealthcheck(t: TestContext, command: string[], env: NodeJS.ProcessEnv): Promise<number | null> {
  const [program, ...args] = command;
  assert.equal(program, 'node');
  const check = startProcess(t, process.execPath, args, { env, cwd: '/' });
  const { code } = await check.exited;
  return code;
}

test('the runtime stage\'s files start with the image\'s command and config, and its HEALTHCHECK follows /healthz', async (t) => {
  const { runtime } = readDockerfile();
  const root = await tempDir(t, 'nucleon-image-');

  // COPY --from=build: the build stage's /app is the repository after `npm run build`.
  for (const copy of copiesOf(runtime)) {
    for (const source of copy.sources) {
      const target = inImage(root, path.posix.resolve('/app', copy.destination));
      await mkdir(path.dirname(target), { recursive: true });
      if (copy.from === 'build') {
        const inRepo = path.join(repoRoot, path.posix.relative('/app', source));
        // node_modules: the repository's (the image has production dependencies only).
        if (source === '/app/node_modules') await symlink(inRepo, target, 'dir');
        else await cp(inRepo, target, { recursive: true });
      } else {
        assert.equal(copy.from, undefined);
        await cp(path.join(repoRoot, source), target, { recursive: true });
      }
    }
  }
  assert.deepEqual((await readdir(inImage(root, '/app'))).sort(), ['dist', 'node_modules', 'package.json']);

  const [entry, ...entryArgs] = execForm(only(instructionsOf(runtime, 'ENTRYPOINT'), 'ENTRYPOINT'));
  const cmd = execForm(only(instructionsOf(runtime, 'CMD'), 'CMD'));
  assert.equal(entry, 'node');
  const configPath = cmd[cmd.indexOf('--config') + 1] ?? '';

  // The image's config with free ports on loopback (the image listens on all interfaces;
  // tests stay on loopback), and the paths, which are the image's volumes, in the temporary folder.
  const config = parseToml(await readFile(inImage(root, configPath), 'utf8')) as Record<string, Record<string, unknown>>;
  const volumes = instructionsOf(runtime, 'VOLUME').flatMap((volume) => execForm(volume));
  assert.ok(volumes.includes(String(config.store?.path)) && volumes.includes(String(config.certs?.dir)));
  const [mqttPort, otaPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const image = {
    ...config,
    store: { ...config.store, path: inImage(root, String(config.store?.path)) },
    certs: { ...config.certs, dir: inImage(root, String(config.certs?.dir)) },
    mqtt: { tls: { host: '127.0.0.1', port: mqttPort } },
    ota: { http: { host: '127.0.0.1', port: otaPort } },
    admin: { ...config.admin, host: '127.0.0.1', port: adminPort },
  };
  await writeFile(inImage(root, configPath), stringifyToml(image));

  const env = envOf(runtime);
  const healthzUrl = new URL(env.NUCLEON_HEALTHZ_URL ?? '');
  assert.equal(healthzUrl.port, '3032', 'the image config\'s admin port');
  healthzUrl.port = String(adminPort);
  const imageEnv = { ...env, NUCLEON_HEALTHZ_URL: healthzUrl.href };

  const args = [...entryArgs, ...cmd].map((arg) => (arg.startsWith('/') ? inImage(root, arg) : arg));
  const version = await runToExit(process.execPath, [args[0] ?? '', '--version']);
  const pkg = JSON.parse(await readFile(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  assert.equal(version.stdout.trim(), pkg.version, 'package.json is where src/version.ts looks');

  const nucleon = startProcess(t, process.execPath, args, { env: imageEnv, cwd: '/' });
  await waitFor(() => nucleon.output().includes('"msg":"nucleon started"') || nucleon.child.exitCode !== null, 'nucleon started', 30_000);
  assert.equal(nucleon.child.exitCode, null, nucleon.output());

  const [, , healthcheck = ''] = execForm(only(instructionsOf(runtime, 'HEALTHCHECK'), 'HEALTHCHECK'), 'CMD');
  assert.equal(await runHealthcheck(t, ['node', '-e', healthcheck], imageEnv), 0, 'healthy while serving');
  // The console is served from dist/console, which the runtime stage copies with dist.
  const dashboard = await fetch(`http://127.0.0.1:${adminPort}/`);
  assert.equal(dashboard.status, 200);
  assert.match(dashboard.headers.get('content-type') ?? '', /^text\/html/);
  const bundle = await fetch(`http://127.0.0.1:${adminPort}/app.js`);
  assert.equal(bundle.status, 200, 'the console bundle (npm run build) is in dist/console');
  assert.match(bundle.headers.get('content-type') ?? '', /^text\/javascript/);
  // State went to the volumes: a generated CA in the certs volume, the store in the data volume.
  assert.ok((await readdir(image.certs.dir)).includes('ca.crt'));
  assert.ok((await readdir(image.store.path)).length > 0);

  nucleon.child.kill('SIGTERM');
  const exit = await nucleon.exited;
  assert.equal(exit.code, 0, nucleon.output());
  assert.equal(await runHealthcheck(t, ['node', '-e', healthcheck], imageEnv), 1, 'unhealthy once nothing answers');
});
