import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { configSchema, show, type Config, type ConfigInput } from './schema.js';

/** Secrets may come from the environment instead of the file (README "Configuration"). */
export const CONFIG_ENV = {
  NUCLEON_ADMIN_API_KEY: 'admin.api_key',
  NUCLEON_INFLUX_TOKEN: 'influx.token',
  NUCLEON_REDIS_URL: 'cluster.redis_url',
  LOG_LEVEL: 'log.level',
} as const;

export interface LoadedConfig {
  config: Readonly<Config>;
  /** The file it came from, for messages; `<inline>` for objects passed in code. */
  source: string;
}

/** Reads, parses and validates a TOML file; throws ConfigError listing every problem. */
export async function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadedConfig> {
  const label = path.basename(file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw new ConfigError([`${file}: ${reason}`], { cause: error });
  }
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (error) {
    if (error instanceof TomlError) {
      throw new ConfigError([`${label}: line ${error.line}, column ${error.column}: ${firstLine(error.message)}`], { cause: error });
    }
    throw error;
  }
  const config = validateConfig(raw, { label, env });
  return { config: resolvePaths(config, path.dirname(path.resolve(file))), source: file };
}

/**
 * Validates a config object (from TOML or code). Relative paths stay relative to
 * `baseDir` when given.
 */
export function validateConfig(raw: unknown, options: { label?: string; env?: NodeJS.ProcessEnv; baseDir?: string } = {}): Readonly<Config> {
  const label = options.label ?? '<config>';
  const withEnv = applyEnv(raw, options.env ?? {});
  const result = configSchema.safeParse(withEnv, { reportInput: true });
  if (!result.success) {
    const workers = requestedWorkers(withEnv);
    throw new ConfigError(
      result.error.issues.flatMap((issue) =>
        // `[cluster] workers = N` without a Redis URL: say why Redis is needed rather than only that a key is missing.
        workers !== undefined && workers !== 1 && isMissingRedisUrl(issue) ? [`${label}: cluster.workers: ${workersNeedRedis(workers)}`] : describeIssue(label, issue),
      ),
    );
  }
  const config = options.baseDir ? resolvePaths(result.data, options.baseDir) : result.data;
  return deepFreeze(config);
}

export function defaultConfig(overrides: ConfigInput = {}): Readonly<Config> {
  return validateConfig(overrides);
}

function applyEnv(raw: unknown, env: NodeJS.ProcessEnv): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const copy = structuredClone(raw) as Record<string, unknown>;
  for (const [name, keyPath] of Object.entries(CONFIG_ENV)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    const [section, key] = keyPath.split('.') as [string, string];
    const existing = copy[section];
    // Optional sections (influx, cluster) are switched on by the file, except the
    // Redis URL, which alone is enough to join a cluster.
    if (existing === undefined && section === 'influx') continue;
    const table = typeof existing === 'object' && existing !== null && !Array.isArray(existing) ? (existing as Record<string, unknown>) : {};
    table[key] = value;
    copy[section] = table;
  }
  return copy;
}

/**
 * Why more than one worker needs cluster mode, for the config error of
 * `[cluster] workers` and of `nucleon serve --workers`.
 */
export function workersNeedRedis(workers: number): string {
  const what = workers === 0 ? 'workers = 0 (one process per core)' : `workers = ${workers}`;
  return `${what} needs cluster mode: worker processes share MQTT sessions, routing, presence and the store through Redis and through nothing else; set cluster.redis_url (or NUCLEON_REDIS_URL), or workers = 1`;
}

function requestedWorkers(raw: unknown): number | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const cluster = (raw as Record<string, unknown>).cluster;
  if (typeof cluster !== 'object' || cluster === null) return undefined;
  const workers = (cluster as Record<string, unknown>).workers;
  return typeof workers === 'number' ? workers : undefined;
}

function isMissingRedisUrl(issue: z.core.$ZodIssue): boolean {
  return issue.code === 'invalid_type' && issue.input === undefined && issue.path.join('.') === 'cluster.redis_url';
}

function describeIssue(label: string, issue: z.core.$ZodIssue): string[] {
  const at = issue.path.map(String).join('.');
  const where = at === '' ? label : `${label}: ${at}`;
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => `${label}: ${at === '' ? key : `${at}.${key}`}: unknown key`);
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) return [`${where}: required key is missing`];
  // Messages from the schema's own helpers already read "expected ..., got ...".
  if (!issue.message.startsWith('Invalid')) return [`${where}: ${issue.message}`];
  if (issue.code === 'invalid_type') return [`${where}: expected ${article(issue.expected)}, got ${show(issue.input)}`];
  if (issue.code === 'invalid_value') {
    return [`${where}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${show(issue.input)}`];
  }
  return [`${where}: ${issue.message}`];
}

function article(expected: string): string {
  if (expected === 'object') return 'a table';
  if (expected === 'array') return 'an array';
  if (expected === 'number') return 'a number';
  if (expected === 'string') return 'a string';
  if (expected === 'boolean') return 'true or false';
  return expected;
}

function resolvePaths(config: Config, baseDir: string): Readonly<Config> {
  const resolve = (p: string) => (p === '' ? p : path.resolve(baseDir, p));
  const resolved: Config = {
    ...config,
    store: { ...config.store, path: resolve(config.store.path) },
    ingest: { ...config.ingest, dir: resolve(config.ingest.dir) },
    certs: { ...config.certs, dir: resolve(config.certs.dir) },
    influx: config.influx ? { ...config.influx, spool_dir: resolve(config.influx.spool_dir) } : undefined,
  };
  return deepFreeze(resolved);
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}
