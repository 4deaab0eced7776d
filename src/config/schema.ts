import { z } from 'zod';
import { ruleProblem, type RuleWho } from '../acl/index.js';
import { MAX_TEXT_KEY_LENGTH, telemetryFieldProblems } from '../protocol/telemetry-fields.js';

/**
 * The one schema for config.toml. Every key has a default, so an empty file is a
 * working development setup; config.toml in the repository documents each key.
 * Keys are spelled as in the file (snake_case) so the docs and the code agree.
 */

/** Upper bound of `[cluster] workers` and `--workers`: far above any core count, low enough to catch a typo. */
export const MAX_WORKERS = 256;

/** Port 0 lets the OS choose (tests, embedding). */
const listenPort = () =>
  z
    .number({ error: (iss) => `expected an integer 0..65535, got ${show(iss.input)}` })
    .int({ error: (iss) => `expected an integer 0..65535, got ${show(iss.input)}` })
    .min(0, { error: (iss) => `expected an integer 0..65535, got ${show(iss.input)}` })
    .max(65535, { error: (iss) => `expected an integer 0..65535, got ${show(iss.input)}` });

const int = (min: number, max: number) => {
  const error = (iss: { input?: unknown }) => `expected an integer ${min}..${max}, got ${show(iss.input)}`;
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
};

const text = () => z.string({ error: (iss) => `expected a string, got ${show(iss.input)}` });
const flag = () => z.boolean({ error: (iss) => `expected true or false, got ${show(iss.input)}` });
const host = () => text().min(1, { error: 'expected a host name or address, got an empty string' });
/** What a Host header may carry: a name, an IPv4 address or a bracketed IPv6 address, with an optional port. */
const AUTHORITY = String.raw`(\[[0-9A-Fa-f:.]+\]|[^\s/:[\]@?#]+)(:\d{1,5})?`;
const hostEntry = () =>
  text().regex(new RegExp(`^${AUTHORITY}$`), { error: (iss) => `expected a host name or address with an optional :port, such as "admin.example.com" or "10.0.0.5:3032", got ${show(iss.input)}` });
const originEntry = () =>
  text().regex(new RegExp(`^https?://${AUTHORITY}$`, 'i'), { error: (iss) => `expected an origin such as "https://admin.example.com" (scheme, host, optional port, no path), got ${show(iss.input)}` });

export function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a date';
  if (typeof value === 'object' && value !== null) return 'a table';
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return typeof value;
}

const listener = (defaults: { enabled: boolean; host: string; port: number }) =>
  z
    .strictObject({
      enabled: flag().default(defaults.enabled),
      host: host().default(defaults.host),
      port: listenPort().default(defaults.port),
    })
    .prefault({});

/** The name the key from `admin.api_key` or the generated key file has in the audit log. */
export const DEFAULT_ADMIN_KEY_NAME = 'default';

/**
 * One named admin key (README "Admin keys and roles"). The secret is never in
 * config.toml: either a file holding the key, or its SHA-256 (keys are random
 * and long, so a plain digest is as good as a password hash here).
 */
const adminKeySchema = z
  .strictObject({
    name: text().regex(/^[A-Za-z0-9_.-]{1,64}$/, { error: (iss) => `expected 1..64 characters of A-Z a-z 0-9 _ . -, got ${show(iss.input)}` }),
    role: z.enum(['admin', 'read-only'], { error: (iss) => `expected "admin" or "read-only", got ${show(iss.input)}` }),
    key_file: text().min(1, { error: 'expected a file path, got an empty string' }).optional(),
    key_sha256: text()
      .regex(/^[0-9a-fA-F]{64}$/, { error: (iss) => `expected the key's SHA-256 as 64 hex digits, got ${show(iss.input)}` })
      .optional(),
  })
  .refine((key) => (key.key_file === undefined) !== (key.key_sha256 === undefined), { error: 'give exactly one of key_file or key_sha256' });

const adminKeysSchema = z.array(adminKeySchema).superRefine((keys, ctx) => {
  const seen = new Set<string>([DEFAULT_ADMIN_KEY_NAME]);
  keys.forEach((key, index) => {
    if (seen.has(key.name)) {
      const why = key.name === DEFAULT_ADMIN_KEY_NAME ? 'is the name of the admin.api_key / generated key' : 'is used by another key';
      ctx.addIssue({ code: 'custom', path: [index, 'name'], message: `${JSON.stringify(key.name)} ${why}; names must be unique` });
    }
    seen.add(key.name);
  });
});

/** One ACL rule (README "ACL rules"); also what the admin command acl.rules.set takes. */
export const aclRuleSchema = z
  .strictObject({
    who: text().transform((value) => value as RuleWho),
    action: z.enum(['publish', 'subscribe', 'both'], { error: (iss) => `expected "publish", "subscribe" or "both", got ${show(iss.input)}` }),
    effect: z.enum(['allow', 'deny'], { error: (iss) => `expected "allow" or "deny", got ${show(iss.input)}` }).default('allow'),
    topic: text(),
  })
  .superRefine((rule, ctx) => {
    const problem = ruleProblem(rule);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

/** One extra telemetry field (README "Custom telemetry fields"); clashes are checked over the whole list. */
const telemetryFieldSchema = z.strictObject({
  key: z.union([int(0, 2 ** 32 - 1), text().min(1).max(MAX_TEXT_KEY_LENGTH)], {
    error: (iss) => `expected an integer key 0..4294967295 or a text key of 1..${MAX_TEXT_KEY_LENGTH} characters, got ${show(iss.input)}`,
  }),
  name: text(),
  type: z.enum(['int', 'float', 'bool', 'string'], { error: (iss) => `expected "int", "float", "bool" or "string", got ${show(iss.input)}` }),
});

export const configSchema = z.strictObject({
  log: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      format: z.enum(['auto', 'json', 'pretty']).default('auto'),
    })
    .prefault({}),

  broker: z
    .strictObject({
      inbox_size: int(1, 1_000_000).default(4096),
      max_waiters: int(1, 1_000_000).default(4096),
      stop_timeout_ms: int(100, 600_000).default(5000),
    })
    .prefault({}),

  store: z
    .strictObject({
      path: text().min(1).default('data'),
    })
    .prefault({}),

  ingest: z
    .strictObject({
      durability: z.enum(['fsync', 'write', 'memory'], { error: (iss) => `expected "fsync", "write" or "memory", got ${show(iss.input)}` }).default('fsync'),
      dir: text().default(''),
      max_bytes: int(1024 * 1024, 2 ** 50).default(1024 * 1024 * 1024),
      segment_bytes: int(64 * 1024, 1024 * 1024 * 1024).default(64 * 1024 * 1024),
      commit_spacing_ms: int(0, 100).default(0),
      qos0_commit_delay_ms: int(0, 1000).default(0),
    })
    .prefault({}),

  certs: z
    .strictObject({
      dir: text().min(1).default('certs'),
      auto_generate: flag().default(true),
      server_names: z.array(host()).default([]),
      ca_days: int(1, 36500).default(3650),
      server_days: int(1, 36500).default(825),
      device_days: int(1, 36500).default(3650),
      rotation_grace_s: int(0, 365 * 86_400).default(7 * 86_400),
      crl_days: int(1, 3650).default(7),
    })
    .prefault({}),

  limits: z
    .strictObject({
      tls_handshake_timeout_ms: int(100, 600_000).default(10_000),
      http_headers_timeout_ms: int(100, 600_000).default(10_000),
      http_request_timeout_ms: int(100, 3_600_000).default(30_000),
      http_keep_alive_timeout_ms: int(100, 600_000).default(5000),
      http_idle_timeout_ms: int(1000, 3_600_000).default(120_000),
      login_failures_per_address: int(1, 1_000_000).default(30),
      login_failures_per_uid: int(1, 1_000_000).default(60),
      password_checks_concurrent: int(1, 64).default(2),
      password_checks_waiting: int(0, 100_000).default(64),
    })
    // Node refuses to create an HTTP server whose header deadline is past its request deadline.
    .refine((limits) => limits.http_headers_timeout_ms <= limits.http_request_timeout_ms, {
      error: 'http_headers_timeout_ms must not be greater than http_request_timeout_ms',
      path: ['http_headers_timeout_ms'],
    })
    .prefault({}),

  mqtt: z
    .strictObject({
      sys_interval_s: int(0, 86_400).default(10),
      tls: z
        .strictObject({
          enabled: flag().default(true),
          host: host().default('0.0.0.0'),
          port: listenPort().default(8883),
        })
        .prefault({}),
      tcp: listener({ enabled: false, host: '127.0.0.1', port: 1883 }),
      ws: z
        .strictObject({
          enabled: flag().default(false),
          host: host().default('0.0.0.0'),
          port: listenPort().default(8884),
          tls: flag().default(true),
        })
        .prefault({}),
      auth: z
        .strictObject({
          client_certificates: flag().default(true),
          passwords: flag().default(true),
          anonymous: flag().default(false),
        })
        .prefault({}),
      limits: z
        .strictObject({
          max_packet_size: int(1024, 268_435_455).default(256 * 1024),
          max_client_id_length: int(1, 65535).default(128),
          keepalive_max_s: int(0, 65535).default(1200),
          connect_timeout_ms: int(100, 600_000).default(10_000),
          connections_per_second: int(1, 1_000_000).default(500),
          connections_per_address: int(0, 1_000_000).default(1024),
          max_acl_violations: int(1, 1_000_000).default(10),
          offline_queue_size: int(1, 10_000_000).default(1000),
          drain_timeout_ms: int(100, 600_000).default(30_000),
          max_send_buffer_bytes: int(64 * 1024, 1024 * 1024 * 1024).default(4 * 1024 * 1024),
          heartbeat_interval_ms: int(100, 3_600_000).default(60_000),
          retained_per_device: int(0, 10_000_000).default(100),
          retained_bytes_per_device: int(0, 2 ** 40).default(1024 * 1024),
          retained_total: int(0, 100_000_000).default(100_000),
          retained_bytes_total: int(0, 2 ** 44).default(256 * 1024 * 1024),
          retained_compact_interval_ms: int(100, 86_400_000).default(10_000),
        })
        .prefault({}),
    })
    .prefault({}),

  acl: z
    .strictObject({
      rules: z
        .array(
          aclRuleSchema,
          { error: (iss) => `expected an array of rules ({who, action, effect, topic}), got ${show(iss.input)}` },
        )
        .default([]),
    })
    .prefault({}),

  ota: z
    .strictObject({
      enabled: flag().default(true),
      max_chunk_size: int(16, 16 * 1024 * 1024).default(64 * 1024),
      http: z
        .strictObject({
          enabled: flag().default(true),
          host: host().default('0.0.0.0'),
          port: listenPort().default(3030),
          tls: flag().default(true),
          public_url: text().default(''),
          require_auth: flag().default(false),
          max_connections: int(1, 1_000_000).default(2048),
          connections_per_address: int(0, 1_000_000).default(256),
        })
        .prefault({}),
    })
    .prefault({}),

  telemetry: z
    .strictObject({
      recent_per_device: int(0, 100_000).default(100),
      fields: z
        .array(telemetryFieldSchema, { error: (iss) => `expected an array of fields ({key, name, type}), got ${show(iss.input)}` })
        .default([])
        .superRefine((fields, ctx) => {
          for (const { index, problem } of telemetryFieldProblems(fields)) ctx.addIssue({ code: 'custom', message: problem, path: [index] });
        }),
    })
    .prefault({}),

  admin: z
    .strictObject({
      enabled: flag().default(true),
      host: host().default('127.0.0.1'),
      port: listenPort().default(3032),
      api_key: text().min(16, { error: 'expected at least 16 characters' }).optional(),
      max_message_bytes: int(1024, 64 * 1024 * 1024).default(1024 * 1024),
      max_clients: int(1, 100_000).default(100),
      send_buffer_bytes: int(1024, 1024 * 1024 * 1024).default(8 * 1024 * 1024),
      messages_per_second: int(1, 1_000_000).default(200),
      max_pending_per_client: int(1, 100_000).default(64),
      request_timeout_ms: int(100, 600_000).default(30_000),
      login_timeout_ms: int(100, 600_000).default(10_000),
      auth_failures_per_minute: int(1, 1_000_000).default(10),
      auth_failures_global_per_minute: int(1, 10_000_000).default(100),
      allowed_hosts: z.array(hostEntry()).default([]),
      allowed_origins: z.array(originEntry()).default([]),
      max_upload_bytes: int(1024, 4 * 1024 * 1024 * 1024).default(256 * 1024 * 1024),
      keys: adminKeysSchema.default([]),
      audit_size: int(0, 100_000).default(200),
      health_interval_ms: int(100, 60_000).default(1000),
    })
    .prefault({}),

  influx: z
    .strictObject({
      url: text().url({ error: 'expected a URL such as http://127.0.0.1:8086' }),
      org: text().default(''),
      bucket: text().min(1),
      token: text().default(''),
      timeout_ms: int(100, 600_000).default(10_000),
      gzip: z.enum(['auto', 'always', 'never']).default('auto'),
      precision: z.enum(['ns', 'us', 'ms', 's']).default('ms'),
      batch_size: int(1, 1_000_000).default(5000),
      flush_interval_ms: int(10, 600_000).default(1000),
      max_buffer_points: int(1, 10_000_000).default(100_000),
      max_retries: int(0, 1000).default(5),
      retry_initial_ms: int(1, 600_000).default(500),
      retry_max_ms: int(1, 3_600_000).default(30_000),
      spool_dir: text().default(''),
      spool_max_bytes: int(1024, Number.MAX_SAFE_INTEGER).default(512 * 1024 * 1024),
    })
    .optional(),

  cluster: z
    .strictObject({
      redis_url: text().regex(/^rediss?:\/\/./, { error: 'expected a Redis URL such as redis://127.0.0.1:6379' }),
      presence_ttl_s: int(1, 3600).default(30),
      campaign_lease_ms: int(1000, 600_000).default(10_000),
      namespace: text()
        .regex(/^[A-Za-z0-9_-]{1,32}$/, { error: 'expected 1..32 characters of A-Z a-z 0-9 _ -' })
        .default('nucleon'),
      // 0: one per core. Only here, not in a section of its own: more than one needs Redis (cluster mode).
      workers: int(0, MAX_WORKERS).default(1),
    })
    .optional(),
});

export type Config = z.infer<typeof configSchema>;
/** What a caller of `createNucleon` may pass: any subset, defaults fill the rest. */
export type ConfigInput = z.input<typeof configSchema>;
