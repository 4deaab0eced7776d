import type { CampaignDeviceStateName, CampaignDeviceStatus, CampaignState, CampaignSummary } from '../events.js';
import { checkDeadlines, isOpen, observeDevice, type Change, type DeviceRules, type Observation } from './device-machine.js';
import { CampaignError } from './errors.js';
import { planStages } from './plan.js';
import { insideSchedule } from './schedule.js';
import { REVERT_GRACE_DEFAULT_MS, type CampaignSpec } from './spec.js';

/** A campaign as stored under `campaign/meta/<id>`; its devices are stored one record each. */
export interface CampaignRecord {
  id: string;
  spec: CampaignSpec;
  imageSize: number;
  state: CampaignState;
  stage: number;
  stages: { label: string; devices: number; soakMs: number; startedAt?: number }[];
  reason: string;
  createdAt: number;
  updatedAt: number;
}

/** What the runner must do after a decision; the engine itself does no I/O. */
export type Effect =
  /** Tell the device about the image (an OtaLink of the device to it). */
  | { kind: 'notify'; campaignId: string; uid: string; imageId: string }
  /** Link the device back (rollback). */
  | { kind: 'relink'; campaignId: string; uid: string; imageId: string }
  /** A device record changed visibly: announce it (CampaignDeviceState). */
  | { kind: 'device'; campaignId: string; device: CampaignDeviceStatus; previous: CampaignDeviceStateName }
  /** The campaign changed state or stage: announce it (CampaignStateChanged). */
  | { kind: 'campaign'; campaign: CampaignSummary };

/** Records to save, taken after each decision and saved before its effects are carried out. */
export interface Changes {
  campaign?: CampaignRecord;
  devices: CampaignDeviceStatus[];
}

export interface TargetDevice {
  uid: string;
  /** The image it is linked to now: where a rollback takes it. */
  previousImageId?: string;
}

const ALL_STATES: readonly CampaignDeviceStateName[] = ['pending', 'notified', 'downloading', 'downloaded', 'rebooting', 'confirmed', 'healthy', 'failed'];

/**
 * The decisions of one campaign, as pure code with the time passed in: which
 * stage runs, when it advances (soak time passed and success ratio met), when
 * the campaign pauses (a stage that can no longer meet its gate) or aborts
 * (failed share and count over the abort rule), and what a rollback relinks.
 * The runner feeds it observations and calls `tick(now)` from a timer; every
 * call returns the effects to carry out, after `takeChanges()` is saved.
 *
 * Devices of a stage are notified only when the stage starts, and a stage
 * starts once (its `startedAt` is stored), so a campaign restored from the
 * store never notifies a device twice, and never notifies a later stage's
 * devices after an abort.
 */
export class CampaignEngine {
  private readonly byStage: string[][];
  /** Devices still watched (notified, not yet healthy or failed). */
  private readonly open = new Set<string>();
  private readonly dirtyDevices = new Set<string>();
  /** Kept as devices change, so a decision after each observation costs no pass over the fleet. */
  private notified = 0;
  private failed = 0;
  private readonly healthyByStage: number[];
  private readonly failedByStage: number[];
  private dirtyCampaign = false;
  private readonly rules: DeviceRules;
  /** Pending devices of started stages, in notification order: they wait for a download slot (`budget.maxConcurrent`). */
  private readonly queue: string[] = [];
  /** Devices notified and not yet downloaded or failed: they count against `budget.maxConcurrent`. */
  private downloading = 0;

  private constructor(
    private readonly record: CampaignRecord,
    private readonly devices: Map<string, CampaignDeviceStatus>,
  ) {
    this.byStage = record.stages.map(() => []);
    this.healthyByStage = record.stages.map(() => 0);
    this.failedByStage = record.stages.map(() => 0);
    for (const device of devices.values()) {
      this.byStage[device.stage]?.push(device.uid);
      if (isOpen(device)) this.open.add(device.uid);
      if (device.state !== 'pending') this.tally(device, 'pending');
      if (isDownloading(device.state)) this.downloading++;
    }
    // A restored campaign goes on notifying the started stages' waiting devices, in stage order.
    record.stages.forEach((stage, index) => {
      if (stage.startedAt === undefined) return;
      for (const uid of this.byStage[index] ?? []) if (devices.get(uid)?.state === 'pending') this.queue.push(uid);
    });
    this.rules = { imageId: record.spec.imageId, imageSize: record.imageSize, health: record.spec.health };
  }

  /** A new campaign: devices planned into stages, the first stage notified at once. */
  static create(spec: CampaignSpec, imageSize: number, target: readonly TargetDevice[], now: number): { engine: CampaignEngine; effects: Effect[] } {
    const previous = new Map(target.map((device) => [device.uid, device.previousImageId]));
    const plan = planStages(spec, [...previous.keys()]);
    if (plan.devices.length === 0) throw new CampaignError('CAMPAIGN_EMPTY', `campaign ${spec.id}: the target has no device`);
    const record: CampaignRecord = {
      id: spec.id,
      spec,
      imageSize,
      state: 'running',
      stage: 0,
      stages: plan.stages.map((stage) => ({ ...stage })),
      reason: 'created',
      createdAt: now,
      updatedAt: now,
    };
    const devices = new Map<string, CampaignDeviceStatus>();
    for (const { uid, stage } of plan.devices) {
      const device: CampaignDeviceStatus = { uid, stage, state: 'pending' };
      const previousImageId = previous.get(uid);
      if (previousImageId !== undefined) device.previousImageId = previousImageId;
      devices.set(uid, device);
    }
    const engine = new CampaignEngine(record, devices);
    for (const uid of devices.keys()) engine.dirtyDevices.add(uid);
    const effects: Effect[] = [];
    engine.startStage(0, now, effects);
    engine.changed('created', now, effects);
    return { engine, effects };
  }

  /** A campaign read back from the store. */
  static restore(record: CampaignRecord, devices: Iterable<CampaignDeviceStatus>): CampaignEngine {
    // A campaign stored by an earlier version has no revert grace: it gets the default, as a new spec would.
    (record.spec.health as Partial<CampaignRecord['spec']['health']>).revertGraceMs ??= REVERT_GRACE_DEFAULT_MS;
    return new CampaignEngine(record, new Map([...devices].map((device) => [device.uid, device])));
  }

  get id(): string {
    return this.record.id;
  }

  get state(): CampaignState {
    return this.record.state;
  }

  get imageId(): string {
    return this.record.spec.imageId;
  }

  /** Running or paused: its devices are still watched. */
  get active(): boolean {
    return this.record.state === 'running' || this.record.state === 'paused';
  }

  get spec(): CampaignSpec {
    return this.record.spec;
  }

  device(uid: string): CampaignDeviceStatus | undefined {
    const device = this.devices.get(uid);
    return device ? copy(device) : undefined;
  }

  deviceList(): CampaignDeviceStatus[] {
    return [...this.devices.values()].map(copy);
  }

  /** Devices still in progress (notified, not settled): another campaign must not take them. */
  inProgress(): ReadonlySet<string> {
    return this.open;
  }

  summary(): CampaignSummary {
    const counts = Object.fromEntries(ALL_STATES.map((state) => [state, 0])) as Record<CampaignDeviceStateName, number>;
    for (const device of this.devices.values()) counts[device.state]++;
    const { id, state, stage, reason, createdAt, updatedAt } = this.record;
    return {
      id,
      imageId: this.record.spec.imageId,
      state,
      stage,
      stages: this.record.stages.map(({ label, devices, soakMs, startedAt }) => (startedAt === undefined ? { label, devices, soakMs } : { label, devices, soakMs, startedAt })),
      counts,
      reason,
      createdAt,
      updatedAt,
    };
  }

  /** What a device did; ignored for devices not in this campaign or not in progress. */
  observe(uid: string, seen: Observation): Effect[] {
    if (!this.active) return [];
    const device = this.devices.get(uid);
    if (!device || !this.open.has(uid)) return [];
    const effects: Effect[] = [];
    const previous = device.state;
    this.applied(device, previous, observeDevice(device, seen, this.rules), effects);
    if (device.state !== previous) this.decide(seen.at, effects);
    return effects;
  }

  /** Time-outs, health windows and the stage gates at `now`. */
  tick(now: number): Effect[] {
    if (!this.active) return [];
    const effects: Effect[] = [];
    for (const uid of [...this.open]) {
      const device = this.devices.get(uid);
      if (!device) continue;
      const previous = device.state;
      this.applied(device, previous, checkDeadlines(device, now, this.rules), effects);
    }
    this.decide(now, effects);
    return effects;
  }

  pause(now: number): Effect[] {
    this.require('running', 'pause');
    const effects: Effect[] = [];
    this.record.state = 'paused';
    this.changed('operator', now, effects);
    return effects;
  }

  resume(now: number): Effect[] {
    this.require('paused', 'resume');
    const effects: Effect[] = [];
    this.record.state = 'running';
    this.changed('operator', now, effects);
    // A stage that still cannot meet its gate pauses again at once: promote or abort it.
    this.decide(now, effects);
    return effects;
  }

  /** Stops the campaign; with `rollback` the devices of the stage being rolled out are linked back. */
  abort(now: number, rollback = this.record.spec.rollback?.enabled ?? false): Effect[] {
    if (!this.active) throw new CampaignError('CAMPAIGN_STATE', `campaign ${this.id} is ${this.record.state}; only a running or paused campaign can be aborted`);
    const effects: Effect[] = [];
    this.stop('operator', now, rollback, effects);
    return effects;
  }

  /** Starts the next stage now, whatever its soak time and gate say. */
  promote(now: number): Effect[] {
    if (!this.active) throw new CampaignError('CAMPAIGN_STATE', `campaign ${this.id} is ${this.record.state}; only a running or paused campaign can be promoted`);
    if (this.record.stage >= this.record.stages.length - 1) throw new CampaignError('CAMPAIGN_STATE', `campaign ${this.id} is at its last stage; there is nothing to promote to`);
    const effects: Effect[] = [];
    this.record.state = 'running';
    this.startStage(this.record.stage + 1, now, effects);
    this.changed('operator', now, effects);
    return effects;
  }

  /** Everything changed since the last call, copied: save it before carrying out the effects. */
  takeChanges(): Changes {
    const changes: Changes = { devices: [] };
    if (this.dirtyCampaign) changes.campaign = structuredClone(this.record);
    for (const uid of this.dirtyDevices) {
      const device = this.devices.get(uid);
      if (device) changes.devices.push(copy(device));
    }
    this.dirtyCampaign = false;
    this.dirtyDevices.clear();
    return changes;
  }

  /** Changes a save could not write: taken again by the next `takeChanges()`, with whatever changed since. */
  returnChanges(changes: Changes): void {
    if (changes.campaign) this.dirtyCampaign = true;
    for (const device of changes.devices) this.dirtyDevices.add(device.uid);
  }

  // ---- decisions -----------------------------------------------------------

  /** The abort rule first (it holds while paused too), then the gate of the running stage. */
  private decide(now: number, effects: Effect[]): void {
    if (!this.active) return;
    if (this.abortRuleHolds()) return this.stop('abort_rule', now, this.record.spec.rollback?.enabled ?? false, effects);
    if (this.record.state !== 'running') return;
    this.notifyWaiting(now, effects);
    const index = this.record.stage;
    const stage = this.record.stages[index];
    if (!stage || stage.startedAt === undefined) return;
    const healthy = this.healthyByStage[index] ?? 0;
    const failed = this.failedByStage[index] ?? 0;
    const size = stage.devices;
    const gateMet = healthy >= Math.ceil(this.record.spec.health.successRatio * size);
    const soaked = now - stage.startedAt >= stage.soakMs;
    const last = index === this.record.stages.length - 1;
    if (gateMet && soaked && (!last || healthy + failed === size)) {
      if (last) {
        this.record.state = 'completed';
        this.changed('all_stages_passed', now, effects);
      } else {
        this.startStage(index + 1, now, effects);
        this.changed('stage_passed', now, effects);
      }
      return;
    }
    if (!gateMet && healthy + failed === size) {
      // Every device of the stage has settled and too few are healthy: no waiting will meet the gate.
      this.record.state = 'paused';
      this.changed('gate_not_met', now, effects);
    }
  }

  private abortRuleHolds(): boolean {
    const rule = this.record.spec.abort;
    if (!rule) return false;
    return this.failed >= rule.minFailed && this.failed * 100 >= rule.failedPercent * this.notified;
  }

  private stop(reason: string, now: number, rollback: boolean, effects: Effect[]): void {
    this.record.state = 'aborted';
    if (rollback) this.rollBack(now, effects);
    this.open.clear();
    this.changed(reason, now, effects);
  }

  /**
   * Every notified device of the stage being rolled out is linked back: the
   * ones that took the image, and the ones that may still take it.
   */
  private rollBack(_now: number, effects: Effect[]): void {
    const named = this.record.spec.rollback?.imageId;
    for (const uid of this.byStage[this.record.stage] ?? []) {
      const device = this.devices.get(uid);
      if (!device || device.state === 'pending' || device.rolledBackTo !== undefined) continue;
      const target = named ?? device.previousImageId;
      if (target === undefined) {
        device.detail = 'no previous image to roll back to';
        this.dirtyDevices.add(uid);
        continue;
      }
      device.rolledBackTo = target;
      this.dirtyDevices.add(uid);
      effects.push({ kind: 'relink', campaignId: this.id, uid, imageId: target });
      effects.push({ kind: 'device', campaignId: this.id, device: copy(device), previous: device.state });
    }
  }

  private startStage(index: number, now: number, effects: Effect[]): void {
    const stage = this.record.stages[index];
    if (!stage || stage.startedAt !== undefined) return;
    this.record.stage = index;
    stage.startedAt = now;
    for (const uid of this.byStage[index] ?? []) if (this.devices.get(uid)?.state === 'pending') this.queue.push(uid);
    this.notifyWaiting(now, effects);
  }

  /**
   * Pacing: notifies waiting devices while fewer than `budget.maxConcurrent`
   * are downloading (all of them without a limit). Called when a stage
   * starts and after every decision, so a device that finishes or fails
   * frees its slot for the next at once. Only while running: a paused
   * campaign notifies nobody new.
   */
  private notifyWaiting(now: number, effects: Effect[]): void {
    if (this.record.state !== 'running' || !insideSchedule(this.record.spec.schedule, now)) return;
    const limit = this.record.spec.budget?.maxConcurrent ?? Number.POSITIVE_INFINITY;
    let taken = 0;
    while (taken < this.queue.length && this.downloading < limit) {
      const uid = this.queue[taken++] ?? '';
      const device = this.devices.get(uid);
      if (!device || device.state !== 'pending') continue;
      device.state = 'notified';
      device.notifiedAt = now;
      this.tally(device, 'pending');
      this.downloading++;
      this.open.add(uid);
      this.dirtyDevices.add(uid);
      effects.push({ kind: 'notify', campaignId: this.id, uid, imageId: this.record.spec.imageId });
      effects.push({ kind: 'device', campaignId: this.id, device: copy(device), previous: 'pending' });
    }
    this.queue.splice(0, taken);
  }

  /** Devices notified and not yet downloaded or failed (they hold a download slot). */
  get downloadingCount(): number {
    return this.downloading;
  }

  /** Pending devices of started stages, waiting for a download slot. */
  get waitingCount(): number {
    return this.queue.length;
  }

  /** Counts a device's move from `previous` to its state (healthy and failed are final, so each is counted once). */
  private tally(device: CampaignDeviceStatus, previous: CampaignDeviceStateName): void {
    if (device.state === previous) return;
    if (previous === 'pending') this.notified++;
    if (device.state === 'failed') {
      this.failed++;
      this.failedByStage[device.stage] = (this.failedByStage[device.stage] ?? 0) + 1;
    } else if (device.state === 'healthy') {
      this.healthyByStage[device.stage] = (this.healthyByStage[device.stage] ?? 0) + 1;
    }
  }

  private applied(device: CampaignDeviceStatus, previous: CampaignDeviceStateName, change: Change, effects: Effect[]): void {
    if (change === 'none') return;
    this.tally(device, previous);
    if (isDownloading(previous) && !isDownloading(device.state)) this.downloading--;
    this.dirtyDevices.add(device.uid);
    if (!isOpen(device)) this.open.delete(device.uid);
    if (change === 'event') effects.push({ kind: 'device', campaignId: this.id, device: copy(device), previous });
  }

  private changed(reason: string, now: number, effects: Effect[]): void {
    this.record.reason = reason;
    this.record.updatedAt = now;
    this.dirtyCampaign = true;
    effects.push({ kind: 'campaign', campaign: this.summary() });
  }

  private require(state: CampaignState, action: string): void {
    if (this.record.state !== state) throw new CampaignError('CAMPAIGN_STATE', `campaign ${this.id} is ${this.record.state}; only a ${state} campaign can ${action}`);
  }
}

function isDownloading(state: CampaignDeviceStateName): boolean {
  return state === 'notified' || state === 'downloading';
}

function copy(device: CampaignDeviceStatus): CampaignDeviceStatus {
  const out = { ...device };
  if (device.recentConnects) out.recentConnects = [...device.recentConnects];
  return out;
}
