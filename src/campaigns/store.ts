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
  constructor(private readonly store: KvStore) {}

  /** Saves what changed in the engine since its last save, in one batch. */
  async save(engine: CampaignEngine): Promise<void> {
    const changes = engine.takeChanges();
    const operations: KvOperation[] = changes.devices.map((device) => ({ type: 'put', key: deviceKey(engine.id, device.uid), value: device }));
    if (changes.campaign) operations.push({ type: 'put', key: META + changes.campaign.id, value: changes.campaign });
    if (operations.length > 0) await this.store.batch(operations);
  }

  async exists(id: string): Promise<boolean> {
    return (await this.store.get<CampaignRecord>(META + id)) !== undefined;
  }

  /** Every stored campaign, as engines. */
  async loadAll(): Promise<CampaignEngine[]> {
    const engines: CampaignEngine[] = [];
    for await (const [, record] of this.store.entries<CampaignRecord>(META)) {
      const devices: CampaignDeviceStatus[] = [];
      for await (const [, device] of this.store.entries<CampaignDeviceStatus>(`${DEVICE}${record.id}/`)) devices.push(device);
      engines.push(CampaignEngine.restore(record, devices));
    }
    return engines;
  }
}

function deviceKey(campaignId: string, uid: string): string {
  return `${DEVICE}${campaignId}/${uid}`;
}
