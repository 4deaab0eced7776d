// The small shared mechanisms behind the listener and login limits (src/util/), with a fake clock.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { validateConfig } from '../../src/config/index.js';
import { LoginGuard } from '../../src/devices/login-guard.js';
import { addressBlock, SlotsPerAddress } from '../../src/util/address.js';
import { KeyedTokenBuckets, TokenBucket } from '../../src/util/token-bucket.js';

test('a token bucket holds its burst, then refills at its rate', () => {
  let now = 0;
  const bucket = new TokenBucket({ perSecond: 2, burst: 3, now: () => now });
  assert.deepEqual([bucket.tryTake(), bucket.tryTake(), bucket.tryTake(), bucket.tryTake()], [true, true, true, false]);
  now += 499;
  assert.equal(bucket.has(), false);
  now += 1;
  assert.equal(bucket.tryTake(), true);
  now += 60_000;
  assert.equal(bucket.full(), true);
});

test('keyed buckets: keys are independent, and past maxKeys full buckets are forgotten first, then the oldest', () => {
  let now = 0;
  const buckets = new KeyedTokenBuckets({ perSecond: 1 / 60, burst: 2, maxKeys: 3, now: () => now });
  assert.deepEqual([buckets.tryTake('a'), buckets.tryTake('a'), buckets.tryTake('a'), buckets.has('a'), buckets.has('b')], [true, true, false, false, true]);
  buckets.tryTake('b');
  buckets.tryTake('c');
  now += 120_000;
  buckets.tryTake('b');
  buckets.tryTake('c');
  // 'a' has refilled: it is the one dropped for 'd', and 'a' is no worse off for it.
  buckets.tryTake('d');
  assert.equal(buckets.size, 3);
  assert.equal(buckets.has('a'), true);
  // All three hold failures: the oldest ('b') goes.
  buckets.tryTake('e');
  assert.equal(buckets.size, 3);
});

test('address blocks: IPv4 as it is (also when mapped into IPv6), IPv6 by its /64', () => {
  assert.equal(addressBlock('10.1.2.3'), '10.1.2.3');
  assert.equal(addressBlock('::ffff:10.1.2.3'), '10.1.2.3');
  assert.equal(addressBlock('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(addressBlock('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
  assert.equal(addressBlock('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(addressBlock('::1'), '0:0:0:0::/64');
  assert.equal(addressBlock('fe80::1%eth0'), 'fe80:0:0:0::/64');
  assert.equal(addressBlock(undefined), 'unknown');
});

test('slots per address: at most the limit each, given back on release, and nothing kept for a block that holds none', () => {
  const slots = new SlotsPerAddress(2);
  assert.deepEqual([slots.tryTake('a'), slots.tryTake('a'), slots.tryTake('a'), slots.tryTake('b')], [true, true, false, true]);
  slots.release('a');
  assert.equal(slots.tryTake('a'), true);
  slots.release('b');
  slots.release('b');
  assert.equal(slots.tryTake('b'), true);
});

test('login guard: a limited address or account is refused before the password is checked; checks never run above their bound', async () => {
  let now = 0;
  const limits = validateConfig({ limits: { login_failures_per_address: 2, login_failures_per_uid: 3, password_checks_concurrent: 1, password_checks_waiting: 1 } }).limits;
  const guard = new LoginGuard(limits, new Registry(), () => now);
  let verified = 0;
  const wrong = async () => {
    verified++;
    return false;
  };
  assert.deepEqual(await guard.check('10.0.0.1', 'device:a', wrong), { ok: false, reason: 'wrong_password' });
  assert.deepEqual(await guard.check('10.0.0.1', 'device:b', wrong), { ok: false, reason: 'wrong_password' });
  assert.deepEqual(await guard.check('10.0.0.1', 'device:c', wrong), { ok: false, reason: 'login_limited_address' });
  assert.equal(verified, 2);
  // The same account from elsewhere: two more failures limit the account (3), whatever the address.
  await guard.check('10.0.0.2', 'device:a', wrong);
  await guard.check('10.0.0.3', 'device:a', wrong);
  assert.deepEqual(await guard.check('10.0.0.4', 'device:a', async () => true), { ok: false, reason: 'login_limited_uid' });
  // A minute later both have refilled.
  now += 60_000;
  assert.deepEqual(await guard.check('10.0.0.1', 'device:a', async () => true), { ok: true });

  // One running, one waiting: a third at the same time is busy, and never two run at once.
  let running = 0;
  let peak = 0;
  const releases: (() => void)[] = [];
  const slow = () =>
    new Promise<boolean>((resolve) => {
      running++;
      peak = Math.max(peak, running);
      releases.push(() => {
        running--;
        resolve(true);
      });
    });
  const first = guard.check('10.1.0.1', 'device:x', slow);
  const second = guard.check('10.2.0.1', 'device:y', slow);
  assert.deepEqual(await guard.check('10.3.0.1', 'device:z', slow), { ok: false, reason: 'password_checks_busy' });
  for (let i = 0; i < 2; i++) {
    while (releases.length === 0) await new Promise((resolve) => setImmediate(resolve));
    releases.shift()?.();
  }
  assert.deepEqual([await first, await second], [{ ok: true }, { ok: true }]);
  assert.equal(peak, 1);
});
