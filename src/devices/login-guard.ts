import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import { addressBlock, SlotsPerAddress } from '../util/address.js';
import { Gate } from '../util/gate.js';
import { KeyedTokenBuckets } from '../util/token-bucket.js';

/** Why a password login was refused without an answer about the password. */
export type LoginRefusal = 'login_limited_address' | 'login_limited_uid' | 'password_checks_busy';

export type PasswordCheck = { ok: true } | { ok: false; reason: 'wrong_password' | LoginRefusal };

/** Address blocks and accounts whose failures are remembered at once (src/util/token-bucket.ts says what happens past it). */
const MAX_TRACKED = 65_536;
/** libuv's thread-pool size when UV_THREADPOOL_SIZE is not set. */
const LIBUV_DEFAULT_POOL = 4;

/**
 * Every password login of an instance (MQTT devices and service accounts, OTA
 * HTTP Basic) passes here, before any scrypt work:
 * - failed logins are limited per address block and per account with token
 *   buckets (`limits.login_failures_per_address`, `..._per_uid` a minute,
 *   bursts of the same); while either is empty the login is refused without
 *   checking the password, so guessing costs the server nothing;
 * - password checks run at most `limits.password_checks_concurrent` at once,
 *   with at most `password_checks_waiting` waiting, beyond that refused as
 *   busy; one address block may hold at most a quarter of those places, so
 *   the first wave of guesses from one address, before its failures count,
 *   cannot keep the fleet's logins out. scrypt runs on libuv's thread pool, which file and store reads use
 *   too: unbounded, a guessing burst took every thread and made OTA range
 *   reads 39 times slower (test/system/abuse-password-guessing.test.ts).
 * Limits are per instance: in a cluster each instance counts its own.
 */
export class LoginGuard {
  private readonly byAddress: KeyedTokenBuckets;
  private readonly byAccount: KeyedTokenBuckets;
  private readonly checks: Gate;
  private readonly placesPerAddress: SlotsPerAddress;
  private readonly results: Counter<'result'>;
  private running = 0;
  private peak = 0;

  constructor(
    private readonly limits: Config['limits'],
    registry: Registry,
    now?: () => number,
  ) {
    const clock = now ? { now } : {};
    this.byAddress = new KeyedTokenBuckets({ perSecond: limits.login_failures_per_address / 60, burst: limits.login_failures_per_address, maxKeys: MAX_TRACKED, ...clock });
    this.byAccount = new KeyedTokenBuckets({ perSecond: limits.login_failures_per_uid / 60, burst: limits.login_failures_per_uid, maxKeys: MAX_TRACKED, ...clock });
    this.checks = new Gate(limits.password_checks_concurrent, limits.password_checks_waiting);
    this.placesPerAddress = new SlotsPerAddress(Math.max(1, Math.ceil((limits.password_checks_concurrent + limits.password_checks_waiting) / 4)));
    const registers = [registry];
    this.results = new Counter({
      name: 'nucleon_password_checks_total',
      help: 'Password logins (MQTT, OTA HTTP Basic), per result: ok, wrong_password, or refused before the check (login_limited_address, login_limited_uid, password_checks_busy)',
      labelNames: ['result'],
      registers,
    });
    const running = () => this.running;
    const peak = () => this.peak;
    const waiting = () => this.checks.queued;
    new Gauge({
      name: 'nucleon_password_checks_running',
      help: 'Password checks (scrypt, on the libuv thread pool) running now',
      registers,
      collect() {
        this.set(running());
      },
    });
    new Gauge({
      name: 'nucleon_password_checks_running_peak',
      help: 'The most password checks that ran at once since start (never above limits.password_checks_concurrent)',
      registers,
      collect() {
        this.set(peak());
      },
    });
    new Gauge({
      name: 'nucleon_password_checks_waiting',
      help: 'Password logins waiting for a password check now',
      registers,
      collect() {
        this.set(waiting());
      },
    });
  }

  /**
   * Checks one login from `address` for `account` (`device:<uid>`,
   * `service:<name>`) with `verify` (the constant-time password check), unless
   * a limit refuses it first. Only a wrong password counts as a failure.
   */
  async check(address: string | undefined, account: string, verify: () => Promise<boolean>): Promise<PasswordCheck> {
    const block = addressBlock(address);
    if (!this.byAddress.has(block)) return this.refuse('login_limited_address');
    if (!this.byAccount.has(account)) return this.refuse('login_limited_uid');
    if (!this.placesPerAddress.tryTake(block)) return this.refuse('password_checks_busy');
    let ok: boolean | undefined;
    try {
      ok = await this.run(verify);
    } finally {
      this.placesPerAddress.release(block);
    }
    if (ok === undefined) return this.refuse('password_checks_busy');
    if (ok) {
      this.results.inc({ result: 'ok' });
      return { ok: true };
    }
    this.byAddress.tryTake(block);
    this.byAccount.tryTake(account);
    this.results.inc({ result: 'wrong_password' });
    return { ok: false, reason: 'wrong_password' };
  }

  /** Seconds until an address refused as limited may try again (HTTP Retry-After): one token's refill. */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(60 / this.limits.login_failures_per_address));
  }

  private refuse(reason: LoginRefusal): PasswordCheck {
    this.results.inc({ result: reason });
    return { ok: false, reason };
  }

  /** `verify` when a place is free; undefined at once when the wait list is full. */
  private run(verify: () => Promise<boolean>): Promise<boolean | undefined> {
    return new Promise((resolve, reject) => {
      const entered = this.checks.enter(() => {
        this.running++;
        this.peak = Math.max(this.peak, this.running);
        const done = () => {
          this.running--;
          this.checks.leave();
        };
        verify().then(
          (ok) => {
            done();
            resolve(ok);
          },
          (error: unknown) => {
            done();
            reject(error instanceof Error ? error : new Error(String(error)));
          },
        );
      });
      if (!entered) resolve(undefined);
    });
  }
}

const guards = new WeakMap<Registry, LoginGuard>();

/**
 * The instance's guard, made on first use. Keyed by the instance's metrics
 * registry: the MQTT and OTA runners of one instance share one guard (one
 * thread pool, one set of failure counts), two instances in a process do not.
 */
export function loginGuard(context: { config: Readonly<Config>; metrics: Registry; logger: Logger }): LoginGuard {
  const existing = guards.get(context.metrics);
  if (existing) return existing;
  const limits = context.config.limits;
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || LIBUV_DEFAULT_POOL;
  if (limits.password_checks_concurrent >= pool) {
    context.logger.warn({ password_checks_concurrent: limits.password_checks_concurrent, threadPool: pool }, 'limits.password_checks_concurrent leaves no libuv thread for file and store reads during a login burst; lower it or raise UV_THREADPOOL_SIZE');
  }
  const guard = new LoginGuard(limits, context.metrics);
  guards.set(context.metrics, guard);
  return guard;
}
