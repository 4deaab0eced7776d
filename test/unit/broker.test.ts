import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { EventBroker } from '../../src/broker/index.js';
import { BrokerOverloadedError, BrokerStoppedError, DuplicateRunnerError } from '../../src/errors.js';
import type { Event, EventType, RunnerInbox } from '../../src/events.js';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { delay, waitFor } from '../helpers/index.js';

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

function makeBroker(options: { inboxSize?: number; maxWaiters?: number; batchSize?: number; turnBudgetMs?: number } = {}) {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  const metrics = new Registry();
  const broker = new EventBroker({
    inboxSize: options.inboxSize ?? 16,
    maxWaiters: options.maxWaiters ?? 16,
    ...(options.batchSize !== undefined ? { batchSize: options.batchSize } : {}),
    ...(options.turnBudgetMs !== undefined ? { turnBudgetMs: options.turnBudgetMs } : {}),
    logger: pino({ level: 'debug' }, sink),
    metrics,
  });
  broker.start();
  return { broker, lines, metrics };
}

function appRequest(n: number): Event {
  return { type: 'ApplicationRequest', uid: 'dev1', target: 'env', payload: Buffer.from([n]), receivedAt: n };
}

function recorder(accepts: EventType[], name = 'rec', extra: Partial<RunnerInbox> = {}) {
  const seen: Event[] = [];
  const inbox: RunnerInbox = { handle: (event) => void seen.push(event), ...extra };
  return { seen, event: { type: 'NewRunner' as const, name, accepts, inbox } };
}

test('a runner registered through a NewRunner event receives the events it accepts, in order', async () => {
  const { broker } = makeBroker();
  const app = recorder(['ApplicationRequest']);
  await broker.publish(app.event);
  for (let i = 0; i < 5; i++) await broker.publish(appRequest(i));
  await broker.publish({ type: 'TelemetryReceived', uid: 'dev1', telemetry: {}, receivedAt: 0 });
  assert.equal(await broker.drain(1000), true);
  assert.deepEqual(
    app.seen.map((e) => (e.type === 'ApplicationRequest' ? e.payload[0] : -1)),
    [0, 1, 2, 3, 4],
  );
  assert.deepEqual(broker.stats().find((s) => s.name === 'rec')?.delivered, 5);
});

/** How many events the runner had handled when an immediate queued right after emitting them ran (the loop turned once). */
async function handledInOneTurn(options: { batchSize: number; turnBudgetMs: number }, events: number): Promise<number> {
  const { broker } = makeBroker({ inboxSize: 128, ...options });
  const app = recorder(['ApplicationRequest']);
  await broker.publish(app.event);
  for (let i = 0; i < events; i++) assert.equal(broker.emit(appRequest(i)), true);
  const atTurn = await new Promise<number>((resolve) => setImmediate(() => resolve(app.seen.length)));
  assert.equal(await broker.drain(1000), true);
  assert.equal(app.seen.length, events);
  assert.equal(await broker.stop(1000), true);
  return atTurn;
}

test('a runner with events waiting goes on batch after batch within its turn budget, and lets the loop turn once it is spent', async () => {
  // Within the budget: all 100 in one turn, not one batch of 10 a turn (a fast runner fed by many devices fell behind so, bench scenario 10).
  assert.equal(await handledInOneTurn({ batchSize: 10, turnBudgetMs: 60_000 }, 100), 100);
  // Budget spent after the first batch: the loop turns after each batch, as it always did.
  assert.equal(await handledInOneTurn({ batchSize: 10, turnBudgetMs: 0 }, 100), 10);
});

test('a duplicate runner name is a clear error', async () => {
  const { broker } = makeBroker();
  await broker.publish(recorder(['ApplicationRequest'], 'app').event);
  await assert.rejects(broker.publish(recorder(['TelemetryReceived'], 'app').event), (error: unknown) => {
    assert.ok(error instanceof DuplicateRunnerError);
    assert.equal(error.code, 'DUPLICATE_RUNNER');
    assert.match(error.message, /"app" is already registered/);
    return true;
  });
  assert.throws(() => broker.register(recorder(['TelemetryReceived'], 'app').event), DuplicateRunnerError);
});

test('unknown event types in accepts are refused', () => {
  const { broker } = makeBroker();
  assert.throws(() => broker.register(recorder(['Bogus' as EventType], 'x').event), /unknown event types: Bogus/);
});

test('fans one event out to every runner that accepts it, and only those', async () => {
  const { broker } = makeBroker();
  const a = recorder(['TelemetryReceived', 'ApplicationRequest'], 'a');
  const b = recorder(['TelemetryReceived'], 'b');
  const c = recorder(['OtaRequest'], 'c');
  for (const r of [a, b, c]) await broker.publish(r.event);
  await broker.publish({ type: 'TelemetryReceived', uid: 'x', telemetry: { rsrp: 3 }, receivedAt: 1 });
  await broker.publish(appRequest(9));
  await broker.drain(1000);
  assert.deepEqual(a.seen.map((e) => e.type), ['TelemetryReceived', 'ApplicationRequest']);
  assert.deepEqual(b.seen.map((e) => e.type), ['TelemetryReceived']);
  assert.equal(c.seen.length, 0);
});

test('publish waits for inbox room (back-pressure) and loses nothing', async () => {
  const { broker } = makeBroker({ inboxSize: 4, maxWaiters: 100 });
  const seen: number[] = [];
  let inHandler = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  await broker.publish({
    type: 'NewRunner',
    name: 'slow',
    accepts: ['ApplicationRequest'],
    inbox: {
      handle: async (event) => {
        inHandler++;
        await gate;
        if (event.type === 'ApplicationRequest') seen.push(event.payload[0] ?? -1);
      },
    },
  });
  const publishes: Promise<void>[] = [];
  let settled = 0;
  for (let i = 0; i < 20; i++) publishes.push(broker.publish(appRequest(i)).then(() => void settled++));
  await waitFor(() => inHandler === 1, 'the first event to reach the handler');
  const stats = broker.stats()[0];
  // One event is in the handler, four fill the inbox, the rest wait: none taken, none lost.
  assert.equal(stats?.depth, 4);
  assert.equal(stats?.waiting, 15);
  assert.equal(settled, 5);
  assert.equal(broker.hasRoomFor('ApplicationRequest'), false);
  release();
  await Promise.all(publishes);
  await broker.drain(1000);
  assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => i));
  assert.equal(broker.stats()[0]?.dropped, 0);
});

test('beyond maxWaiters publish rejects with BrokerOverloadedError, counted and logged', async () => {
  const { broker, lines, metrics } = makeBroker({ inboxSize: 2, maxWaiters: 3 });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let inHandler = 0;
  await broker.publish({ type: 'NewRunner', name: 'stuck', accepts: ['ApplicationRequest'], inbox: { handle: () => { inHandler++; return gate; } } });
  const accepted: Promise<void>[] = [broker.publish(appRequest(0))];
  await waitFor(() => inHandler === 1, 'event 0 to reach the handler');
  // Two fill the inbox, three wait, the next one is refused.
  for (let i = 1; i < 6; i++) accepted.push(broker.publish(appRequest(i)));
  await assert.rejects(broker.publish(appRequest(6)), BrokerOverloadedError);
  assert.equal(broker.stats()[0]?.dropped, 1);
  assert.ok(lines.some((l) => l.msg === 'event dropped' && l.reason === 'overloaded' && l.runner === 'stuck'));
  assert.match(await metrics.metrics(), /nucleon_broker_dropped_total\{runner="stuck",reason="overloaded"\} 1/);
  release();
  await Promise.all(accepted);
});

test('emit never waits: a full inbox drops the event, counts and logs it', async () => {
  const { broker, lines } = makeBroker({ inboxSize: 2 });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const seen: Event[] = [];
  await broker.publish({
    type: 'NewRunner',
    name: 'busy',
    accepts: ['DeviceConnected'],
    inbox: { handle: async (e) => { seen.push(e); await gate; } },
  });
  const connected = (n: number): Event => ({ type: 'DeviceConnected', uid: `d${n}`, clientId: `d${n}`, remoteAddress: '', authMethod: 'anonymous', cleanSession: true, at: n });
  assert.equal(broker.emit(connected(0)), true);
  await waitFor(() => seen.length === 1, 'd0 to reach the handler');
  assert.equal(broker.emit(connected(1)), true);
  assert.equal(broker.emit(connected(2)), true);
  assert.equal(broker.emit(connected(3)), false);
  assert.equal(broker.stats()[0]?.dropped, 1);
  assert.ok(lines.some((l) => l.msg === 'event dropped' && l.reason === 'inbox_full'));
  release();
  await broker.drain(1000);
  assert.deepEqual(seen.map((e) => (e.type === 'DeviceConnected' ? e.uid : '')), ['d0', 'd1', 'd2']);
});

test('the runner inbox capacity overrides the configured size', async () => {
  const { broker } = makeBroker({ inboxSize: 16 });
  await broker.publish(recorder(['ApplicationRequest'], 'small', { capacity: 3 }).event);
  assert.equal(broker.stats()[0]?.capacity, 3);
});

test('a throwing handler is logged with runner and event, counted, and the runner keeps going', async () => {
  const { broker, lines, metrics } = makeBroker();
  const seen: number[] = [];
  await broker.publish({
    type: 'NewRunner',
    name: 'flaky',
    accepts: ['ApplicationRequest'],
    inbox: {
      handle: (event) => {
        if (event.type !== 'ApplicationRequest') return;
        const n = event.payload[0] ?? -1;
        if (n === 1) throw new Error('boom');
        if (n === 2) return Promise.reject(new Error('async boom'));
        seen.push(n);
      },
    },
  });
  for (let i = 0; i < 4; i++) await broker.publish(appRequest(i));
  await broker.drain(1000);
  assert.deepEqual(seen, [0, 3]);
  assert.equal(broker.stats()[0]?.errors, 2);
  const failures = lines.filter((l) => l.msg.startsWith('runner failed'));
  assert.equal(failures.length, 2);
  assert.equal(failures[0]?.runner, 'flaky');
  assert.equal(failures[0]?.event, 'ApplicationRequest');
  assert.match(await metrics.metrics(), /nucleon_broker_handler_errors_total\{runner="flaky",event="ApplicationRequest"\} 2/);
});

test('events no runner accepts are counted per type and logged once per type', async () => {
  const { broker, lines, metrics } = makeBroker();
  for (let i = 0; i < 3; i++) await broker.publish(appRequest(i));
  broker.emit({ type: 'OtaImageListRequest', correlationId: 'c1' });
  const warnings = lines.filter((l) => l.msg.startsWith('no runner accepts'));
  assert.deepEqual(warnings.map((l) => l.event), ['ApplicationRequest', 'OtaImageListRequest']);
  const text = await metrics.metrics();
  assert.match(text, /nucleon_broker_unrouted_total\{event="ApplicationRequest"\} 3/);
  assert.match(text, /nucleon_broker_unrouted_total\{event="OtaImageListRequest"\} 1/);
});

test('an observer gets the events it observes, yet they count as unrouted until a runner accepts them', async () => {
  const { broker, metrics } = makeBroker();
  const observed: Event[] = [];
  const handled: Event[] = [];
  await broker.publish({ type: 'NewRunner', name: 'watcher', accepts: ['OtaImageListRequest'], observes: ['ApplicationRequest'], inbox: { handle: (event) => void observed.push(event) } });
  assert.equal(broker.accepts('ApplicationRequest'), false, 'observing is not handling');
  assert.equal(broker.accepts('OtaImageListRequest'), true);
  for (let i = 0; i < 2; i++) await broker.publish(appRequest(i));
  await broker.drain(1000);
  assert.equal(observed.length, 2);
  assert.match(await metrics.metrics(), /nucleon_broker_unrouted_total\{event="ApplicationRequest"\} 2/);
  await broker.publish({ type: 'NewRunner', name: 'app', accepts: ['ApplicationRequest'], inbox: { handle: (event) => void handled.push(event) } });
  assert.equal(broker.accepts('ApplicationRequest'), true);
  await broker.publish(appRequest(2));
  await broker.drain(1000);
  assert.deepEqual([observed.length, handled.length], [3, 1]);
  assert.match(await metrics.metrics(), /nucleon_broker_unrouted_total\{event="ApplicationRequest"\} 2/);
  broker.unregister('app');
  assert.equal(broker.accepts('ApplicationRequest'), false);
  await broker.publish(appRequest(3));
  await broker.drain(1000);
  assert.equal(observed.length, 4);
  assert.match(await metrics.metrics(), /nucleon_broker_unrouted_total\{event="ApplicationRequest"\} 3/);
});

test('handlers never run on the producer stack (a runner that answers itself cannot recurse)', async () => {
  const { broker } = makeBroker({ inboxSize: 64 });
  let depth = 0;
  let maxDepth = 0;
  let count = 0;
  await broker.publish({
    type: 'NewRunner',
    name: 'echo',
    accepts: ['ApplicationRequest'],
    inbox: {
      handle: async (event) => {
        depth++;
        maxDepth = Math.max(maxDepth, depth);
        if (++count < 10_000 && event.type === 'ApplicationRequest') await broker.publish(appRequest(count % 256));
        depth--;
      },
    },
  });
  await broker.publish(appRequest(0));
  await broker.drain(10_000);
  assert.equal(count, 10_000);
  assert.equal(maxDepth, 1);
});

test('an idle runner starts soon after the producer returns, yet runners that keep waking each other let I/O run', async () => {
  const { broker } = makeBroker({ inboxSize: 64 });
  const LIMIT = 20_000;
  let exchanged = 0;
  let exchangedWhenImmediateRan = -1;
  const pong: Event = { type: 'ApplicationResponse', uid: 'dev1', target: 'pong', payload: new Uint8Array(0) };
  // Each handler hands one event to the other runner, which is idle by then: every
  // hand-over is an idle → busy start, the case that now starts in a microtask.
  await broker.publish({ type: 'NewRunner', name: 'ping', accepts: ['ApplicationRequest'], inbox: { handle: () => void (++exchanged < LIMIT && broker.emit(pong)) } });
  await broker.publish({ type: 'NewRunner', name: 'pong', accepts: ['ApplicationResponse'], inbox: { handle: () => void (++exchanged < LIMIT && broker.emit(appRequest(exchanged % 256))) } });
  setImmediate(() => (exchangedWhenImmediateRan = exchanged));
  broker.emit(appRequest(0));
  const handledOnProducerStack = exchanged > 0;
  await Promise.resolve();
  const startedInMicrotask = exchanged > 0;
  assert.ok(await broker.drain(10_000));
  assert.equal(handledOnProducerStack, false);
  assert.equal(startedInMicrotask, true);
  assert.equal(exchanged, LIMIT);
  // The check phase ran while the exchange was still going on, not after it.
  assert.ok(exchangedWhenImmediateRan > 0 && exchangedWhenImmediateRan < LIMIT, `setImmediate ran after ${exchangedWhenImmediateRan} of ${LIMIT} hand-overs`);
});

test('stop drains in-flight events, then refuses new ones', async () => {
  const { broker } = makeBroker({ inboxSize: 100 });
  const seen: number[] = [];
  await broker.publish({
    type: 'NewRunner',
    name: 'slowish',
    accepts: ['ApplicationRequest'],
    inbox: {
      handle: async (event) => {
        await delay(2);
        if (event.type === 'ApplicationRequest') seen.push(event.payload[0] ?? -1);
      },
    },
  });
  for (let i = 0; i < 50; i++) await broker.publish(appRequest(i));
  assert.equal(await broker.stop(5000), true);
  assert.equal(seen.length, 50);
  await assert.rejects(broker.publish(appRequest(99)), BrokerStoppedError);
  assert.equal(broker.emit(appRequest(99)), false);
});

test('stop gives up after its timeout and says so', async () => {
  const { broker, lines } = makeBroker();
  await broker.publish({ type: 'NewRunner', name: 'hung', accepts: ['ApplicationRequest'], inbox: { handle: () => new Promise(() => undefined) } });
  await broker.publish(appRequest(1));
  const started = Date.now();
  assert.equal(await broker.stop(150), false);
  assert.ok(Date.now() - started < 2000);
  assert.ok(lines.some((l) => l.msg === 'drain timed out'));
});

test('unregister drops and counts what was still queued for the runner', async () => {
  const { broker, metrics } = makeBroker();
  let inHandler = 0;
  await broker.publish({ type: 'NewRunner', name: 'gone', accepts: ['ApplicationRequest'], inbox: { handle: () => { inHandler++; return new Promise(() => undefined); } } });
  for (let i = 0; i < 4; i++) await broker.publish(appRequest(i));
  await waitFor(() => inHandler === 1, 'the first event to reach the handler');
  const before = broker.stats()[0];
  assert.equal(before?.depth, 3);
  broker.unregister('gone');
  assert.match(await metrics.metrics(), /nucleon_broker_dropped_total\{runner="gone",reason="runner_stopped"\} 3/);
  assert.deepEqual(broker.runnerNames(), []);
  assert.equal(broker.accepts('ApplicationRequest'), false);
});

test('inbox depth is exported as a gauge', async () => {
  const { broker, metrics } = makeBroker({ inboxSize: 8 });
  let inHandler = 0;
  await broker.publish({ type: 'NewRunner', name: 'held', accepts: ['ApplicationRequest'], inbox: { handle: () => { inHandler++; return new Promise(() => undefined); } } });
  for (let i = 0; i < 6; i++) await broker.publish(appRequest(i));
  await waitFor(() => inHandler === 1, 'the first event to reach the handler');
  assert.match(await metrics.metrics(), /nucleon_broker_inbox_depth\{runner="held"\} 5/);
});

test('whenRoom: one wait per producer, woken together once a quarter of the inbox is free, however many producers wait', async () => {
  const { broker, lines } = makeBroker({ inboxSize: 8, maxWaiters: 1 });
  const seen: number[] = [];
  const gates: (() => void)[] = [];
  await broker.publish({
    type: 'NewRunner',
    name: 'slow',
    accepts: ['ApplicationRequest'],
    inbox: {
      handle: async (event) => {
        await new Promise<void>((resolve) => gates.push(resolve));
        if (event.type === 'ApplicationRequest') seen.push(event.payload[0] ?? -1);
      },
    },
  });
  assert.equal(await Promise.race([broker.whenRoom('ApplicationRequest').then(() => 'room'), delay(50).then(() => 'waiting')]), 'room');
  for (let i = 0; i < 8; i++) assert.equal(broker.emit(appRequest(i)), true);
  await waitFor(() => gates.length === 1, 'event 0 to reach the handler');
  assert.equal(broker.emit(appRequest(8)), true);
  assert.equal(broker.hasRoomFor('ApplicationRequest'), false);
  // Far more producers than maxWaiters may wait: each holds its events itself.
  let woken = 0;
  const waits = Array.from({ length: 10 }, () => broker.whenRoom('ApplicationRequest').then(() => void woken++));
  gates.shift()?.();
  await waitFor(() => gates.length === 1, 'event 1 to reach the handler');
  await delay(20);
  assert.equal(woken, 0, 'one free place is less than a quarter of 8');
  gates.shift()?.();
  await Promise.all(waits);
  assert.equal(woken, 10);
  assert.equal(broker.hasRoomFor('ApplicationRequest'), true);
  // A whenRoom for a type nobody accepts never waits.
  await broker.whenRoom('OtaRequest');
  for (let i = 0; i < 50 && seen.length < 9; i++) {
    await waitFor(() => gates.length > 0 || seen.length === 9, 'next event');
    gates.shift()?.();
  }
  await broker.drain(1000);
  assert.deepEqual(seen, Array.from({ length: 9 }, (_, i) => i));
  assert.ok(!lines.some((l) => l.msg === 'event dropped'));
});

test('whenRoom rejects when the broker stops and resolves when the runner leaves', async () => {
  const { broker } = makeBroker({ inboxSize: 1 });
  await broker.publish({ type: 'NewRunner', name: 'hung', accepts: ['ApplicationRequest'], inbox: { handle: () => new Promise(() => undefined) } });
  let inHandler = false;
  await broker.publish({ type: 'NewRunner', name: 'hung2', accepts: ['TelemetryReceived'], inbox: { capacity: 1, handle: () => { inHandler = true; return new Promise(() => undefined); } } });
  broker.emit(appRequest(0));
  broker.emit(appRequest(1));
  const left = broker.whenRoom('ApplicationRequest');
  broker.unregister('hung');
  await left;
  const telemetry: Event = { type: 'TelemetryReceived', uid: 'dev1', telemetry: {}, receivedAt: 0 };
  broker.emit(telemetry);
  await waitFor(() => inHandler, 'the telemetry event to reach the handler');
  broker.emit(telemetry);
  const stopped = broker.whenRoom('TelemetryReceived');
  await broker.stop(10);
  await assert.rejects(stopped, BrokerStoppedError);
  await assert.rejects(broker.whenRoom('TelemetryReceived'), BrokerStoppedError);
});

test('handling time is sampled (one event in 64) and the delivered counter is exact', async () => {
  const { broker, metrics } = makeBroker({ inboxSize: 64 });
  const app = recorder(['ApplicationRequest']);
  await broker.publish(app.event);
  for (let i = 0; i < 130; i++) await broker.publish(appRequest(i));
  await broker.drain(1000);
  const text = await metrics.metrics();
  assert.match(text, /nucleon_broker_delivered_total\{runner="rec"\} 130/);
  // Events 0, 64 and 128.
  assert.match(text, /nucleon_broker_handle_seconds_count\{runner="rec"\} 3/);
  broker.unregister('rec');
  // A runner that left keeps its count: the counter never goes down.
  assert.match(await metrics.metrics(), /nucleon_broker_delivered_total\{runner="rec"\} 130/);
});

test('offer queues for every runner only when all have room, and otherwise queues nothing', async () => {
  const { broker } = makeBroker({ inboxSize: 16 });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const wide = recorder(['ApplicationRequest'], 'wide');
  await broker.publish(wide.event);
  let inHandler = 0;
  await broker.publish({ type: 'NewRunner', name: 'narrow', accepts: ['ApplicationRequest'], inbox: { capacity: 1, handle: () => { inHandler++; return gate; } } });
  assert.equal(broker.offer(appRequest(0)), true);
  await waitFor(() => inHandler === 1, 'event 0 to reach the narrow handler');
  assert.equal(broker.offer(appRequest(1)), true);
  // narrow is full: nothing is queued anywhere, nothing is counted as dropped.
  assert.equal(broker.offer(appRequest(2)), false);
  assert.deepEqual(broker.stats().map((s) => s.dropped), [0, 0]);
  release();
  await broker.drain(1000);
  assert.deepEqual(wide.seen.map((e) => (e.type === 'ApplicationRequest' ? e.payload[0] : -1)), [0, 1]);
  await broker.stop(100);
  assert.equal(broker.offer(appRequest(3)), false);
});

test('whenRoom with an aborted signal leaves the wait list at once (a producer that went away)', async () => {
  const { broker } = makeBroker({ inboxSize: 1 });
  let inHandler = false;
  await broker.publish({ type: 'NewRunner', name: 'hung', accepts: ['ApplicationRequest'], inbox: { handle: () => { inHandler = true; return new Promise(() => undefined); } } });
  broker.emit(appRequest(0));
  await waitFor(() => inHandler, 'event 0 to reach the handler');
  broker.emit(appRequest(1));
  const gone = new AbortController();
  const waits = Array.from({ length: 100 }, () => broker.whenRoom('ApplicationRequest', gone.signal));
  gone.abort(new Error('connection closed'));
  for (const wait of waits) await assert.rejects(wait, /connection closed/);
  await assert.rejects(broker.whenRoom('ApplicationRequest', gone.signal), /connection closed/);
  const internals = broker as unknown as { slots: Map<string, { roomWaiters: { size: number } }> };
  assert.equal(internals.slots.get('hung')?.roomWaiters.size, 0);
});
