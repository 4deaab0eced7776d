/**
 * The error catalogue: every stable code Nucleon raises, what it means, where
 * it is raised, and where it matters the `nucleon` exit code and HTTP status.
 * Codes never change once released: admin clients, scripts reading the CLI's
 * `[CODE]` and library callers match on them. README "Errors" documents each
 * one (test/unit/errors-docs.test.ts keeps the two in step).
 */

/**
 * Where a code is raised:
 * - `server`: starting or running Nucleon (`nucleon serve`, `createNucleon`, the event broker);
 * - `mqtt`: a device connection is closed with it (the disconnect reason and its metric label);
 * - `ota`: an OTA management answer (`OtaCommandResult.error`) or `OtaError` from the OTA runner's methods;
 * - `campaigns`: a campaign management answer (`CampaignCommandResult.error`) or `CampaignError` from the campaigns runner's methods;
 * - `admin`: an admin protocol answer (`error.code`);
 * - `cli`: the `nucleon` command prints it and exits with its exit code.
 */
export type ErrorArea = 'server' | 'mqtt' | 'ota' | 'campaigns' | 'admin' | 'cli';

export interface ErrorCodeInfo {
  /** What it means and what to do; README "Errors" shows this text as it is. */
  meaning: string;
  areas: readonly ErrorArea[];
  /** The `nucleon` exit code when a command ends with this error; 1 unless given. */
  exitCode?: 2;
  /** The HTTP status the admin endpoint refuses a WebSocket upgrade with for this reason; the CLI maps it back to the code. */
  httpStatus?: number;
}

export const ERROR_CODES = {
  // Starting and running Nucleon.
  CONFIG_INVALID: { meaning: 'the configuration file is missing, unreadable or invalid; `problems` lists each error with its key path', areas: ['server', 'cli'], exitCode: 2 },
  LISTEN_FAILED: { meaning: 'a listener could not bind: port in use, permission denied, or an address not on this machine', areas: ['server', 'cli'] },
  DUPLICATE_RUNNER: { meaning: 'a runner with this name is already registered', areas: ['server'] },
  BROKER_STOPPED: { meaning: 'an event was sent after the event broker stopped', areas: ['server'] },
  BROKER_OVERLOADED: { meaning: "a runner's inbox and wait list are both full; the producer refuses the data", areas: ['server'] },
  DEPENDENCY_MISMATCH: { meaning: 'an internal of aedes or a dependency of it moved (src/mqtt/aedes/); the message names the package and version: reinstall with `npm ci`', areas: ['server', 'cli'] },
  CERTS_MISSING: { meaning: 'no TLS certificates in `certs.dir` and `certs.auto_generate` is off: run `nucleon certs init`', areas: ['server', 'cli'] },
  CA_KEY_MISSING: { meaning: '`ca.crt` exists without `ca.key`, so no server certificate can be signed', areas: ['server', 'cli'] },
  CA_MISSING: { meaning: '`ca.crt` or `ca.key` is missing to issue a certificate: run `nucleon certs init` first', areas: ['server', 'cli'] },
  CERT_INVALID: { meaning: 'a certificate file is not a PEM certificate', areas: ['server', 'cli'] },
  DEVICE_CERT_EXISTS: { meaning: '`nucleon certs device <uid>` would replace the key and certificate of that device; `--force` does (a device with the old key must be flashed again)', areas: ['cli'] },
  CRL_INVALID: { meaning: '`certs/crl.pem` does not parse, or a CRL in it is not signed by a CA of the trust bundle (`certs/ca.crt`) of its issuer name; at start this fails the start, later the previous lists stay and it is logged', areas: ['server', 'cli'] },
  CERTS_EXIST: { meaning: '`nucleon certs init` would replace existing certificates; `--force` does (device certificates of the old CA stop working)', areas: ['cli'] },
  STORE_SHARED: { meaning: 'with `[cluster]` the credentials live in Redis: manage them through the admin endpoint', areas: ['cli'] },
  STORE_LOCKED: { meaning: 'the store is in use by a running server: stop it first, or use the admin endpoint', areas: ['cli'] },

  // Device connections (MQTT): the disconnect reason, counted under a metric label.
  PACKET_TOO_LARGE: { meaning: 'a packet longer than `mqtt.limits.max_packet_bytes`; counted as `packet_too_large`', areas: ['mqtt'] },
  SEND_BUFFER_FULL: { meaning: 'more than `mqtt.limits.max_send_buffer_bytes` unsent to a client; counted as `slow_consumer`', areas: ['mqtt'] },

  // Answers to requests: OTA management, the admin protocol, the CLI.
  NOT_FOUND: { meaning: 'no such device, image, group, link, upload, password or campaign', areas: ['ota', 'campaigns', 'admin', 'cli'] },
  INVALID_ARGUMENT: {
    meaning: 'an argument is missing, unknown or malformed, and the message names it (for OTA: an id, uid, group name `[A-Za-z0-9_.-]{1,64}` or image type, an empty image, an unreadable source file, an incomplete link; for a campaign: the path of the field, such as `stages.2.percent`)',
    areas: ['ota', 'campaigns', 'admin', 'cli'],
  },
  CONFLICT: { meaning: 'an image with this id exists with different bytes; delete it first', areas: ['ota'] },
  VERSION_DOWNGRADE: { meaning: 'the link would move a device to an older image than it runs; send `force` to do it anyway', areas: ['ota'] },
  STORAGE_FAILED: { meaning: 'storing or reading OTA bytes or metadata failed (disk full, permissions); logged as an error', areas: ['ota'] },
  CAMPAIGN_EXISTS: { meaning: 'a campaign with this id exists already; campaigns are never replaced, pick another id', areas: ['campaigns'] },
  CAMPAIGN_STATE: { meaning: 'the command does not apply to the campaign in its state (resume one that is not paused, promote at the last stage, anything but show on an aborted or completed one)', areas: ['campaigns'] },
  CAMPAIGN_OVERLAP: { meaning: 'devices of the new campaign are still in progress in another running or paused campaign; the message names some of them', areas: ['campaigns'] },
  CAMPAIGN_EMPTY: { meaning: 'the campaign target resolves to no device (empty groups, no device online for the whole fleet)', areas: ['campaigns'] },
  BAD_MESSAGE: { meaning: 'not JSON / not CBOR, not an object, missing or bad `id` or `cmd`', areas: ['admin'] },
  UNSUPPORTED_VERSION: { meaning: '`v` is not 1', areas: ['admin'] },
  UNKNOWN_COMMAND: { meaning: 'no such command (the message lists the known ones)', areas: ['admin'] },
  UNAUTHENTICATED: { meaning: 'a command before `auth.login`', areas: ['admin'] },
  UNAUTHORIZED: { meaning: 'a wrong API key', areas: ['admin', 'cli'], httpStatus: 401 },
  FORBIDDEN: { meaning: 'the API key is `read-only` (README "Admin keys and roles") and the command changes something (HTTP 403 over REST); the refusal is in the audit log', areas: ['admin', 'cli'] },
  RATE_LIMITED: { meaning: 'more than `admin.messages_per_second` (bursts to twice that), or a wrong key after too many failed logins', areas: ['admin', 'cli'], httpStatus: 429 },
  TOO_MANY_PENDING: { meaning: 'more than `admin.max_pending_per_client` commands in flight on this connection, or more than 4 open uploads', areas: ['admin'] },
  TIMEOUT: { meaning: 'the OTA or app runner did not answer within `admin.request_timeout_ms`; for the CLI, the admin endpoint did not answer in time', areas: ['admin', 'cli'] },
  UNAVAILABLE: { meaning: 'no runner handles the request (OTA disabled, no app runner; for a campaign: the OTA runner did not answer), or the connection or server is closing or full', areas: ['campaigns', 'admin', 'cli'], httpStatus: 503 },
  OVERLOADED: { meaning: 'the event broker refused the request (inboxes full)', areas: ['admin'] },
  TOO_LARGE: { meaning: 'a REST request body over its limit: `admin.max_message_bytes` for JSON, `admin.max_upload_bytes` for an image (HTTP 413)', areas: ['admin'] },
  INTERNAL: { meaning: 'a bug; details only in the server log', areas: ['admin', 'cli'] },
  NO_API_KEY: { meaning: 'no API key: pass `--api-key`, set `NUCLEON_ADMIN_API_KEY`, or give `--config` (the generated key is read from the store)', areas: ['cli'] },
  BAD_URL: { meaning: '`--url` is not a ws://, wss://, http:// or https:// URL', areas: ['cli'] },
  UNREACHABLE: { meaning: 'the admin endpoint cannot be reached (connection refused, unknown host)', areas: ['cli'] },
  CONNECTION_CLOSED: { meaning: 'the admin endpoint closed the connection before answering', areas: ['cli'] },
  BAD_RESPONSE: { meaning: 'the admin endpoint refused the WebSocket with an HTTP status not listed here', areas: ['cli'] },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The catalogue seen through its interface, for the optional fields. */
const INFO: Readonly<Record<ErrorCode, ErrorCodeInfo>> = ERROR_CODES;
const ALL_CODES = Object.keys(ERROR_CODES) as ErrorCode[];

/** The codes raised in one area, as a type: `CodeOf<'ota'>` is `'NOT_FOUND' | 'INVALID_ARGUMENT' | …`. */
export type CodeOf<A extends ErrorArea> = { [C in ErrorCode]: A extends (typeof ERROR_CODES)[C]['areas'][number] ? C : never }[ErrorCode];

/** The codes raised in one area, in catalogue order. */
export function codesOf<A extends ErrorArea>(area: A): CodeOf<A>[] {
  return ALL_CODES.filter((code): code is CodeOf<A> => INFO[code].areas.includes(area));
}

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

/** The `nucleon` exit code for an error with `code` that ends a command. */
export function exitCodeOf(code: string): 1 | 2 {
  return isErrorCode(code) ? (INFO[code].exitCode ?? 1) : 1;
}

type HttpCode = { [C in ErrorCode]: (typeof ERROR_CODES)[C] extends { httpStatus: number } ? C : never }[ErrorCode];

export function httpStatusOf(code: HttpCode): number {
  return ERROR_CODES[code].httpStatus;
}

/** The code for which the admin endpoint refuses a WebSocket upgrade with `status`, if any. */
export function codeOfHttpStatus(status: number): ErrorCode | undefined {
  return ALL_CODES.find((code) => INFO[code].httpStatus === status);
}

declare const foreign: unique symbol;
/**
 * A code someone else chose, passed on unchanged: an application runner's
 * `ApplicationManagementResponse.error.code`, or the admin endpoint's answer
 * as the CLI reports it. The catalogue does not list application codes.
 */
export type ForeignCode = string & { readonly [foreign]: true };

export function foreignCode(code: string): ForeignCode {
  return code as ForeignCode;
}

/**
 * The base of every error Nucleon raises on purpose: a stable `code` from the
 * catalogue (or a ForeignCode passed on) and, where one caused it, `cause`.
 */
export class NucleonError extends Error {
  readonly code: string;

  constructor(code: ErrorCode | ForeignCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * The code and message an answer to another runner or a client carries: a
 * NucleonError's own; anything else `fallback`, with the error's message
 * unless `message` replaces it (to keep internals out).
 */
export function errorAnswer(error: unknown, fallback: ErrorCode, message?: string): { code: string; message: string } {
  if (error instanceof NucleonError) return { code: error.code, message: error.message };
  return { code: fallback, message: message ?? (error instanceof Error ? error.message : String(error)) };
}

/** Whether `error` is a NucleonError with `code`: how callers test for one failure without matching text. */
export function hasCode(error: unknown, code: ErrorCode): error is NucleonError {
  return error instanceof NucleonError && error.code === code;
}

/** The configuration file is missing, unreadable or invalid; `problems` holds one line per error. */
export class ConfigError extends NucleonError {
  constructor(
    readonly problems: string[],
    options?: { cause?: unknown },
  ) {
    super('CONFIG_INVALID', problems.join('\n'), options);
  }
}

/** A listener could not bind (port in use, permission denied, bad address). */
export class ListenError extends NucleonError {
  constructor(
    readonly what: string,
    readonly address: string,
    cause: unknown,
  ) {
    const reason = describeListenCause(cause);
    super('LISTEN_FAILED', `cannot listen for ${what} on ${address}: ${reason}`, { cause });
  }
}

export class DuplicateRunnerError extends NucleonError {
  constructor(name: string) {
    super('DUPLICATE_RUNNER', `a runner named "${name}" is already registered`);
  }
}

export class BrokerStoppedError extends NucleonError {
  constructor() {
    super('BROKER_STOPPED', 'the event broker is stopped and takes no more events');
  }
}

/** Raised to a producer when a runner's inbox and its wait list are both full. */
export class BrokerOverloadedError extends NucleonError {
  constructor(runner: string) {
    super('BROKER_OVERLOADED', `runner "${runner}" is overloaded: inbox and wait list are full`);
  }
}

/**
 * An internal of aedes or one of its dependencies that Nucleon relies on (see
 * src/mqtt/aedes/) is not what it was written against: the start fails before
 * any listener opens, naming the package, its installed version and what moved.
 */
export class DependencyMismatchError extends NucleonError {
  constructor(
    readonly dependency: string,
    readonly version: string,
    what: string,
  ) {
    super('DEPENDENCY_MISMATCH', `${dependency}@${version}: ${what}; Nucleon pins the versions it was built against (package.json), reinstall with npm ci`);
  }
}

/** A device sent a packet longer than mqtt.limits.max_packet_bytes; its connection is closed with this. */
export class PacketTooLargeError extends NucleonError {
  constructor(length: number, limit: number) {
    super('PACKET_TOO_LARGE', `packet too large: ${length} bytes, the limit is ${limit}`);
  }
}

/** More than mqtt.limits.max_send_buffer_bytes waits unsent to a client; its connection is closed with this. */
export class SendBufferFullError extends NucleonError {
  constructor(unsent: number, limit: number) {
    super('SEND_BUFFER_FULL', `send buffer full: ${unsent} bytes unsent, the limit is ${limit} (slow consumer)`);
  }
}

function describeListenCause(cause: unknown): string {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EADDRINUSE') return 'address already in use';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EADDRNOTAVAIL') return 'address not available on this machine';
  return cause instanceof Error ? cause.message : String(cause);
}
