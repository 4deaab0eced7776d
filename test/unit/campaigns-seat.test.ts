// Who drives the campaigns (cluster mode) with a fake seat and a fake relay: the runner
// drives only while it holds the seat, stops at once when it loses it, its store refuses
// a decision once the lease is no longer held (the fence), it forwards its campaign
// devices' events while another instance drives, and on taking the seat again it goes
// on from the store without telling any device twice.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { CampaignRunner, type CommandAnswer, type DrivingSeat, type ObservationRelay, type ObservedEvent } from '../../src/campaigns/index.js';
import type { CampaignCommandRequest, CampaignDeviceStatus, Event, EventType } from '../../src/events.js';
import { campaignContext } from '../helpers/campaign-context.js';
import { waitFor } from '../helpers/index.js';

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
  /** Set while this runner drives: how another instance's forwarded command would be run here. */
  run: ((request: CampaignCommandRequest) => Promise<CommandAnswer>) | undefined;
  /** Commands this runner forwarded to "the driver", and what the driver answers. */
  readonly asked: CampaignCommandRequest[] = [];
  answer: CommandAnswer = { result: { from: 'the driver' } };
  announced = 0;
  private changed: (() => void) | undefined;

  async open(): Promise<void> {}
  async listen(deliver: (event: ObservedEvent) => void, run: (request: CampaignCommandRequest) => Promise<CommandAnswer>): Promise<void> {
    this.deliver = deliver;
    this.run = run;
  }
  async unlisten(): Promise<void> {
    this.deliver = undefined;
    this.run = undefined;
  }
  async ask(request: CampaignCommandRequest): Promise<CommandAnswer> {
    this.asked.push(request);
    return this.answer;
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
  const { context, broker, store, ota, settle, close } = await campaignContext(t);
  const seat = new FakeSeat();
  const relay = new FakeRelay();
  // The timer is off (a day): the test ticks by hand.
  const runner = new CampaignRunner({ tickIntervalMs: 86_400_000, cluster: { seat, relay } });
  await runner.start(context);
  t.after(async () => {
    await runner.stop();
    await close();
  });
  const seen: Event[] = [];
  const accepts: EventType[] = ['OtaResponse', 'CampaignDeviceState', 'CampaignCommandResult'];
  await broker.publish({ type: 'NewRunner', name: 'recorder', accepts, inbox: { handle: (event) => void seen.push(event) } });
  await ota.addImage({ id: OLD, imageType: 'primary', source: { kind: 'bytes', data: new Uint8Array(SIZE).fill(1) } });
  await ota.addImage({ id: NEW, imageType: 'primary', source: { kind: 'bytes', data: new Uint8Array(SIZE).fill(2) } });
  await ota.link({ group: 'field', imageId: OLD });
  for (const uid of DEVICES) await ota.link({ deviceUid: uid, group: 'field' });
  await settle(runner);
  seen.length = 0;
  return {
    broker,
    settle: () => settle(runner),
    store,
    context,
    ota,
    seat,
    relay,
    runner,
    seen,
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
  await s.settle();
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
  await s.settle();
  assert.deepEqual(s.packages(), ['dev0']);
  assert.ok(s.relay.announced >= 1);

  // The lease runs out before the keeper's timer says so: the decision is not written, and not carried out.
  s.seat.held = false;
  await s.broker.publish(telemetry('dev0', NEW));
  await s.settle();
  assert.equal((await s.stored('dev0'))?.state, 'notified', 'the confirmation was refused by the fence');

  // The keeper reports the loss: the runner stops driving at once and listens no more.
  s.seat.set(false);
  await assert.rejects(s.runner.tick(), { code: 'UNAVAILABLE' });
  await waitFor(() => s.relay.deliver === undefined, 'the runner to stop listening');

  // Meanwhile its campaign devices' events go to the driver; other devices' stay here.
  await waitFor(async () => {
    await s.broker.publish(telemetry('dev0', NEW));
    await s.settle();
    return s.relay.forwarded.length > 0;
  }, 'dev0 telemetry forwarded');
  await s.broker.publish(telemetry('not-in-a-campaign', NEW));
  await s.broker.publish({ type: 'OtaRequest', uid: 'dev0', cmd: 'DownloadBytes', id: NEW, startPos: 0, endPos: 100, receivedAt: Date.now() });
  await s.settle();
  // The request is not forwarded (the driver needs only Done), but the download progress it made is (saved behind the chunk).
  await waitFor(() => s.relay.forwarded.some((event) => event.type === 'DeviceFirmwareUpdated'), 'the download progress forwarded');
  await s.settle();
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
  await s.settle();
  assert.deepEqual([...s.packages()].sort(), DEVICES, 'every device told exactly once');
});

test("a follower gives its OTA runner the byte budgets of running campaigns, and clears them when they end", async (t) => {
  const s = await setUp(t);
  s.seat.set(true);
  await waitFor(async () => (await s.runner.list().catch(() => undefined)) !== undefined, 'the runner to drive');
  await s.runner.create({ ...SPEC, budget: { bytesPerSecond: 2048, maxDelayMs: 10_000 } });
  await s.settle();
  // 100 kB at 2,048 B/s would wait about 49 s: past maxDelayMs.
  const ask = () => s.ota.budgetFor('dev1', NEW, 100_000, 'mqtt');
  assert.equal((await ask()).kind, 'over', 'the driver set the budget');

  // This instance restarts and another drives: its OTA runner starts with no budget, and its follower sets it from the store.
  await s.runner.stop();
  await s.ota.stop();
  await s.ota.start(s.context);
  assert.equal((await ask()).kind, 'free');
  await s.runner.start(s.context);
  await waitFor(async () => (await ask()).kind === 'over', 'the follower to set the budget');
  await assert.rejects(s.runner.list(), { code: 'UNAVAILABLE' }, 'this instance follows');

  // The driver (elsewhere) ends the campaign and says so: the budget goes.
  const meta = await s.store.get<Record<string, unknown>>('campaign/meta/c1');
  assert.ok(meta);
  await s.store.put('campaign/meta/c1', { ...meta, state: 'aborted', reason: 'by the other instance' });
  s.relay.announceChange();
  await waitFor(async () => (await ask()).kind === 'free', 'the follower to clear the budget');
});

test('campaign commands: a follower reads list/show from the store and forwards changes to the driver; the driver runs forwarded ones', async (t) => {
  const s = await setUp(t);
  s.seat.set(true);
  await waitFor(() => s.relay.run, 'the runner to drive');
  // As the driver: a command forwarded by another instance is carried out here and answered.
  const created = await s.relay.run?.({ command: 'create', spec: SPEC });
  assert.equal((created as { result: { state: string } }).result.state, 'running');
  const paused = await s.relay.run?.({ command: 'pause', id: 'c1' });
  assert.equal((paused as { result: { state: string } }).result.state, 'paused');
  const missing = await s.relay.run?.({ command: 'resume', id: 'nope' });
  assert.equal((missing as { error: { code: string } }).error.code, 'NOT_FOUND');

  // As a follower: reads from the shared store, changes go to the driver (the fake answers for it).
  s.seat.set(false);
  await waitFor(() => s.relay.run === undefined, 'the runner to stop driving');
  const ask = async (correlationId: string, request: CampaignCommandRequest) => {
    await s.broker.publish({ type: 'CampaignCommand', correlationId, request });
    return waitFor(() => s.seen.find((event) => event.type === 'CampaignCommandResult' && event.correlationId === correlationId), `the answer to ${correlationId}`);
  };
  const shown = await ask('show-1', { command: 'show', id: 'c1' });
  assert.equal((shown as { result?: { campaign: { state: string } } }).result?.campaign.state, 'paused');
  const resumed = await ask('resume-1', { command: 'resume', id: 'c1' });
  assert.deepEqual((resumed as { result?: unknown }).result, { from: 'the driver' });
  assert.deepEqual(s.relay.asked, [{ command: 'resume', id: 'c1' }]);
  s.relay.answer = { error: { code: 'UNAVAILABLE', message: 'no instance drives the campaigns right now' } };
  const refused = await ask('abort-1', { command: 'abort', id: 'c1' });
  assert.equal((refused as { error?: { code: string } }).error?.code, 'UNAVAILABLE');
});
