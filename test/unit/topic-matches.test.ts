import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import type { Client } from 'aedes';
import { ClassicLevel } from 'classic-level';
import { rememberEmitterMatches } from '../../src/mqtt/aedes/emitter-matches.js';
import { SessionStore } from '../../src/mqtt/persistence.js';
import { TopicMatches } from '../../src/mqtt/topic-matches.js';
import { tempDir, waitFor } from '../helpers/index.js';

/*
 * Remembered topic matches (src/mqtt/topic-matches.ts): the subscribers of a
 * topic are matched once, and any subscription change forgets them, in
 * aedes' emitter (aedes/emitter-matches.ts) and in the embedded session
 * store (SessionStore.subscriptionsByTopic).
 */

test('a match is computed once per topic, forgotten on a change, and frozen', () => {
  const matches = new TopicMatches<string>();
  let computed = 0;
  const match = (topic: string): string[] => {
    computed++;
    return [`sub of ${topic}`];
  };
  const first = matches.get('a/app/p/data', match);
  assert.deepEqual(first, ['sub of a/app/p/data']);
  assert.equal(matches.get('a/app/p/data', match), first);
  assert.equal(computed, 1);
  assert.throws(() => Array.prototype.push.call(first, 'x'), TypeError, 'a remembered match cannot be changed');
  const own = ['kept by the matcher'];
  const copy = matches.get('b/app/p/data', () => own);
  own.push('changed later by the matcher');
  assert.deepEqual(copy, ['kept by the matcher'], "the matcher's own array is not what is remembered");
  matches.forget();
  matches.get('a/app/p/data', match);
  assert.equal(computed, 2, 'matched again after a change');
});

test('past the limit the oldest topic is forgotten first', () => {
  const matches = new TopicMatches<string>(2);
  const match = (topic: string): string[] => [topic];
  matches.get('a', match);
  matches.get('b', match);
  matches.get('c', match);
  assert.equal(matches.size, 2);
  assert.equal(matches.peek('a'), undefined);
  assert.deepEqual(matches.peek('b'), ['b']);
  assert.deepEqual(matches.peek('c'), ['c']);
});

test('a match that arrives after a change is returned but not remembered', () => {
  const matches = new TopicMatches<string>();
  const mark = matches.mark();
  matches.forget();
  assert.deepEqual(matches.rememberSince(mark, 't', ['old']), ['old']);
  assert.equal(matches.peek('t'), undefined);
  const current = matches.mark();
  matches.rememberSince(current, 't', ['new']);
  assert.deepEqual(matches.peek('t'), ['new']);
});

interface Emitter {
  on(topic: string, notify: (message: { topic: string }, done: () => void) => void, done?: () => void): void;
  removeListener(topic: string, notify: (message: { topic: string }, done: () => void) => void, done?: () => void): void;
  removeAllListeners(topic: string, done?: () => void): void;
  emit(message: { topic: string }, done?: () => void): void;
}

/** aedes' own mqemitter, the one it routes through in a single process. */
function aedesEmitter(): Emitter {
  const fromAedes = createRequire(createRequire(import.meta.url).resolve('aedes'));
  const mqemitter = fromAedes('mqemitter') as () => Emitter;
  return mqemitter();
}

function emitted(mq: Emitter, topic: string): Promise<void> {
  return new Promise((resolve) => mq.emit({ topic }, resolve));
}

test("aedes' emitter: a subscription added, removed or removed wholesale after a remembered match changes who gets the next message", async () => {
  const mq = aedesEmitter();
  const remembered = rememberEmitterMatches(mq);
  const got: string[] = [];
  const first = (message: { topic: string }, done: () => void): void => {
    got.push(`first ${message.topic}`);
    done();
  };
  const second = (message: { topic: string }, done: () => void): void => {
    got.push(`second ${message.topic}`);
    done();
  };
  mq.on('+/app/p/#', first);
  await emitted(mq, 'd1/app/p/data');
  assert.equal(remembered.size, 1, 'the match is remembered');
  assert.deepEqual(got, ['first d1/app/p/data']);

  mq.on('d1/app/p/data', second);
  await emitted(mq, 'd1/app/p/data');
  assert.deepEqual(got.splice(0), ['first d1/app/p/data', 'second d1/app/p/data', 'first d1/app/p/data'], 'a subscription added after the match gets the next message');

  await new Promise<void>((resolve) => mq.removeListener('+/app/p/#', first, resolve));
  await emitted(mq, 'd1/app/p/data');
  assert.deepEqual(got.splice(0), ['second d1/app/p/data'], 'a removed subscription gets nothing more');

  mq.removeAllListeners('d1/app/p/data');
  await emitted(mq, 'd1/app/p/data');
  assert.deepEqual(got, []);
});

test('an emitter without the matcher it relies on is refused, naming mqemitter', () => {
  assert.throws(() => rememberEmitterMatches({}), /mqemitter@.*_matcher/);
});

test('the session store: subscribers added or removed after a remembered match are found for the next message', async (t) => {
  const db = new ClassicLevel<string, Buffer>(await tempDir(t), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  const store = new SessionStore(db, { offlineQueueSize: 1000, maySubscribe: () => true, isConnected: () => true, onOfflineDrop: () => undefined });
  t.after(() => store.close());
  await store.setup({ id: 'b1' } as never);
  const reader = { id: 'svc:reader', clean: false } as Client;
  const other = { id: 'svc:other', clean: false } as Client;
  const clients = async (): Promise<string[]> => (await store.subscriptionsByTopic('d1/app/p/data')).map((sub) => sub.clientId).sort();

  await store.addSubscriptions(reader, [{ topic: '+/app/p/#', qos: 1 }]);
  assert.deepEqual(await clients(), ['svc:reader']);
  assert.equal(await store.subscriptionsByTopic('d1/app/p/data'), await store.subscriptionsByTopic('d1/app/p/data'), 'remembered: the same list');

  await store.addSubscriptions(other, [{ topic: 'd1/#', qos: 1 }]);
  assert.deepEqual(await clients(), ['svc:other', 'svc:reader']);
  await store.removeSubscriptions(reader, ['+/app/p/#']);
  assert.deepEqual(await clients(), ['svc:other']);
  await store.cleanSubscriptions(other);
  await waitFor(async () => (await clients()).length === 0, 'a cleaned session is no longer matched');

  // A lookup started before a change: its (older) answer is not remembered.
  const before = store.subscriptionsByTopic('d1/app/p/data');
  await store.addSubscriptions(reader, [{ topic: 'd1/app/p/data', qos: 1 }]);
  assert.deepEqual(await before, []);
  assert.deepEqual(await clients(), ['svc:reader']);
});
