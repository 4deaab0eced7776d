// `serve --workers N` (README "Workers"): how many workers, the config check that more
// than one needs Redis, and the folders that make each worker's local state its own.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { validateConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';
import { workerConfig, workerCount } from '../../src/workers/index.js';

const REDIS = 'redis://127.0.0.1:6379';

function problems(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    return error.problems;
  }
  assert.fail('expected a ConfigError');
}

test('[cluster] workers > 1 without a Redis URL is a config error naming cluster.workers and why', () => {
  const [problem, ...rest] = problems(() => validateConfig({ cluster: { workers: 2 } }, { label: 'config.toml' }));
  assert.deepEqual(rest, []);
  assert.match(problem ?? '', /^config\.toml: cluster\.workers: workers = 2 needs cluster mode: .*Redis.*set cluster\.redis_url \(or NUCLEON_REDIS_URL\), or workers = 1$/);
  // The environment's Redis URL is enough; workers = 1 without one keeps the usual message.
  assert.equal(validateConfig({ cluster: { workers: 2 } }, { env: { NUCLEON_REDIS_URL: REDIS } }).cluster?.workers, 2);
  assert.deepEqual(problems(() => validateConfig({ cluster: { workers: 1 } }, { label: 'c' })), ['c: cluster.redis_url: required key is missing']);
});

test('--workers: 0 is one per core, 1 is a single process, more than 1 needs cluster mode', () => {
  const standalone = validateConfig({});
  const clustered = validateConfig({ cluster: { redis_url: REDIS, workers: 3 } });
  assert.equal(workerCount(standalone, undefined, 'config.toml', 8), 1);
  assert.equal(workerCount(standalone, 1, 'config.toml', 8), 1);
  assert.equal(workerCount(clustered, undefined, 'config.toml', 8), 3);
  assert.equal(workerCount(clustered, 0, 'config.toml', 8), 8, 'the flag wins over the file');
  assert.match(problems(() => workerCount(standalone, 0, '/etc/nucleon/config.toml', 8))[0] ?? '', /^config\.toml: cluster\.workers: workers = 0 \(one process per core\) needs cluster mode.*\(--workers 0\)$/);
});

test('each worker gets its own ingest log, spool and store folder, and the shared admin key', () => {
  const config = validateConfig(
    { store: { path: 'var' }, influx: { url: 'http://127.0.0.1:8086', bucket: 'b' }, cluster: { redis_url: REDIS, workers: 2 } },
    { baseDir: '/srv/nucleon' },
  );
  const two = workerConfig(config, 2, 'the-generated-admin-key-0123456789');
  assert.equal(two.store.path, path.join('/srv/nucleon/var', 'worker-2'));
  assert.equal(two.ingest.dir, path.join('/srv/nucleon/var/ingest', 'worker-2'));
  assert.equal(two.influx?.spool_dir, path.join('/srv/nucleon/var/influx-spool', 'worker-2'));
  assert.equal(two.admin.api_key, 'the-generated-admin-key-0123456789');
  assert.equal(two.cluster?.workers, 1);
  // Explicit folders get a worker folder inside them; the result still validates (it travels as JSON).
  const explicit = validateConfig({ ingest: { dir: '/logs' }, cluster: { redis_url: REDIS } });
  const one = validateConfig(JSON.parse(JSON.stringify(workerConfig(explicit, 1, undefined))));
  assert.equal(one.ingest.dir, path.join('/logs', 'worker-1'));
  assert.equal(one.admin.api_key, undefined);
  assert.notEqual(workerConfig(config, 1, undefined).ingest.dir, two.ingest.dir);
});
