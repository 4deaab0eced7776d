import type { CampaignCommandRequest } from '../events.js';
import type { Logger } from '../logger.js';
import type { KvStore } from '../store/index.js';
import type { ObservationRelay, ObservedEvent } from './driving.js';
import { CampaignError } from './errors.js';
import { activeMembers, CampaignStore } from './store.js';

/**
 * The campaigns runner of an instance that does not drive (cluster mode):
 * it forwards the events of its devices that are in a running or paused
 * campaign to the driver, and answers the read-only campaign commands from
 * the shared store. Which devices those are it re-reads every `intervalMs`
 * (campaign records only; a campaign's device list once), so most device
 * events never leave the instance.
 */
export class CampaignFollower {
  private members = new Set<string>();
  private byCampaign = new Map<string, readonly string[]>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly store: KvStore,
    private readonly relay: ObservationRelay,
    private readonly logger: Logger,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.timer) return;
    // A new campaign's devices are told at once: re-read then rather than at the next interval.
    this.relay.onChange(() => {
      if (this.timer) this.scheduled();
    });
    this.scheduled();
    this.timer = setInterval(() => this.scheduled(), this.intervalMs);
    this.timer.unref();
  }

  /** Stops refreshing; waits for a refresh in flight so nothing runs after the runner stopped. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.refreshing;
  }

  /** Sends the event to the driver when its device is in an active campaign. */
  observe(event: ObservedEvent): void {
    const uid = event.type === 'DeviceFirmwareUpdated' ? event.state.uid : event.uid;
    if (!this.members.has(uid)) return;
    // The driver ignores the other OTA requests; they need not cross Redis.
    if (event.type === 'OtaRequest' && event.cmd !== 'Done') return;
    this.relay.forward(event);
  }

  /** `list` and `show` from the store; commands that change a campaign go to the driver. */
  async answer(request: CampaignCommandRequest, holder: string | undefined): Promise<unknown> {
    switch (request.command) {
      case 'list': {
        const engines = await new CampaignStore(this.store).loadAll();
        return { campaigns: engines.map((engine) => engine.summary()) };
      }
      case 'show': {
        const engine = await new CampaignStore(this.store).load(request.id);
        if (!engine) throw new CampaignError('NOT_FOUND', `no campaign ${request.id}`);
        return { campaign: engine.summary(), spec: engine.spec, ...(request.devices === true ? { devices: engine.deviceList() } : {}) };
      }
      default:
        throw new CampaignError('UNAVAILABLE', `campaigns.${request.command} goes to the instance driving the campaigns (${holder ?? 'none right now: a takeover is under way'}); this instance does not drive them`);
    }
  }

  private scheduled(): void {
    if (this.refreshing) {
      // A change announced during a refresh may not be in what it read: read once more after it.
      this.again = true;
      return;
    }
    this.refreshing = this.refresh()
      .catch((error: unknown) => this.logger.warn({ err: error }, 'could not read which devices are in campaigns; trying again'))
      .finally(() => {
        this.refreshing = undefined;
        if (this.again && this.timer) {
          this.again = false;
          this.scheduled();
        }
      });
  }

  private async refresh(): Promise<void> {
    this.byCampaign = await activeMembers(this.store, this.byCampaign);
    this.members = new Set([...this.byCampaign.values()].flat());
  }
}
