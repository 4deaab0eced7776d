import { randomUUID } from 'node:crypto';
import type { CampaignCommandRequest, CampaignDeviceStatus, CampaignSummary, Event, EventOf, GroupInfo, ImageInfo } from '../events.js';
import { assertNever } from '../events.js';
import type { Logger } from '../logger.js';
import { EventRunner, type RunnerContext } from '../runner.js';
import { SerialQueue } from '../util/serial-queue.js';
import { WorkBehind } from '../util/work-behind.js';
import type { Observation } from './device-machine.js';
import { budgetEvent } from './budget.js';
import { isObserved, type CommandAnswer, type DrivingSeat, type ObservationRelay, type ObservedEvent } from './driving.js';
import { CampaignEngine, type Effect } from './engine.js';
import { CampaignError, toErrorInfo } from './errors.js';
import { campaignMetrics } from './metrics.js';
import { OtaRequests } from './requests.js';
import { parseCampaignSpec, type CampaignSpec } from './spec.js';
import { CampaignFollower } from './follower.js';
import { CampaignStore } from './store.js';
import { resolveTarget } from './target.js';

const ACCEPTS = [
  'CampaignCommand',
  // Answers of the OTA runner: to the links that notify devices, and to the image and group lists a new campaign needs.
  'OtaCommandResult',
  'OtaImageListResponse',
  'OtaGroupListResponse',
  // What the devices do.
  'DeviceConnected',
  'DeviceDisconnected',
  'TelemetryReceived',
  'OtaRequest',
  'DeviceFirmwareUpdated',
] as const;

type Accepted = EventOf<(typeof ACCEPTS)[number]>;

/** How many uids an overlap error names. */
const NAMED_IN_ERRORS = 10;

export interface CampaignRunnerOptions {
  /** Injectable for tests: ms since the epoch. */
  clock?: () => number;
  /** How often time-outs, health windows and stage gates are checked; 1 s by default. */
  tickIntervalMs?: number;
  /** How long a new campaign waits for the OTA runner's image and group lists; 10 s by default. */
  requestTimeoutMs?: number;
  /**
   * Cluster mode: only the holder of `seat` drives the campaigns; the others
   * forward their devices' events to it through `relay`. Without it this
   * instance always drives (standalone).
   */
  cluster?: { seat: DrivingSeat; relay: ObservationRelay };
}

/** What a link sent for a campaign was for, by its correlation id. */
interface SentLink {
  campaignId: string;
  uid: string;
  purpose: 'notify' | 'relink';
}

/** Device events' decisions saved and carried out behind the inbox at once; one more waits for one of them. */
const MAX_DECISIONS_BEHIND = 64;

/** Everything that exists only while the runner runs. */
interface Running {
  logger: Logger;
  store: CampaignStore;
  engines: Map<string, CampaignEngine>;
  /** uid → the running or paused campaign it belongs to, for the device events (most devices are in none). */
  byDevice: Map<string, CampaignEngine>;
  requests: OtaRequests;
  links: Map<string, SentLink>;
  timer: NodeJS.Timeout;
  /** Commands wait for the OTA runner's answers, which come through the inbox: they run beside it, one at a time. */
  commands: SerialQueue;
  /** Store writes, in decision order. */
  saves: SerialQueue;
  /** Device events' decisions being saved and carried out behind the inbox (see `decideBehind`). */
  deciding: WorkBehind;
  /** Links to the OTA runner, sent one at a time with back-pressure, never from the inbox handler. */
  outbox: SerialQueue;
  ticking: boolean;
  detachMetrics: () => void;
}

/**
 * The campaigns runner (README "Campaigns"): staged, health-gated OTA
 * rollouts. It decides with CampaignEngine, stores every decision before
 * acting on it, notifies devices by linking them to the image (`OtaLink`,
 * so the OTA runner does the rest) and watches them through device,
 * telemetry, OTA request and firmware-state events.
 *
 * Operators use `CampaignCommand` (admin `campaigns.*`) or the methods
 * (`create`, `list`, `show`, `pause`, `resume`, `abort`, `promote`), which
 * throw CampaignError.
 */
export class CampaignRunner extends EventRunner<(typeof ACCEPTS)[number]> {
  /** Set while this instance drives the campaigns (always, once started, when standalone). */
  private running: Running | undefined;
  private readonly clock: () => number;
  /** Cluster mode, while not driving: forwards device events and answers the read-only commands. */
  private follower: CampaignFollower | undefined;
  /** Seat changes take effect in order; `seatChange` counts them so a stale takeover gives up. */
  private readonly seatChanges = new SerialQueue();
  private seatChange = 0;
  /** Events forwarded by other instances, handled one at a time like the inbox's. */
  private readonly relayed = new SerialQueue();

  constructor(private readonly options: CampaignRunnerOptions = {}) {
    // Device events live only: the runner never holds the ingest log back, and what a crash
    // loses is seen again (devices repeat their version in every telemetry message).
    super('campaigns', ACCEPTS, { durable: false });
    this.clock = options.clock ?? Date.now;
  }

  protected override async onStart(context: RunnerContext): Promise<void> {
    const cluster = this.options.cluster;
    if (!cluster) {
      this.running = await this.drive(context, () => undefined);
      return;
    }
    this.follower = new CampaignFollower(context.store, cluster.relay, context.logger, this.options.tickIntervalMs ?? 1000, (event) => this.publish(event));
    this.follower.start();
    await cluster.relay.open();
    await cluster.seat.start((driving) => this.onSeat(context, cluster, driving));
  }

  protected override async onStop(): Promise<void> {
    await this.follower?.stop();
    try {
      // No seat change is queued after this (onSeat ignores a stopped runner); one under way finishes first.
      await this.seatChanges.idle();
      const running = this.running;
      if (running) await this.park(running, true);
    } finally {
      this.running = undefined;
      this.follower = undefined;
      // After the last write: the next driver reads everything this one decided.
      await this.options.cluster?.relay.close();
      await this.options.cluster?.seat.stop();
    }
  }

  // ---- who drives ----------------------------------------------------------

  /**
   * The seat (cluster lease) was taken or lost. Losing stops driving at once:
   * no tick, event or command of this instance decides anything after it, and
   * a save already under way is refused by the store's fence. Taking loads
   * every campaign from the shared store and goes on from there, exactly like
   * a restart.
   */
  private onSeat(context: RunnerContext, cluster: { seat: DrivingSeat; relay: ObservationRelay }, driving: boolean): void {
    // Stopping: onStop does the rest (the keeper reports `false` as it gives the lease up).
    if (!this.context) return;
    const change = ++this.seatChange;
    if (!driving) {
      const running = this.running;
      this.running = undefined;
      if (running) {
        clearInterval(running.timer);
        running.detachMetrics();
        running.requests.cancelAll('this instance no longer drives the campaigns');
      }
      // The budgets this instance set as driver stay with its OTA runner; the follower clears them when their campaigns end.
      const budgeted = running ? [...running.engines.values()].filter((engine) => engine.active && budgetEvent(engine) !== undefined).map((engine) => engine.id) : [];
      this.follower?.start(budgeted);
    }
    this.seatChanges
      .run(async () => {
        if (change !== this.seatChange) return;
        if (!driving) {
          await cluster.relay.unlisten();
          return;
        }
        await this.follower?.stop();
        await cluster.relay.listen(
          (event) => this.fromRelay(event),
          (request) => this.runForwarded(request),
        );
        // Bound to this tenure: a save left over from an earlier one stays refused even when the lease was taken again since.
        const fence = () => {
          if (!cluster.seat.held || change !== this.seatChange) throw new CampaignError('UNAVAILABLE', 'this instance no longer holds the campaign lease; the decision was not written');
        };
        const running = await this.drive(context, fence, () => cluster.relay.announceChange());
        if (change === this.seatChange && cluster.seat.held) {
          this.running = running;
          return;
        }
        await this.park(running, false);
      })
      .catch((error: unknown) => context.logger.error({ err: error, driving }, 'changing who drives the campaigns failed'));
  }

  /** Loads every campaign and starts the tick: this instance drives from now on. */
  private async drive(context: RunnerContext, fence: () => void, campaignChanged?: () => void): Promise<Running> {
    const store = new CampaignStore(context.store, fence, campaignChanged);
    const engines = new Map<string, CampaignEngine>();
    const byDevice = new Map<string, CampaignEngine>();
    for (const engine of await store.loadAll()) {
      engines.set(engine.id, engine);
      if (engine.active) for (const device of engine.deviceList()) byDevice.set(device.uid, engine);
    }
    const timer = setInterval(() => this.scheduledTick(), this.options.tickIntervalMs ?? 1000);
    timer.unref();
    const running: Running = {
      logger: context.logger,
      store,
      engines,
      byDevice,
      requests: new OtaRequests(this.options.requestTimeoutMs ?? 10_000),
      links: new Map(),
      timer,
      commands: new SerialQueue(),
      saves: new SerialQueue(),
      deciding: new WorkBehind(MAX_DECISIONS_BEHIND),
      outbox: new SerialQueue(),
      ticking: false,
      detachMetrics: campaignMetrics(context.metrics, () => [...engines.values()].map((engine) => engine.summary())),
    };
    const active = [...engines.values()].filter((engine) => engine.active).map((engine) => engine.id);
    if (active.length > 0) context.logger.info({ campaigns: active }, 'continuing campaigns');
    // The OTA runner keeps budgets in memory only: tell it again those of the campaigns that go on.
    for (const engine of engines.values()) if (engine.active) this.sendBudget(running, engine);
    return running;
  }

  /** Stops driving: waits for work under way and, when `flush`, writes the quiet changes. */
  private async park(running: Running, flush: boolean): Promise<void> {
    clearInterval(running.timer);
    running.detachMetrics();
    running.requests.cancelAll('the campaigns runner stopped');
    await running.commands.idle();
    await running.deciding.settled();
    await running.outbox.idle();
    await running.saves.idle();
    // Quiet changes (last telemetry times) are written on the next tick; write them now.
    if (flush) for (const engine of running.engines.values()) await running.store.save(engine);
  }

  /** A device event another instance forwarded: handled as if it came through this inbox. */
  private fromRelay(event: ObservedEvent): void {
    this.relayed
      .run(async () => {
        // Only a driver handles them; a follower would forward them again.
        if (this.running) await this.handle(event);
      })
      .catch((error: unknown) => this.running?.logger.error({ err: error, type: event.type }, 'handling a forwarded device event failed'));
  }

  /** What the runner does with an event while another instance drives. */
  private follow(event: Accepted): void {
    const follower = this.follower;
    if (!follower) return;
    if (isObserved(event)) {
      follower.observe(event);
      return;
    }
    if (event.type !== 'CampaignCommand') return;
    const relay = this.options.cluster?.relay;
    const request = event.request;
    // Reads come from the shared store here; changes are carried out by the driver, which answers through the relay.
    const answered: Promise<CommandAnswer> =
      request.command === 'list' || request.command === 'show'
        ? follower.answer(request).then((result) => ({ result }))
        : relay
          ? relay.ask(request)
          : Promise.reject(new CampaignError('UNAVAILABLE', 'this instance does not drive the campaigns'));
    answered
      .catch((error: unknown): CommandAnswer => ({ error: toErrorInfo(error) }))
      .then((answer) => this.publish({ type: 'CampaignCommandResult', correlationId: event.correlationId, ...answer }))
      .catch((error: unknown) => this.context?.logger.error({ err: error, correlationId: event.correlationId }, 'answering a campaign command failed'));
  }

  /** Driver: a command an operator sent to another instance, forwarded here through the relay. */
  private async runForwarded(request: CampaignCommandRequest): Promise<CommandAnswer> {
    const running = this.running;
    if (!running) return { error: toErrorInfo(new CampaignError('UNAVAILABLE', 'this instance no longer drives the campaigns; try again')) };
    try {
      return { result: await this.run(request) };
    } catch (error) {
      const info = toErrorInfo(error);
      if (info.code === 'INTERNAL') running.logger.error({ err: error, command: request.command }, 'forwarded campaign command failed');
      return { error: info };
    }
  }

  // ---- library API -------------------------------------------------------

  /** Creates and starts a campaign: its first stage is notified at once. */
  create(input: unknown): Promise<CampaignSummary> {
    return this.require().commands.run(() => this.doCreate(input));
  }

  async list(): Promise<CampaignSummary[]> {
    return [...this.require().engines.values()].map((engine) => engine.summary());
  }

  async show(id: string, withDevices = false): Promise<{ campaign: CampaignSummary; spec: CampaignSpec; devices?: CampaignDeviceStatus[] }> {
    const engine = this.engine(id);
    return { campaign: engine.summary(), spec: engine.spec, ...(withDevices ? { devices: engine.deviceList() } : {}) };
  }

  pause(id: string): Promise<CampaignSummary> {
    return this.operate(id, (engine, now) => engine.pause(now));
  }

  resume(id: string): Promise<CampaignSummary> {
    return this.operate(id, (engine, now) => engine.resume(now));
  }

  /** `rollback` defaults to the campaign's own rollback setting. */
  abort(id: string, rollback?: boolean): Promise<CampaignSummary> {
    return this.operate(id, (engine, now) => engine.abort(now, rollback));
  }

  promote(id: string): Promise<CampaignSummary> {
    return this.operate(id, (engine, now) => engine.promote(now));
  }

  /** Checks time-outs, health windows and stage gates now; the timer calls it every `tickIntervalMs`. */
  async tick(): Promise<void> {
    const running = this.require();
    const now = this.clock();
    for (const engine of [...running.engines.values()]) {
      if (!engine.active) continue;
      // Saved even without effects: the quiet changes (last telemetry times) of the past interval.
      await this.decided(running, engine, engine.tick(now), true);
    }
  }

  // ---- events ------------------------------------------------------------

  protected handle(event: Accepted): void | Promise<void> {
    const running = this.running;
    if (!running) return this.follow(event);
    switch (event.type) {
      case 'CampaignCommand':
        // Not awaited: a command waits for OTA answers that come through this same inbox.
        this.command(running, event).catch((error: unknown) => running.logger.error({ err: error, correlationId: event.correlationId }, 'answering a campaign command failed'));
        return;
      case 'OtaCommandResult':
        return this.onLinkResult(running, event);
      case 'OtaImageListResponse':
      case 'OtaGroupListResponse':
        running.requests.settle(event.correlationId, event);
        return;
      case 'DeviceConnected':
        return this.observe(running, event.uid, { kind: 'connected', at: event.at });
      case 'DeviceDisconnected':
        return this.observe(running, event.uid, { kind: 'disconnected', at: event.at });
      case 'TelemetryReceived': {
        const version = event.telemetry.version;
        return this.observe(running, event.uid, version === undefined ? { kind: 'telemetry', at: event.receivedAt } : { kind: 'telemetry', version, at: event.receivedAt });
      }
      case 'OtaRequest':
        if (event.cmd !== 'Done') return;
        return this.observe(running, event.uid, { kind: 'done', at: event.receivedAt });
      case 'DeviceFirmwareUpdated': {
        const { state } = event;
        const engine = running.byDevice.get(state.uid);
        if (!engine || state.downloadImageId !== engine.imageId) return;
        return this.observe(running, state.uid, { kind: 'progress', bytes: state.bytesServed, at: this.clock() });
      }
      default:
        return assertNever(event);
    }
  }

  /** Most devices are in no campaign: for them this returns at once, without a promise. */
  private observe(running: Running, uid: string, seen: Observation): void | Promise<void> {
    const engine = running.byDevice.get(uid);
    if (!engine) return;
    const effects = engine.observe(uid, seen);
    // Without effects the change is bookkeeping only; the next tick saves it.
    if (effects.length === 0) return;
    return this.decideBehind(running, engine, effects);
  }

  /**
   * A device event's decision, saved and carried out behind the inbox. While
   * one save waits for the disk, the decisions of the events after it join
   * the next save (CampaignStore.save writes every change since the last), so
   * a stage's devices finishing together cost two synced writes instead of
   * one each in turn. Effects still follow the save that holds their
   * decision, in decision order (one queue). At most MAX_DECISIONS_BEHIND
   * wait; the next event then waits for one of them.
   */
  private decideBehind(running: Running, engine: CampaignEngine, effects: Effect[]): void | Promise<void> {
    return running.deciding.start(
      () => this.decided(running, engine, effects, true),
      (error) => running.logger.error({ err: error, campaign: engine.id }, 'a campaign decision could not be saved, so it was not carried out'),
    );
  }

  /** Resolves once no device event's decision is being saved or carried out (tests: "everything sent was handled"). */
  async decisionsSettled(): Promise<void> {
    await this.running?.deciding.settled();
  }

  /** Device events' decisions being saved or carried out now. */
  get decisionsInFlight(): number {
    return this.running?.deciding.size ?? 0;
  }

  private onLinkResult(running: Running, event: EventOf<'OtaCommandResult'>): void | Promise<void> {
    const link = running.links.get(event.correlationId);
    if (!link) return;
    running.links.delete(event.correlationId);
    if (!event.error) return;
    running.logger.warn({ campaign: link.campaignId, uid: link.uid, purpose: link.purpose, code: event.error.code }, `the OTA runner refused a campaign link: ${event.error.message}`);
    if (link.purpose !== 'notify') return;
    return this.observe(running, link.uid, { kind: 'link_refused', detail: `${event.error.code}: ${event.error.message}`, at: this.clock() });
  }

  // ---- decisions and their effects ----------------------------------------

  /**
   * Saves what the decision changed, then carries out its effects: notices
   * at once (`emit` never waits), links through the outbox. Saving first
   * means a crash between the two can lose a notification but never repeat
   * one: after a restart the device is recorded as notified.
   */
  private async decided(running: Running, engine: CampaignEngine, effects: Effect[], save: boolean): Promise<void> {
    if (save) await running.saves.run(() => running.store.save(engine));
    const links: Event[] = [];
    const now = this.clock();
    for (const effect of effects) {
      switch (effect.kind) {
        case 'notify':
        case 'relink': {
          const correlationId = `campaign-${randomUUID()}`;
          running.links.set(correlationId, { campaignId: effect.campaignId, uid: effect.uid, purpose: effect.kind });
          links.push({ type: 'OtaLink', correlationId, deviceUid: effect.uid, imageId: effect.imageId, force: effect.kind === 'relink' });
          break;
        }
        case 'device':
          this.context?.broker.emit({ type: 'CampaignDeviceState', campaignId: effect.campaignId, device: effect.device, previous: effect.previous, at: now });
          break;
        case 'campaign':
          this.context?.broker.emit({ type: 'CampaignStateChanged', campaign: effect.campaign, at: now });
          running.logger.info({ campaign: effect.campaign.id, state: effect.campaign.state, stage: effect.campaign.stage, reason: effect.campaign.reason }, 'campaign changed');
          break;
        default:
          assertNever(effect);
      }
    }
    if (!engine.active) {
      this.forgetDevices(running, engine);
      this.sendBudget(running, engine);
    }
    if (links.length > 0) {
      running.outbox.run(() => this.sendLinks(running, links)).catch((error: unknown) => running.logger.error({ err: error, campaign: engine.id }, 'sending campaign links failed'));
    }
  }

  private async sendLinks(running: Running, links: Event[]): Promise<void> {
    for (const [index, link] of links.entries()) {
      if (link.type !== 'OtaLink') continue;
      const broker = this.context?.broker;
      if (!broker) {
        // Stopping: the devices stay recorded as notified and, unlinked, fail as download_timeout after the restart (README "Campaigns").
        running.logger.warn({ unsent: links.length - index }, 'the campaigns runner stopped before all campaign links were sent');
        return;
      }
      try {
        if (!broker.accepts('OtaLink')) throw new CampaignError('UNAVAILABLE', 'no OTA runner takes OtaLink');
        await this.publish(link);
      } catch (error) {
        // Answered like a refusal, so the device fails with a reason instead of timing out unexplained.
        await this.onLinkResult(running, { type: 'OtaCommandResult', correlationId: link.correlationId, error: toErrorInfo(error) });
      }
    }
  }

  /** Tells the OTA runner the campaign's byte budget (or that it ended), in order with the links. */
  private sendBudget(running: Running, engine: CampaignEngine): void {
    const event = budgetEvent(engine);
    if (!event) return;
    running.outbox
      .run(async () => {
        if (this.context?.broker.accepts(event.type) !== true) return;
        await this.publish(event);
      })
      .catch((error: unknown) => running.logger.error({ err: error, campaign: engine.id }, 'sending the campaign byte budget failed'));
  }

  private scheduledTick(): void {
    const running = this.running;
    if (!running || running.ticking) return;
    running.ticking = true;
    this.tick()
      .catch((error: unknown) => running.logger.error({ err: error }, 'campaign tick failed; the next one tries again'))
      .finally(() => {
        running.ticking = false;
      });
  }

  private forgetDevices(running: Running, engine: CampaignEngine): void {
    for (const device of engine.deviceList()) if (running.byDevice.get(device.uid) === engine) running.byDevice.delete(device.uid);
  }

  // ---- commands ----------------------------------------------------------

  private async command(running: Running, event: EventOf<'CampaignCommand'>): Promise<void> {
    let answer: EventOf<'CampaignCommandResult'>;
    try {
      answer = { type: 'CampaignCommandResult', correlationId: event.correlationId, result: await this.run(event.request) };
    } catch (error) {
      const info = toErrorInfo(error);
      if (info.code === 'INTERNAL') running.logger.error({ err: error, command: event.request.command }, 'campaign command failed');
      answer = { type: 'CampaignCommandResult', correlationId: event.correlationId, error: info };
    }
    await this.publish(answer);
  }

  private run(request: CampaignCommandRequest): Promise<unknown> {
    switch (request.command) {
      case 'create':
        return this.create(request.spec);
      case 'list':
        return this.list().then((campaigns) => ({ campaigns }));
      case 'show':
        return this.show(request.id, request.devices ?? false);
      case 'pause':
        return this.pause(request.id);
      case 'resume':
        return this.resume(request.id);
      case 'abort':
        return this.abort(request.id, request.rollback);
      case 'promote':
        return this.promote(request.id);
      default:
        return assertNever(request);
    }
  }

  private async doCreate(input: unknown): Promise<CampaignSummary> {
    const running = this.require();
    const spec = parseCampaignSpec(input);
    if (running.engines.has(spec.id) || (await running.store.exists(spec.id))) throw new CampaignError('CAMPAIGN_EXISTS', `campaign ${spec.id} exists already`);
    const images = await this.askImages(running);
    const image = images.find((candidate) => candidate.id === spec.imageId);
    if (!image) throw new CampaignError('NOT_FOUND', `imageId: no image ${spec.imageId}`);
    const rollbackImage = spec.rollback?.imageId;
    if (rollbackImage !== undefined && !images.some((candidate) => candidate.id === rollbackImage)) throw new CampaignError('NOT_FOUND', `rollback.imageId: no image ${rollbackImage}`);
    const online = this.context ? [...this.context.presence.entries()].map((entry) => entry.uid) : [];
    const target = resolveTarget(spec, await this.askGroups(running), online);
    const busy = target.filter((device) => running.byDevice.get(device.uid)?.active === true && isUnsettled(running.byDevice.get(device.uid), device.uid)).map((device) => device.uid);
    if (busy.length > 0) {
      const named = busy.slice(0, NAMED_IN_ERRORS).join(', ');
      throw new CampaignError('CAMPAIGN_OVERLAP', `${busy.length} target devices are still in progress in another campaign: ${named}${busy.length > NAMED_IN_ERRORS ? ', ...' : ''}`);
    }
    const { engine, effects } = CampaignEngine.create(spec, image.size, target, this.clock());
    running.engines.set(engine.id, engine);
    for (const device of target) running.byDevice.set(device.uid, engine);
    // Before the first links in the outbox, so no device downloads before its budget applies.
    this.sendBudget(running, engine);
    await this.decided(running, engine, effects, true);
    return engine.summary();
  }

  /** Pause, resume, abort, promote: one at a time with creates, saved before their effects. */
  private operate(id: string, act: (engine: CampaignEngine, now: number) => Effect[]): Promise<CampaignSummary> {
    const running = this.require();
    return running.commands.run(async () => {
      const engine = this.engine(id);
      await this.decided(running, engine, act(engine, this.clock()), true);
      return engine.summary();
    });
  }

  private async askImages(running: Running): Promise<ImageInfo[]> {
    const answer = await this.ask(running, 'the image list', (correlationId) => ({ type: 'OtaImageListRequest', correlationId }));
    if (answer?.type !== 'OtaImageListResponse') throw new CampaignError('UNAVAILABLE', 'the OTA runner did not send the image list');
    return answer.images;
  }

  private async askGroups(running: Running): Promise<GroupInfo[]> {
    const answer = await this.ask(running, 'the group list', (correlationId) => ({ type: 'OtaGroupListRequest', correlationId }));
    if (answer?.type !== 'OtaGroupListResponse') throw new CampaignError('UNAVAILABLE', 'the OTA runner did not send the group list');
    return answer.groups;
  }

  private async ask(running: Running, what: string, build: (correlationId: string) => Event): Promise<Accepted | undefined> {
    const { correlationId, answer } = running.requests.create(this.name, what);
    const request = build(correlationId);
    if (!this.context?.broker.accepts(request.type)) {
      running.requests.fail(correlationId, new CampaignError('UNAVAILABLE', `no runner handles ${request.type} (is OTA enabled?)`));
    } else {
      this.publish(request).catch((error: unknown) => running.requests.fail(correlationId, new CampaignError('UNAVAILABLE', `could not ask for ${what}: ${(error as Error).message}`, { cause: error })));
    }
    return (await answer) as Accepted | undefined;
  }

  private engine(id: string): CampaignEngine {
    const engine = this.require().engines.get(id);
    if (!engine) throw new CampaignError('NOT_FOUND', `no campaign ${id}`);
    return engine;
  }

  private require(): Running {
    if (!this.running && this.follower) throw new CampaignError('UNAVAILABLE', 'this instance does not drive the campaigns (cluster mode): another instance holds the campaign lease');
    if (!this.running) throw new Error('the campaigns runner is not started');
    return this.running;
  }
}

/** Not yet healthy or failed in its campaign (pending ones count: they are still to be notified). */
function isUnsettled(engine: CampaignEngine | undefined, uid: string): boolean {
  const state = engine?.device(uid)?.state;
  return state !== undefined && state !== 'healthy' && state !== 'failed';
}
