// The small shared mechanisms behind the listener and login limits (src/util/), with a fake clock.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addressBlock, SlotsPerAddress } from '../src/util/address.js';
import { KeyedTokenBuckets, TokenBucket } from '../src/util/token-bucket.js';

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
