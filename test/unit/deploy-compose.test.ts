// docker-compose.yml and the files it mounts, without a Docker engine: the
// compose file parses (yaml, with compose's merge keys), has its services,
// healthchecks and volumes, and every Nucleon instance's config loads through
// the real config loader and points at the services compose defines.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { loadConfigFile, type Config } from '../../src/config/index.js';
import { repoRoot } from '../helpers/index.js';

interface Service {
  build?: string;
  image?: string;
  hostname?: string;
  command?: string[];
  restart?: string;
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test?: string[]; disable?: boolean };
}

interface Compose {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
}

const NUCLEON_INSTANCES = ['nucleon-a', 'nucleon-b'];
const CONFIG_TARGET = '/etc/nucleon/config.toml';
/** Values for the `${VAR:?}` secrets compose requires, as an operator would export them. */
const SECRETS = { NUCLEON_ADMIN_API_KEY: 'k'.repeat(32), INFLUX_TOKEN: 't'.repeat(32) };

function readCompose(): Compose {
  // merge: compose's `<<: *anchor` (YAML 1.1 merge keys) for the instances' shared settings.
  return parseYaml(readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8'), { merge: true }) as Compose;
}

function serviceOf(compose: Compose, name: string): Service {
  const found = compose.services[name];
  if (!found) throw new Error(`docker-compose.yml: no service ${name}`);
  return found;
}

interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
  bind: boolean;
}

function mounts(service: Service): Mount[] {
  return (service.volumes ?? []).map((spec) => {
    const [source = '', target = '', mode] = spec.split(':');
    return { source, target, readOnly: mode === 'ro', bind: source.startsWith('.') || source.startsWith('/') };
  });
}

/** `${NAME:?message}` and `${NAME:-default}` resolved the way compose does, from `env`. */
function interpolate(value: string, env: Record<string, string>): string {
  return value.replace(/\$\{(\w+)(?::([?-])([^}]*))?\}/g, (_all, name: string, kind?: string, rest?: string) => {
    const set = env[name];
    if (set !== undefined && set !== '') return set;
    if (kind === '-') return rest ?? '';
    throw new Error(`compose would refuse to start: ${name} unset (${rest ?? ''})`);
  });
}

async function instanceConfig(compose: Compose, name: string): Promise<Readonly<Config>> {
  const service = serviceOf(compose, name);
  const mount = mounts(service).find((m) => m.target === CONFIG_TARGET);
  assert.ok(mount?.bind && mount.readOnly, `${name}: config.toml mounted read-only`);
  const env = Object.fromEntries(Object.entries(service.environment ?? {}).map(([key, value]) => [key, interpolate(value, SECRETS)]));
  const { config } = await loadConfigFile(path.join(repoRoot, mount.source), env);
  return config;
}

test('the compose file parses and has Redis, InfluxDB, two Nucleon instances, Prometheus and Grafana, each with a healthcheck', () => {
  const compose = readCompose();
  const names = Object.keys(compose.services).sort();
  assert.deepEqual(names, ['certs-init', 'grafana', 'influxdb', 'nucleon-a', 'nucleon-b', 'prometheus', 'redis']);
  for (const [name, service] of Object.entries(compose.services)) {
    if (name === 'certs-init') {
      assert.equal(service.restart, 'no', 'certs-init runs once');
      continue;
    }
    assert.ok(service.healthcheck?.test && service.healthcheck.test.length > 1 && service.healthcheck.test[0] === 'CMD', `${name}: an exec-form healthcheck`);
    assert.equal(service.restart, 'unless-stopped', `${name}: restarts`);
    if (service.image) assert.doesNotMatch(service.image, /:latest$|^[^:]+$/, `${name}: a pinned image tag`);
  }
  assert.deepEqual(compose.services.redis?.command, ['redis-server', '--appendonly', 'yes'], 'Redis persistence on (README "Cluster")');
});

test('InfluxDB is initialised with the org, bucket and token the instances write with', async () => {
  const compose = readCompose();
  const influx = serviceOf(compose, 'influxdb').environment ?? {};
  assert.equal(influx.DOCKER_INFLUXDB_INIT_MODE, 'setup');
  for (const name of NUCLEON_INSTANCES) {
    const config = await instanceConfig(compose, name);
    assert.ok(config.influx, `${name}: [influx]`);
    assert.equal(new URL(config.influx.url).host, 'influxdb:8086', `${name}: influx.url names the influxdb service`);
    assert.equal(config.influx.org, influx.DOCKER_INFLUXDB_INIT_ORG);
    assert.equal(config.influx.bucket, influx.DOCKER_INFLUXDB_INIT_BUCKET);
    // The instance's token (NUCLEON_INFLUX_TOKEN) is the one InfluxDB is set up with.
    assert.equal(serviceOf(compose, name).environment?.NUCLEON_INFLUX_TOKEN, influx.DOCKER_INFLUXDB_INIT_ADMIN_TOKEN);
    assert.equal(config.influx.token, SECRETS.INFLUX_TOKEN);
  }
});

test('both instances load through the real config loader, in cluster mode on the compose Redis, with the same certs, influx and cluster sections', async () => {
  const compose = readCompose();
  const configs = await Promise.all(NUCLEON_INSTANCES.map((name) => instanceConfig(compose, name)));
  for (const [i, config] of configs.entries()) {
    const name = NUCLEON_INSTANCES[i] ?? '';
    assert.ok(config.cluster, `${name}: [cluster]`);
    assert.equal(new URL(config.cluster.redis_url).host, 'redis:6379');
    assert.ok(compose.services.redis, 'a redis service');
    assert.equal(config.admin.api_key, SECRETS.NUCLEON_ADMIN_API_KEY, `${name}: the admin key from the environment`);
    assert.equal(config.certs.auto_generate, false, `${name}: never a CA of its own`);
    assert.ok(config.certs.server_names.includes(name), `${name}: its service name is in the server certificate`);
  }
  const [a, b] = configs as [Readonly<Config>, Readonly<Config>];
  assert.deepEqual(a.certs, b.certs);
  assert.deepEqual(a.influx, b.influx);
  assert.deepEqual(a.cluster, b.cluster);
});

test('volumes: a store per instance, one certificate volume made by certs-init, every named volume declared and used, every bind source present', async () => {
  const compose = readCompose();
  const declared = Object.keys(compose.volumes);
  const used = new Set<string>();
  for (const [name, service] of Object.entries(compose.services)) {
    for (const mount of mounts(service)) {
      if (mount.bind) assert.ok(existsSync(path.join(repoRoot, mount.source)), `${name}: ${mount.source} exists`);
      else {
        assert.ok(declared.includes(mount.source), `${name}: volume ${mount.source} declared`);
        used.add(mount.source);
      }
    }
  }
  assert.deepEqual(declared.filter((volume) => !used.has(volume)), [], 'declared but unused');

  const stores = new Set<string>();
  for (const name of NUCLEON_INSTANCES) {
    const config = await instanceConfig(compose, name);
    const service = serviceOf(compose, name);
    const store = mounts(service).find((m) => m.target === config.store.path);
    assert.ok(store && !store.bind && !store.readOnly, `${name}: a writable volume at store.path ${config.store.path}`);
    stores.add(store.source);
    const certs = mounts(service).find((m) => m.target === config.certs.dir);
    assert.ok(certs && certs.source === 'certs' && certs.readOnly, `${name}: the shared certs volume, read-only, at certs.dir`);
    assert.equal(service.build, '.');
    assert.deepEqual(service.depends_on, {
      redis: { condition: 'service_healthy' },
      influxdb: { condition: 'service_healthy' },
      'certs-init': { condition: 'service_completed_successfully' },
    });
  }
  assert.equal(stores.size, NUCLEON_INSTANCES.length, 'no two instances share a store (spool, uploads, ingest log)');

  const init = serviceOf(compose, 'certs-init');
  const initConfig = await instanceConfig(compose, 'certs-init');
  assert.ok(mounts(init).some((m) => m.source === 'certs' && m.target === initConfig.certs.dir && !m.readOnly));
  assert.match(init.command?.join(' ') ?? '', new RegExp(`test -e ${initConfig.certs.dir}/ca.crt \\|\\| node /app/dist/bin.cjs certs init --config ${CONFIG_TARGET}`));
});

test('the instances healthcheck /healthz on their admin port; Prometheus scrapes each by a Host its admin allows', async () => {
  const compose = readCompose();
  const prometheus = parseYaml(readFileSync(path.join(repoRoot, 'deploy/compose/prometheus.yml'), 'utf8')) as {
    scrape_configs: { job_name: string; metrics_path: string; static_configs: { targets: string[] }[] }[];
  };
  const job = prometheus.scrape_configs.find((scrape) => scrape.job_name === 'nucleon');
  assert.equal(job?.metrics_path, '/metrics');
  const targets = job.static_configs.flatMap((group) => group.targets).sort();
  const expected: string[] = [];
  for (const name of NUCLEON_INSTANCES) {
    const config = await instanceConfig(compose, name);
    const service = serviceOf(compose, name);
    assert.match(service.healthcheck?.test?.join(' ') ?? '', new RegExp(`fetch\\('http://127\\.0\\.0\\.1:${config.admin.port}/healthz'`));
    assert.equal(config.admin.host, '0.0.0.0', `${name}: admin reachable from the compose network`);
    assert.equal(service.hostname, name);
    assert.ok(config.admin.allowed_hosts.includes(name), `${name}: admin.allowed_hosts has ${name} (else Prometheus gets 421)`);
    const adminPublished = (service.ports ?? []).filter((port) => port.endsWith(`:${config.admin.port}`));
    assert.equal(adminPublished.length, 1, `${name}: admin published once`);
    assert.match(adminPublished[0] ?? '', /^127\.0\.0\.1:\d+:\d+$/, `${name}: admin published on the host's loopback only`);
    expected.push(`${name}:${config.admin.port}`);
  }
  assert.deepEqual(targets, expected.sort());
});

test('Grafana is provisioned with both datasources and both dashboards, and given every variable the datasource file reads', () => {
  const compose = readCompose();
  const grafana = serviceOf(compose, 'grafana');
  const byTarget = new Map(mounts(grafana).map((m) => [m.target, m.source]));
  assert.equal(byTarget.get('/etc/grafana/provisioning/datasources/nucleon.yaml'), './docs/grafana/datasource.yaml');
  assert.equal(byTarget.get('/etc/grafana/provisioning/dashboards/nucleon.yaml'), './docs/grafana/dashboards.yaml');
  const provider = (parseYaml(readFileSync(path.join(repoRoot, 'docs/grafana/dashboards.yaml'), 'utf8')) as { providers: { options: { path: string } }[] }).providers[0];
  for (const dashboard of ['nucleon-fleet.json', 'nucleon-metrics.json']) {
    assert.equal(byTarget.get(`${provider?.options.path}/${dashboard}`), `./docs/grafana/${dashboard}`, `${dashboard} in the provider's folder`);
  }
  const provisioning = parseYaml(readFileSync(path.join(repoRoot, 'docs/grafana/datasource.yaml'), 'utf8')) as { datasources: { type: string; url: string }[] };
  const wanted = new Set<string>();
  const collect = (value: unknown): void => {
    if (typeof value === 'string') for (const m of value.matchAll(/\$(\w+)/g)) wanted.add(m[1] ?? '');
    else if (typeof value === 'object' && value !== null) Object.values(value).forEach(collect);
  };
  collect(provisioning);
  assert.ok(wanted.size >= 4);
  for (const name of wanted) assert.ok(grafana.environment?.[name], `grafana: ${name} set`);
  const datasources = provisioning.datasources;
  assert.deepEqual(datasources.map((ds) => ds.type).sort(), ['influxdb', 'prometheus']);
  assert.equal(grafana.environment?.NUCLEON_INFLUX_URL, 'http://influxdb:8086');
  assert.equal(grafana.environment?.NUCLEON_PROMETHEUS_URL, 'http://prometheus:9090');
});

test('secrets have no default in the compose file: compose refuses to start without them', () => {
  const compose = readCompose();
  const secrets = [
    compose.services['nucleon-a']?.environment?.NUCLEON_ADMIN_API_KEY,
    compose.services['nucleon-a']?.environment?.NUCLEON_INFLUX_TOKEN,
    compose.services.influxdb?.environment?.DOCKER_INFLUXDB_INIT_PASSWORD,
    compose.services.influxdb?.environment?.DOCKER_INFLUXDB_INIT_ADMIN_TOKEN,
    compose.services.grafana?.environment?.GF_SECURITY_ADMIN_PASSWORD,
  ];
  for (const secret of secrets) {
    assert.match(secret ?? '', /^\$\{\w+:\?[^}]+\}$/);
    assert.throws(() => interpolate(secret ?? '', {}), /compose would refuse to start/);
  }
});
