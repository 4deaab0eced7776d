// MQTT password guessing against a real instance (issue "Never down, never
// stalled", item 5). Before, one address could guess 48 passwords a second for
// as long as it liked, and because scrypt runs on libuv's thread pool, which
// file reads use too, OTA range reads got 39 times slower meanwhile. Now failed
// logins are limited per address and per uid (refused without running scrypt),
// scrypt runs at most `limits.password_checks_concurrent` at once with a
// bounded wait list, and every refusal is counted with its own reason.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { AdminTestClient } from '../helpers/admin-harness.js';
import { connackOf } from '../helpers/mqtt.js';
import { firmware } from '../helpers/ota-harness.js';
import { ADMIN_KEY, round, startInstance, summary, type Instance } from '../helpers/reliability-support.js';

const FAILURES_PER_ADDRESS = 10;
const FAILURES_PER_UID = 40;
const CHECKS_CONCURRENT = 2;
const CHECKS_WAITING = 8;
const GUESSERS = 16;
/**
 * Each burst makes this many attempts, and goes on past them (up to
 * HARD_MAX_ATTEMPTS) until what it waits for has happened, or until BURST_MS.
 * On a busy machine scrypt is slow: 600 guesses refused as busy can be over
 * before the address's budget of wrong passwords is spent.
 */
const MAX_ATTEMPTS = 600;
const HARD_MAX_ATTEMPTS = 3000;
const BURST_MS = 8000;
const IMAGE_ID = '4.0.0-1-g965b9df';
/** Sent in one admin frame (at most 1 MiB as base64). */
const IMAGE_BYTES = 256 * 1024;
const RANGE = 2048;
const VICTIM = 'pw-victim';
const VICTIM_PASSWORD = 'the-right-password-0123456789';

/** One MQTT login over plain TCP from `localAddress`; the CONNACK return code, or why there was none. */
function login(port: number, localAddress: string, uid: string, password: string): Promise<number | string> {
  return connackOf(net.connect({ port, host: '127.0.0.1', localAddress }), 'connect', { clientId: uid, username: uid, password });
}

interface Burst {
  codes: Map<number | string, number>;
  attempts: number;
  elapsedMs: number;
}

/**
 * GUESSERS clients logging in with wrong passwords until MAX_ATTEMPTS and
 * `enough(codes)` (HARD_MAX_ATTEMPTS at most), or BURST_MS; `address(i)` and
 * `uid(n)` pick where from and whom.
 */
async function guessingBurst(instance: Instance, address: (guesser: number) => string, uid: (attempt: number) => string, enough: (codes: ReadonlyMap<number | string, number>) => boolean = () => true): Promise<Burst> {
  const codes = new Map<number | string, number>();
  let attempts = 0;
  const started = performance.now();
  const more = () => attempts < HARD_MAX_ATTEMPTS && (attempts < MAX_ATTEMPTS || !enough(codes));
  await Promise.all(
    Array.from({ length: GUESSERS }, async (_, guesser) => {
      while (more() && performance.now() - started < BURST_MS) {
        const n = attempts++;
        const code = await login(instance.ports.tcp, address(guesser), uid(n), `guess-${n}`);
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    }),
  );
  return { codes, attempts, elapsedMs: performance.now() - started };
}

/** 2 KiB range reads of the image, one after another on a kept-alive connection, while `running()`; their latencies in ms. */
async function rangeReads(instance: Instance, agent: http.Agent, running: () => boolean, max = 400): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < max && running(); i++) {
    const start = ((i * 7919) % (IMAGE_BYTES / RANGE)) * RANGE;
    const began = performance.now();
    const status = await new Promise<number>((resolve, reject) => {
      const request = http.request({ host: '127.0.0.1', port: instance.ports.ota, path: `/images/${IMAGE_ID}`, headers: { range: `bytes=${start}-${start + RANGE - 1}` }, agent }, (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
        response.on('error', reject);
      });
      request.setTimeout(10_000, () => request.destroy(new Error('range read: no answer within 10 s')));
      request.on('error', reject);
      request.end();
    });
    assert.equal(status, 206);
    latencies.push(performance.now() - began);
  }
  return latencies;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return round(sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0, 2);
}

const GUESS_REFUSALS = ['bad_password', 'login_limited_address', 'login_limited_uid', 'password_checks_busy'] as const;

async function refusedCounts(instance: Instance): Promise<Record<(typeof GUESS_REFUSALS)[number], number>> {
  const [bad_password, login_limited_address, login_limited_uid, password_checks_busy] = await Promise.all(GUESS_REFUSALS.map((reason) => instance.metric('nucleon_mqtt_refused_total', { reason })));
  return { bad_password: bad_password ?? 0, login_limited_address: login_limited_address ?? 0, login_limited_uid: login_limited_uid ?? 0, password_checks_busy: password_checks_busy ?? 0 };
}

async function startGuessable(t: TestContext): Promise<{ instance: Instance; agent: http.Agent }> {
  const instance = await startInstance(t, {
    passwordDevices: { [VICTIM]: VICTIM_PASSWORD },
    omit: ['limits'],
    extraToml: [
      '[limits]',
      'tls_handshake_timeout_ms = 2000',
      `login_failures_per_address = ${FAILURES_PER_ADDRESS}`,
      `login_failures_per_uid = ${FAILURES_PER_UID}`,
      `password_checks_concurrent = ${CHECKS_CONCURRENT}`,
      `password_checks_waiting = ${CHECKS_WAITING}`,
    ],
  });
  const admin = await AdminTestClient.connect(t, `ws://127.0.0.1:${instance.ports.admin}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  assert.equal((await admin.request('images.add', { id: IMAGE_ID, data: firmware(IMAGE_BYTES, 9).toString('base64') })).ok, true);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  return { instance, agent };
}

test('password guessing from one address is limited and counted, the right password still logs in, OTA range reads keep going', async (t) => {
  const { instance, agent } = await startGuessable(t);
  const before = await rangeReads(instance, agent, () => true, 100);

  let guessing = true;
  // One address guesses the victim's password (and a few others').
  const burst = guessingBurst(
    instance,
    () => '127.0.0.3',
    (n) => (n % 4 === 0 ? `other-${n}` : VICTIM),
    // Until the address has been refused as limited (CONNACK 5) a few times.
    (codes) => (codes.get(5) ?? 0) >= 5,
  ).finally(() => (guessing = false));
  const during = rangeReads(instance, agent, () => guessing);
  // Meanwhile the device itself, from its own address, with the right password.
  assert.equal(await login(instance.ports.tcp, '127.0.0.1', VICTIM, VICTIM_PASSWORD), 0, 'the device logs in during the burst');
  const [result, duringLatencies] = await Promise.all([burst, during]);
  assert.equal(await login(instance.ports.tcp, '127.0.0.1', VICTIM, VICTIM_PASSWORD), 0, 'and after it');

  const refused = await refusedCounts(instance);
  const checks = (resultLabel: string) => instance.metric('nucleon_password_checks_total', { result: resultLabel });
  const scryptRuns = await checks('wrong_password');
  // Figures first, so a failing run still reports them.
  const figures = {
    attempts: result.attempts,
    burstMs: Math.round(result.elapsedMs),
    guessesPerSecond: round((result.attempts / result.elapsedMs) * 1000, 1),
    scryptRuns,
    ...Object.fromEntries(Object.entries(refused).map(([reason, n]) => [`refused_${reason}`, n])),
    rangeReadsBefore: before.length,
    rangeP50BeforeMs: percentile(before, 50),
    rangeReadsDuring: duringLatencies.length,
    rangeP50DuringMs: percentile(duringLatencies, 50),
    rangeP95DuringMs: percentile(duringLatencies, 95),
    scryptPeak: await instance.metric('nucleon_password_checks_running_peak'),
  };
  t.diagnostic(JSON.stringify(figures));
  summary('abuse password-guessing one-address', figures);
  // Limited, with a distinct reason; each refused guess counted once.
  assert.ok(refused.login_limited_address > 0, `the address was limited: ${JSON.stringify(refused)}`);
  assert.equal(refused.bad_password + refused.login_limited_address + refused.login_limited_uid + refused.password_checks_busy, result.attempts, `every guess counted once: ${JSON.stringify(refused)}`);
  assert.equal(result.codes.get(5) ?? 0, refused.login_limited_address + refused.login_limited_uid, 'limited guesses get CONNACK 5');
  assert.equal(result.codes.get(4) ?? 0, refused.bad_password, 'checked wrong passwords get CONNACK 4');
  assert.equal(result.codes.get(3) ?? 0, refused.password_checks_busy, 'guesses beyond the wait list, or the address\'s share of it, get CONNACK 3');
  // Scrypt ran only for the guesses the address's budget allowed: its burst, what refilled, and what was already in flight when it ran out.
  const refilled = Math.ceil((result.elapsedMs / 60_000) * FAILURES_PER_ADDRESS);
  assert.ok(scryptRuns <= FAILURES_PER_ADDRESS + refilled + CHECKS_CONCURRENT + CHECKS_WAITING, `${scryptRuns} wrong passwords checked for ${result.attempts} guesses`);
  // One address alone does not lock the device out: its uid was never limited.
  assert.equal(refused.login_limited_uid, 0);
  assert.ok((await instance.metric('nucleon_password_checks_running_peak')) <= CHECKS_CONCURRENT, 'scrypt concurrency never exceeded the bound');
});

test('guessing spread over many addresses: scrypt stays within its bound, an overflowing wait list is refused as busy (CONNACK 3), OTA range reads keep going', async (t) => {
  const { instance, agent } = await startGuessable(t);
  const before = await rangeReads(instance, agent, () => true, 100);
  let guessing = true;
  // Every guesser its own address and every guess its own uid: only the concurrency bound stands in the way.
  const burst = guessingBurst(
    instance,
    (guesser) => `127.0.2.${guesser + 1}`,
    (n) => `spread-${n}`,
  ).finally(() => (guessing = false));
  const during = rangeReads(instance, agent, () => guessing);
  const [result, duringLatencies] = await Promise.all([burst, during]);
  assert.equal(await login(instance.ports.tcp, '127.0.0.1', VICTIM, VICTIM_PASSWORD), 0, 'the device logs in after the burst');

  const refused = await refusedCounts(instance);
  const peak = await instance.metric('nucleon_password_checks_running_peak');
  // Figures first, so a failing run still reports them.
  const figures = {
    attempts: result.attempts,
    burstMs: Math.round(result.elapsedMs),
    guessesPerSecond: round((result.attempts / result.elapsedMs) * 1000, 1),
    ...Object.fromEntries(Object.entries(refused).map(([reason, n]) => [`refused_${reason}`, n])),
    rangeP50BeforeMs: percentile(before, 50),
    rangeReadsDuring: duringLatencies.length,
    rangeP50DuringMs: percentile(duringLatencies, 50),
    rangeP95DuringMs: percentile(duringLatencies, 95),
    scryptPeak: peak,
  };
  t.diagnostic(JSON.stringify(figures));
  summary('abuse password-guessing many-addresses', figures);
  assert.ok(peak >= 1 && peak <= CHECKS_CONCURRENT, `scrypt concurrency peaked at ${peak}, the bound is ${CHECKS_CONCURRENT}`);
  assert.equal(refused.bad_password + refused.login_limited_address + refused.login_limited_uid + refused.password_checks_busy, result.attempts, `every guess counted once: ${JSON.stringify(refused)}`);
  // 16 guessers against 2 running + 8 waiting: the rest are refused at once as busy, with CONNACK 3.
  assert.ok(refused.password_checks_busy > 0, `busy refusals counted: ${JSON.stringify(refused)}`);
  assert.equal(result.codes.get(3) ?? 0, refused.password_checks_busy);
  assert.equal(await instance.metric('nucleon_password_checks_waiting'), 0);

});
