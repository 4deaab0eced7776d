// The failed-login limiter on its own, with a fake clock: address blocks
// (IPv4 /24, IPv6 /64, loopback as one), the global budget, the window, the
// Retry-After it reports and the bound on what it tracks.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addressBlock, LOOPBACK_BLOCK } from '../../src/util/address-block.js';
import { AuthLimiter } from '../../src/admin/auth.js';

test('addressBlock: IPv4 /24, IPv6 /64, IPv4-mapped IPv6 as IPv4, all of loopback as one block', () => {
  const cases: [string, string][] = [
    ['10.1.2.3', '10.1.2.0/24'],
    ['10.1.2.250', '10.1.2.0/24'],
    ['10.1.3.3', '10.1.3.0/24'],
    ['::ffff:10.1.2.3', '10.1.2.0/24'],
    ['0:0:0:0:0:ffff:a01:203', '10.1.2.0/24'],
    ['127.0.0.1', LOOPBACK_BLOCK],
    ['127.255.3.4', LOOPBACK_BLOCK],
    ['::ffff:127.0.0.2', LOOPBACK_BLOCK],
    ['::1', LOOPBACK_BLOCK],
    ['0:0:0:0:0:0:0:1', LOOPBACK_BLOCK],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['2001:db8:0:0:ffff:ffff:ffff:ffff', '2001:db8:0:0::/64'],
    ['2001:DB8::abcd:1', '2001:db8:0:0::/64'],
    ['2001:db8:0:1::1', '2001:db8:0:1::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::', '0:0:0:0::/64'],
    ['unknown', 'unknown'],
  ];
  assert.deepEqual(
    cases.map(([address]) => [address, addressBlock(address)]),
    cases,
  );
});

function limiter(options: { perBlock?: number; global?: number; maxTracked?: number } = {}) {
  const clock = { now: 1_000_000 };
  const instance = new AuthLimiter({
    failuresPerWindow: options.perBlock ?? 3,
    globalFailuresPerWindow: options.global ?? 1000,
    windowMs: 60_000,
    ...(options.maxTracked !== undefined ? { maxTracked: options.maxTracked } : {}),
    now: () => clock.now,
  });
  return { instance, clock };
}

test('failures count per block: changing address inside a /24, a /64 or loopback does not reset the count; other blocks are not affected', () => {
  const { instance } = limiter();
  for (const [first, second, third, sameBlock, otherBlock] of [
    ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.200', '10.0.1.1'],
    ['2001:db8::1', '2001:db8::2', '2001:db8::ffff:3', '2001:db8::9', '2001:db8:0:1::1'],
    ['127.0.0.1', '127.0.0.2', '::1', '127.1.2.3', '192.0.2.1'],
  ] as const) {
    instance.recordFailure(first);
    instance.recordFailure(second);
    assert.equal(instance.limited(sameBlock), false, `${sameBlock} after two failures`);
    instance.recordFailure(third);
    assert.equal(instance.limited(first), true, first);
    assert.equal(instance.limited(sameBlock), true, sameBlock);
    assert.equal(instance.limited(otherBlock), false, otherBlock);
  }
});

test('the window: limited until it passes, with Retry-After counting down to it; then clear', () => {
  const { instance, clock } = limiter();
  assert.equal(instance.retryAfterSeconds('10.0.0.1'), 0);
  for (let i = 0; i < 3; i++) instance.recordFailure('10.0.0.1');
  assert.equal(instance.retryAfterSeconds('10.0.0.1'), 60);
  clock.now += 45_500;
  assert.equal(instance.limited('10.0.0.9'), true);
  assert.equal(instance.retryAfterSeconds('10.0.0.9'), 15);
  clock.now += 14_500;
  assert.equal(instance.limited('10.0.0.9'), false);
  assert.equal(instance.retryAfterSeconds('10.0.0.9'), 0);
});

test('the global budget: failures spread over many blocks limit every address once it is spent, until its window passes', () => {
  const { instance, clock } = limiter({ perBlock: 3, global: 20 });
  for (let i = 0; i < 19; i++) instance.recordFailure(`10.${i}.0.1`);
  assert.equal(instance.limited('192.0.2.1'), false);
  instance.recordFailure('2001:db8:1::1');
  for (const address of ['192.0.2.1', '::1', '2001:db8:ffff::1', '10.0.0.1']) assert.equal(instance.limited(address), true, address);
  assert.equal(instance.retryAfterSeconds('192.0.2.1'), 60);
  clock.now += 60_000;
  assert.equal(instance.limited('192.0.2.1'), false);
});

test('tracked blocks stay within maxTracked however many blocks fail; the global budget still counts them all', () => {
  const { instance } = limiter({ perBlock: 2, global: 1_000_000, maxTracked: 100 });
  for (let i = 0; i < 10_000; i++) instance.recordFailure(`2001:db8:${(i >> 8).toString(16)}:${(i & 0xff).toString(16)}::1`);
  assert.equal(instance.tracked, 100);

  const { instance: budgeted } = limiter({ perBlock: 2, global: 500, maxTracked: 100 });
  for (let i = 0; i < 500; i++) budgeted.recordFailure(`2001:db8:${(i >> 8).toString(16)}:${(i & 0xff).toString(16)}::1`);
  assert.equal(budgeted.tracked, 100);
  assert.equal(budgeted.limited('2001:db8:ffff:ffff::1'), true, 'evicting blocks does not escape the global budget');
});
