// Who drives the campaigns (cluster mode) with a fake seat and a fake relay: the runner
// drives only while it holds the seat, stops at once when it loses it, its store refuses
// a decision once the lease is no longer held (the fence), it forwards its campaign
// devices' events while another instance drives, and on taking the seat again it goes
// on from the store without telling any device twice.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { Registry } from 'prom-client';
import { EventBroker } from '../../src/broker/index.js';
import { CampaignRunner, type DrivingSeat, type ObservationRelay, type ObservedEvent } from '../../src/campaigns/index.js';
import { validateConfig } from '../../src/config/index.js';
import type { CampaignDeviceStatus, Event, EventType } from '../../src/events.js';
import { silentLogger } from '../../src/logger.js';
import { OtaRunner } from '../../src/ota/index.js';
import { LocalPresence } from '../../src/presence/index.js';
import type { RunnerContext } from '../../src/runner.js';
import { LevelStore } from '../../src/store/index.js';
import { tempDir, waitFor } from '../helpers/index.js';

const OLD = '1.0.0-0-gaaaaaaa';
const NEW = '1.1.0-0-gbbbbbbb';
const SIZE = 1000;
const DEVICES = ['dev0', 'dev1', 'dev2', 'dev3'];

class FakeSeat implements DrivingSeat {
  readonly instanceId = 'this-one';
  held = false;
  holderId: string | undefined = 'other-one';
  private onChange: ((driving: boolean) => void) | undefined;

  async start(onChange: (driving: boolean) => void): Promise<void> {
    this.onChange = onChange;
  }

  async stop(): Promise<void> {
    this.set(false);
  }

  async holder(): Promise<string | undefined> {
    return this.held ? this.instanceId : this.holderId;
  }

  set(held: boolean): void {
    this.held = held;
    this.onChange?.(held);
  }
}

class FakeRelay implements ObservationRelay {
  readonly forwarded: ObservedEvent[] = [];
  deliver: ((event: ObservedEvent) => void) | undefined;
  announced = 0;
  private changed: (() => void) | undefined;

  async open(): Promise<void> {}
  async listen(deliver: (event: ObservedEvent) => void): Promise<void> {
    this.deliver = deliver;
  }
  async unlisten(): Promise<void> {
    this.deliver = undefined;
  }
  forward(event: ObservedEvent): void {
    this.forwarded.push(event);
  }
  announceChange(): void {
    this.announced++;
    this.changed?.();
  }
  onChange(listener: () => void): void {
    this.changed = listener;
  }
  async close(): Promise<void> {}
}

async function setUp(t: TestContext) {
  const dir = await tempDir(t);
  const config = validateConfig({ store: { path: dir }, ota: { enabled: true, http: { enabled: false } } }, { baseDir: dir });
  const store = new LevelStore(path.join(dir, 'kv'));
  await store.open();
  const logger = silentLogger();
  const broker = new EventBroker({ inboxSize: 4096, maxWaiters: 4096, logger, metrics: new Registry() });
  broker.start();
  const context: RunnerContext = { config, broker, logger, metrics: new Registry(), store, presence: new LocalPresence('test', logger) };
  const ota = new OtaRunner();
  await ota.start(context);
  const seat = new FakeSeat();
  const relay = new FakeRelay();
  // The timer is off (a day): the test ticks by hand.
  const runner = new CampaignRunner({ tickIntervalMs: 86_400_000, cluster: { seat, relay } });
  await runner.start(context);
  t.after(async () => {
    await runner.stop();
    await ota.stop();
    await broker.stop(1000);
    await store.close();
  });
  const seen: Event[] = [];
  const accepts: EventType[] = ['OtaResponse', 'CampaignDeviceState'];
  await broker.publish({ type: 'NewRunner', name: 'recorder', accepts, inbox: { handle: (event) => void seen.push(event) } });
  await ota.addImage({ id: OLD, imageType: 'primary', source: { kind: 'bytes', data: new Uint8Array(SIZE).fill(1) } });
  await ota.addImage({ id: NEW, imageType: 'primary', source: { kind: 'bytes', data: new Uint8Array(SIZE).fill(2) } });
  await ota.link({ group: 'field', imageId: OLD });
  for (const uid of DEVICES) await ota.link({ deviceUid: uid, group: 'field' });
  await broker.drain(5000);
  seen.length = 0;
  return {
    broker,
    store,
    seat,
    relay,
    runner,
    packages: () => seen.flatMap((e) => (e.type === 'OtaResponse' && e.package?.id === NEW ? [e.uid] : [])),
    stored: (uid: string) => store.get<CampaignDeviceStatus>(`campaign/device/c1/${uid}`),
  };
}

const SPEC = {
  id: 'c1',
  imageId: NEW,
  target: { devices: DEVICES },
  canary: ['dev0'],
  stages: [{ percent: 100 }],
  soakMs: 0,
  health: { windowMs: 60_000, telemetrySilentMs: 60_000, reconnectTimeoutMs: 60_000, downloadTimeoutMs: 600_000, successRatio: 1 },
};

const telemetry = (uid: string, version: string): ObservedEvent => ({ type: 'TelemetryReceived', uid, telemetry: { version }, receivedAt: Date.now() });

test('a runner that never drove stops cleanly, giving the seat up', async (t) => {
  const s = await setUp(t);
  await s.runner.stop();
  assert.equal(s.seat.held, false);
  await assert.rejects(s.runner.list(), /not started/);
});

test('a runner that drove and gave the seat up stops cleanly', async (t) => {
  const s = await setUp(t);
  s.seat.set(true);
  await waitFor(async () => (await s.runner.list().catch(() => undefined)) !== undefined, 'the runner to drive');
  await s.runner.create(SPEC);
  s.seat.set(false);
  await s.broker.publish(telemetry('dev0', NEW));
  await s.broker.drain(5000);
  await s.runner.stop();
});

test('the seat decides who drives: fence on loss, forwarding meanwhile, and a takeover that goes on from the store', async (t) => {
  const s = await setUp(t);

  // Not holding the seat: nothing to drive, and operators are told so.
  await assert.rejects(s.runner.list(), { code: 'UNAVAILABLE' });
  await assert.rejects(async () => s.runner.create(SPEC), { code: 'UNAVAILABLE' });

  // Taking it: the runner drives; the canary is told, and the followers hear that a campaign changed.
  s.seat.set(true);
  await waitFor(() => s.relay.deliver, 'the runner to listen to the relay');
  await waitFor(async () => (await s.runner.list().catch(() => undefined)) !== undefined, 'the runner to drive');
  await s.runner.create(SPEC);
  await s.broker.drain(5000);
  assert.deepEqual(s.packages(), ['dev0']);
  assert.ok(s.relay.announced >= 1);

  // The lease runs out before the keeper's timer says so: the decision is not written, and not carried out.
  s.seat.held = false;
  await s.broker.publish(telemetry('dev0', NEW));
  await s.broker.drain(5000);
  assert.equal((await s.stored('dev0'))?.state, 'notified', 'the confirmation was refused by the fence');

  // The keeper reports the loss: the runner stops driving at once and listens no more.
  s.seat.set(false);
  await assert.rejects(s.runner.tick(), { code: 'UNAVAILABLE' });
  await waitFor(() => s.relay.deliver === undefined, 'the runner to stop listening');

  // Meanwhile its campaign devices' events go to the driver; other devices' stay here.
  await waitFor(async () => {
    await s.broker.publish(telemetry('dev0', NEW));
    await s.broker.drain(5000);
    return s.relay.forwarded.length > 0;
  }, 'dev0 telemetry forwarded');
  await s.broker.publish(telemetry('not-in-a-campaign', NEW));
  await s.broker.publish({ type: 'OtaRequest', uid: 'dev0', cmd: 'DownloadBytes', id: NEW, startPos: 0, endPos: 100, receivedAt: Date.now() });
  await s.broker.drain(5000);
  // The request is not forwarded (the driver needs only Done), but the download progress it made is.
  assert.deepEqual(
    s.relay.forwarded.map((event) => (event.type === 'DeviceFirmwareUpdated' ? `${event.type} ${event.state.uid}` : `${event.type} ${event.uid}`)),
    ['TelemetryReceived dev0', 'DeviceFirmwareUpdated dev0'],
  );

  // Taking the seat again: the campaign is read back from the store; a forwarded
  // version report confirms the canary, the last stage starts, and dev0 is not told again.
  s.seat.set(true);
  await waitFor(() => s.relay.deliver, 'the runner to listen again');
  await waitFor(async () => (await s.runner.list().catch(() => undefined)) !== undefined, 'the runner to drive again');
  s.relay.deliver?.(telemetry('dev0', NEW));
  await waitFor(async () => (await s.stored('dev0'))?.state === 'confirmed', 'dev0 confirmed from a forwarded event');
  await s.runner.promote('c1');
  await s.broker.drain(5000);
  assert.deepEqual([...s.packages()].sort(), DEVICES, 'every device told exactly once');
});
