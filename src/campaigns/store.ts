import type { CampaignDeviceStatus } from '../events.js';
import type { KvOperation, KvStore } from '../store/index.js';
import { CampaignEngine, type CampaignRecord } from './engine.js';

const META = 'campaign/meta/';
const DEVICE = 'campaign/device/';

/**
 * Campaigns in the KvStore: `campaign/meta/<id>` for the campaign,
 * `campaign/device/<id>/<uid>` for each of its devices. A decision's changes
 * are written in one batch (all or nothing) before its effects go out, so
 * after a restart no device is notified again for a stage it was notified for.
 */
export class CampaignStore {
  /**
   * `fence` runs before every batch and throws when this instance may no
   * longer write decisions (cluster mode: it lost the campaign lease); the
   * changes stay taken, as the engine is dropped with the lease.
   */
  constructor(
    private readonly store: KvStore,
    private readonly fence: () => void = () => undefined,
    /** Called after a batch that changed a campaign's record (created, new stage, finished...). */
    private readonly campaignChanged: () => void = () => undefined,
  ) {}

  /** Saves what changed in the engine since its last save, in one batch. */
  async save(engine: CampaignEngine): Promise<void> {
    this.fence();
    const changes = engine.takeChanges();
    const operations: KvOperation[] = changes.devices.map((device) => ({ type: 'put', key: deviceKey(engine.id, device.uid), value: device }));
    if (changes.campaign) operations.push({ type: 'put', key: META + changes.campaign.id, value: changes.campaign });
    try {
      if (operations.length > 0) await this.store.batch(operations);
    } catch (error) {
      // The decisions that joined this batch are not durable: the next save writes them, before its own effects go out.
      engine.returnChanges(changes);
      throw error;
    }
    if (changes.campaign) this.campaignChanged();
  }

  async exists(id: string): Promise<boolean> {
    return (await this.store.get<CampaignRecord>(META + id)) !== undefined;
  }

  /** Every stored campaign, as engines. */
  async loadAll(): Promise<CampaignEngine[]> {
    const engines: CampaignEngine[] = [];
    for await (const [, record] of this.store.entries<CampaignRecord>(META)) engines.push(await this.restore(record));
    return engines;
  }

  /** One stored campaign, if there is one. */
  async load(id: string): Promise<CampaignEngine | undefined> {
    const record = await this.store.get<CampaignRecord>(META + id);
    return record === undefined ? undefined : this.restore(record);
  }

  private async restore(record: CampaignRecord): Promise<CampaignEngine> {
    const devices: CampaignDeviceStatus[] = [];
    for await (const [, device] of this.store.entries<CampaignDeviceStatus>(`${DEVICE}${record.id}/`)) devices.push(device);
    return CampaignEngine.restore(record, devices);
  }
}

/** A running or paused campaign as a non-driving instance knows it: its record and its devices. */
export interface ActiveCampaign {
  record: CampaignRecord;
  uids: readonly string[];
}

/**
 * Every running or paused campaign, for an instance that does not drive them
 * (cluster mode) to know whose events to forward and which byte budgets hold.
 * A campaign's devices are fixed when it is created, so `known` (from the
 * last call) spares reading them again.
 */
export async function activeCampaigns(store: KvStore, known: ReadonlyMap<string, ActiveCampaign>): Promise<Map<string, ActiveCampaign>> {
  const active = new Map<string, ActiveCampaign>();
  for await (const [, record] of store.entries<CampaignRecord>(META)) {
    if (record.state !== 'running' && record.state !== 'paused') continue;
    let uids = known.get(record.id)?.uids;
    if (!uids) {
      const found: string[] = [];
      for await (const [, device] of store.entries<CampaignDeviceStatus>(`${DEVICE}${record.id}/`)) found.push(device.uid);
      uids = found;
    }
    active.set(record.id, { record, uids });
  }
  return active;
}

function deviceKey(campaignId: string, uid: string): string {
  return `${DEVICE}${campaignId}/${uid}`;
}
