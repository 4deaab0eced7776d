// A fleet of simulated devices driving a CampaignEngine with a fake clock: no
// broker, no sockets, no timers. Each device reacts to its notification the
// way its behaviour says (download, reboot, report a version, send telemetry),
// as observations at fake times; the loop ticks the engine every `stepMs`.
import type { CampaignDeviceStatus, CampaignSummary } from '../../src/events.js';
import type { CampaignEngine, Effect } from '../../src/campaigns/engine.js';
import type { Observation } from '../../src/campaigns/device-machine.js';

export type Behaviour = 'good' | 'brick' | 'revert' | 'boot_loop' | 'silent' | 'reject' | 'stall';

export const MINUTE = 60_000;
export const OLD_IMAGE = '1.0.0-0-gold0000';
export const NEW_IMAGE = '1.1.0-0-gnew0000';
export const IMAGE_SIZE = 100_000;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

interface Action {
  at: number;
  uid: string;
  seen: Observation;
}

export interface SimRecord {
  /** Every notify effect, in order. */
  notified: { uid: string; at: number }[];
  relinked: { uid: string; imageId: string; at: number }[];
  deviceEvents: { device: CampaignDeviceStatus; previous: string; at: number }[];
  campaignEvents: { campaign: CampaignSummary; at: number }[];
}

export class FleetSim {
  now: number;
  private readonly actions = new ActionHeap();
  readonly record: SimRecord = { notified: [], relinked: [], deviceEvents: [], campaignEvents: [] };

  constructor(
    public engine: CampaignEngine,
    private readonly behaviourOf: (uid: string) => Behaviour,
    start: number,
    /** Called after each decision, before its effects are carried out (the runner saves here). */
    private readonly beforeEffects: (engine: CampaignEngine) => Promise<void> = async () => {},
  ) {
    this.now = start;
  }

  /** Carries out effects as the runner would: a notified device starts its behaviour. */
  async apply(effects: Effect[]): Promise<void> {
    await this.beforeEffects(this.engine);
    for (const effect of effects) {
      switch (effect.kind) {
        case 'notify':
          this.record.notified.push({ uid: effect.uid, at: this.now });
          this.schedule(effect.uid, this.behaviourOf(effect.uid));
          break;
        case 'relink':
          this.record.relinked.push({ uid: effect.uid, imageId: effect.imageId, at: this.now });
          break;
        case 'device':
          this.record.deviceEvents.push({ device: effect.device, previous: effect.previous, at: this.now });
          break;
        case 'campaign':
          this.record.campaignEvents.push({ campaign: effect.campaign, at: this.now });
          break;
      }
    }
  }

  /** Runs until the campaign is neither running nor paused-by-rule-only, or `untilMs` has passed. */
  async run(stepMs: number, untilMs: number, stopWhen: (engine: CampaignEngine) => boolean = (engine) => !engine.active || engine.state === 'paused'): Promise<void> {
    const end = this.now + untilMs;
    while (this.now < end && !stopWhen(this.engine)) {
      this.now += stepMs;
      for (let action = this.actions.popDue(this.now); action; action = this.actions.popDue(this.now)) await this.apply(this.engine.observe(action.uid, action.seen));
      await this.apply(this.engine.tick(this.now));
    }
  }

  private schedule(uid: string, behaviour: Behaviour): void {
    const t = this.now;
    const at = (offset: number, seen: DistributiveOmit<Observation, 'at'>) => this.actions.push({ at: t + offset, uid, seen: { ...seen, at: t + offset } });
    if (behaviour === 'stall') {
      at(1 * MINUTE, { kind: 'progress', bytes: IMAGE_SIZE / 4 });
      return;
    }
    if (behaviour === 'reject') {
      at(1 * MINUTE, { kind: 'done' });
      return;
    }
    at(1 * MINUTE, { kind: 'progress', bytes: IMAGE_SIZE / 2 });
    at(2 * MINUTE, { kind: 'progress', bytes: IMAGE_SIZE });
    at(2 * MINUTE + 1000, { kind: 'disconnected' });
    if (behaviour === 'brick') return;
    if (behaviour === 'boot_loop') {
      for (let i = 1; i <= 5; i++) {
        at(2 * MINUTE + i * 30_000, { kind: 'connected' });
        at(2 * MINUTE + i * 30_000 + 10_000, { kind: 'disconnected' });
      }
      return;
    }
    at(3 * MINUTE, { kind: 'connected' });
    if (behaviour === 'revert') {
      at(3 * MINUTE + 1000, { kind: 'telemetry', version: OLD_IMAGE });
      return;
    }
    at(3 * MINUTE + 500, { kind: 'done' });
    if (behaviour === 'silent') return;
    // A good device reports its version with every telemetry message, every 5 minutes for 4 hours.
    for (let minute = 3; minute < 4 * 60; minute += 5) at(minute * MINUTE + 1000, { kind: 'telemetry', version: NEW_IMAGE });
  }
}

/** Actions by time (a binary min-heap; ties in insertion order), so a 48-hour run of 1,000 devices stays fast. */
class ActionHeap {
  private readonly items: { action: Action; order: number }[] = [];
  private next = 0;

  push(action: Action): void {
    const items = this.items;
    items.push({ action, order: this.next++ });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** The earliest action due at `now`, removed; undefined when none is due. */
  popDue(now: number): Action | undefined {
    const items = this.items;
    const top = items[0];
    if (!top || top.action.at > now) return undefined;
    const last = items.pop();
    if (last && items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < items.length && this.less(left, smallest)) smallest = left;
        if (right < items.length && this.less(right, smallest)) smallest = right;
        if (smallest === i) break;
        this.swap(i, smallest);
        i = smallest;
      }
    }
    return top.action;
  }

  private less(a: number, b: number): boolean {
    const x = this.items[a];
    const y = this.items[b];
    if (!x || !y) return false;
    return x.action.at < y.action.at || (x.action.at === y.action.at && x.order < y.order);
  }

  private swap(a: number, b: number): void {
    const x = this.items[a];
    const y = this.items[b];
    if (!x || !y) return;
    this.items[a] = y;
    this.items[b] = x;
  }
}
