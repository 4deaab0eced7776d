import type { CampaignCommandRequest, Event } from '../events.js';
import type { Logger } from '../logger.js';
import type { KvStore } from '../store/index.js';
import type { ObservationRelay, ObservedEvent } from './driving.js';
import { CampaignError } from './errors.js';
import { budgetEventOf } from './budget.js';
import { activeCampaigns, CampaignStore, type ActiveCampaign } from './store.js';

/**
 * The campaigns runner of an instance that does not drive (cluster mode):
 * it forwards the events of its devices that are in a running or paused
 * campaign to the driver, and answers the read-only campaign commands from
 * the shared store. Which devices those are it re-reads every `intervalMs`
 * (campaign records only; a campaign's device list once), so most device
 * events never leave the instance. From the same reading it tells this
 * instance's OTA runner the byte budgets of those campaigns, so the bytes
 * this instance serves draw on the campaign's one budget too.
 */
export class CampaignFollower {
  private members = new Set<string>();
  private byCampaign = new Map<string, ActiveCampaign>();
  /** Campaigns whose budget this instance's OTA runner holds (set by this follower, or by this instance while it drove). */
  private budgeted = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly store: KvStore,
    private readonly relay: ObservationRelay,
    private readonly logger: Logger,
    private readonly intervalMs: number,
    /** Hands a budget event to this instance's OTA runner (through the event broker). */
    private readonly tellOta: (event: Event) => Promise<void>,
  ) {}

  /** `budgeted`: campaigns whose budget this instance set while it drove; they are cleared here once they end. */
  start(budgeted: Iterable<string> = []): void {
    if (this.timer) return;
    for (const id of budgeted) this.budgeted.add(id);
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

  /** `list` and `show` from the shared store; the commands that change a campaign go to the driver (`ObservationRelay.ask`). */
  async answer(request: Extract<CampaignCommandRequest, { command: 'list' | 'show' }>): Promise<unknown> {
    if (request.command === 'list') {
      const engines = await new CampaignStore(this.store).loadAll();
      return { campaigns: engines.map((engine) => engine.summary()) };
    }
    const engine = await new CampaignStore(this.store).load(request.id);
    if (!engine) throw new CampaignError('NOT_FOUND', `no campaign ${request.id}`);
    return { campaign: engine.summary(), spec: engine.spec, ...(request.devices === true ? { devices: engine.deviceList() } : {}) };
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
    this.byCampaign = await activeCampaigns(this.store, this.byCampaign);
    this.members = new Set([...this.byCampaign.values()].flatMap((campaign) => campaign.uids));
    await this.tellBudgets();
  }

  /** New budgets are set, those of ended campaigns cleared; a budget never changes while its campaign runs. */
  private async tellBudgets(): Promise<void> {
    for (const [id, { record, uids }] of this.byCampaign) {
      if (this.budgeted.has(id)) continue;
      const event = budgetEventOf(id, record.spec, true, () => [...uids]);
      if (event === undefined) continue;
      await this.tellOta(event);
      this.budgeted.add(id);
    }
    for (const id of this.budgeted) {
      if (this.byCampaign.has(id)) continue;
      await this.tellOta({ type: 'OtaBudgetCleared', campaignId: id });
      this.budgeted.delete(id);
    }
  }
}
