// The Dockerfile, without a Docker engine (none runs on our machines, and
// hadolint is not in Debian): linted by dockerfile-utils (the Dockerfile language
// server's validator), and held to the rules of the packaging issue: multi-stage,
// a non-root user, a HEALTHCHECK on /healthz, the default listeners exposed, the
// state directories of the image's own config as volumes.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { validate } from 'dockerfile-utils';
import { loadConfigFile } from '../../src/config/index.js';
import { copiesOf, envOf, execForm, instructionsOf, only, readDockerfile } from '../helpers/dockerfile.js';
import { repoRoot } from '../helpers/index.js';

const imageConfigFile = path.join(repoRoot, 'deploy/config.toml');

test('the Dockerfile passes the dockerfile-utils linter with no diagnostic', () => {
  const { text } = readDockerfile();
  const diagnostics = validate(text).map((d) => `line ${d.range.start.line + 1}: ${typeof d.message === 'string' ? d.message : d.message.value}`);
  assert.deepEqual(diagnostics, []);
  // The linter is live: the same file with a lower-case instruction is flagged.
  assert.ok(validate(text.replace(/^WORKDIR /m, 'workdir ')).length > 0);
});

test('a build stage with the dev dependencies and tsc, and a runtime stage with production dependencies only', () => {
  const { stages, runtime } = readDockerfile();
  assert.ok(stages.length >= 2, 'multi-stage');
  for (const stage of stages) assert.match(stage.image, /^node:20[\w.-]*$/, `${stage.name ?? 'a stage'}: a pinned Node 20 image (package.json engines), got ${stage.image}`);
  const build = stages.find((stage) => stage.name === 'build');
  assert.ok(build, 'a stage named build');
  const buildRuns = instructionsOf(build, 'RUN').map((run) => run.getArgumentsContent() ?? '');
  assert.ok(buildRuns.some((run) => /\bnpm ci\b/.test(run) && !run.includes('--omit=dev')), 'build installs the dev dependencies from the lock file');
  assert.ok(buildRuns.some((run) => /\bnpm run build\b/.test(run)), 'build runs tsc');
  assert.ok(buildRuns.some((run) => /\bnpm prune --omit=dev\b/.test(run)), 'the node_modules handed on hold production dependencies only');

  assert.notEqual(runtime, build);
  assert.deepEqual(instructionsOf(runtime, 'RUN').filter((run) => /\bnpm\b/.test(run.getArgumentsContent() ?? '')), [], 'no npm in the runtime stage');
  const fromBuild = copiesOf(runtime).filter((copy) => copy.from === 'build').flatMap((copy) => copy.sources);
  // What `node dist/bin.cjs` reads at run time: the package version (src/version.ts), the
  // compiled code with the console bundle in dist/console (src/admin/http-routes.ts staticDir), and its dependencies.
  assert.deepEqual(fromBuild.sort(), ['/app/dist', '/app/node_modules', '/app/package.json']);
});

test('the runtime runs as a user of its own, never root', () => {
  const { runtime } = readDockerfile();
  const users = instructionsOf(runtime, 'USER').map((user) => user.getArgumentsContent() ?? '');
  const last = users.at(-1);
  assert.ok(last, 'the runtime stage sets USER');
  const [user, group] = last.split(':');
  for (const id of [user, group]) if (id !== undefined) assert.ok(!['root', '0', 'node', '1000'].includes(id), `USER ${last}: not root, and not the base image's shared "node" user`);
  // The user is created in the image, and owns the state directories.
  const runs = instructionsOf(runtime, 'RUN').map((run) => run.getArgumentsContent() ?? '').join('\n');
  assert.match(runs, new RegExp(`useradd [^\\n]*--system[^\\n]* ${user}\\b`));
  assert.match(runs, new RegExp(`chown -R ${user}:${group ?? user} /var/lib/nucleon\\b`));
});

test('HEALTHCHECK asks /healthz on the admin port with node, no curl', async () => {
  const { runtime } = readDockerfile();
  const checks = instructionsOf(runtime, 'HEALTHCHECK');
  const command = execForm(only(checks, 'HEALTHCHECK'), 'CMD');
  assert.equal(command[0], 'node', 'exec form with node (the slim image has no curl)');
  assert.equal(command[1], '-e');
  assert.match(command[2] ?? '', /\bfetch\(process\.env\.NUCLEON_HEALTHZ_URL\b/);
  assert.match(command[2] ?? '', /process\.exit\(r\.ok \? 0 : 1\)/, 'a 503 (degraded) is unhealthy');
  const { config } = await loadConfigFile(imageConfigFile, {});
  assert.equal(envOf(runtime).NUCLEON_HEALTHZ_URL, `http://127.0.0.1:${config.admin.port}/healthz`);
  assert.ok(config.admin.enabled);
});

test('EXPOSE lists the listeners the image config turns on; VOLUME holds its store and certificates; CMD reads it', async () => {
  const { runtime } = readDockerfile();
  const copies = copiesOf(runtime);
  const configCopy = copies.find((copy) => copy.from === undefined && copy.sources.includes('deploy/config.toml'));
  assert.ok(configCopy, 'the image carries deploy/config.toml');
  const { config } = await loadConfigFile(imageConfigFile, {});

  const listeners: [boolean, number][] = [
    [config.mqtt.tls.enabled, config.mqtt.tls.port],
    [config.mqtt.tcp.enabled, config.mqtt.tcp.port],
    [config.mqtt.ws.enabled, config.mqtt.ws.port],
    [config.ota.enabled && config.ota.http.enabled, config.ota.http.port],
    [config.admin.enabled, config.admin.port],
  ];
  const exposed = instructionsOf(runtime, 'EXPOSE').flatMap((expose) => expose.getArguments().map((arg) => Number(arg.getValue())));
  assert.deepEqual(exposed.sort(), listeners.filter(([on]) => on).map(([, port]) => port).sort());
  // Reachable from outside the container, where EXPOSE points.
  for (const host of [config.mqtt.tls.host, config.ota.http.host, config.admin.host]) assert.equal(host, '0.0.0.0');

  const volumes = instructionsOf(runtime, 'VOLUME').flatMap((volume) => execForm(volume));
  assert.deepEqual(volumes.sort(), [config.certs.dir, config.store.path].sort());
  // The ingest log and the Influx spool default to folders of the store.
  assert.equal(config.ingest.dir, '');

  const entrypoint = execForm(only(instructionsOf(runtime, 'ENTRYPOINT'), 'ENTRYPOINT'));
  const cmd = execForm(only(instructionsOf(runtime, 'CMD'), 'CMD'));
  assert.deepEqual(entrypoint, ['node', '/app/dist/bin.cjs'], 'node is PID 1 and gets SIGTERM itself (no shell in between)');
  assert.deepEqual(cmd, ['serve', '--config', configCopy.destination]);
});

test('.dockerignore keeps everything out of the build context but what the Dockerfile copies from it', () => {
  const { stages } = readDockerfile();
  const lines = readFileSync(path.join(repoRoot, '.dockerignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  assert.equal(lines[0], '*', 'everything excluded first (certs/ holds a CA key, data/ device state)');
  const included = new Set(lines.slice(1).map((line) => line.replace(/^!/, '').replace(/\/$/, '')));
  assert.ok(lines.slice(1).every((line) => line.startsWith('!')), 'only re-inclusions after *');
  const fromContext = stages.flatMap((stage) => copiesOf(stage).filter((copy) => copy.from === undefined).flatMap((copy) => copy.sources));
  assert.ok(fromContext.length > 0);
  for (const source of fromContext) {
    assert.ok(included.has(source), `${source} is copied, so .dockerignore must let it in`);
    assert.ok(existsSync(path.join(repoRoot, source)), `${source} exists`);
  }
  assert.deepEqual([...included].filter((entry) => !fromContext.includes(entry)), [], 'nothing let in that no COPY uses');
});
