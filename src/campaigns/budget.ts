import type { DownloadBudget, Event } from '../events.js';
import type { CampaignEngine } from './engine.js';
import type { CampaignSpec } from './spec.js';

/**
 * What the OTA runner must be told of a campaign's byte budget: set while
 * the campaign is running or paused (its devices may be downloading), cleared
 * once it has ended. Nothing for a campaign without `budget.bytesPerSecond`
 * (its `maxConcurrent` is the campaigns runner's own pacing).
 */
export function budgetEvent(engine: CampaignEngine): Event | undefined {
  return budgetEventOf(engine.id, engine.spec, engine.active, () => engine.deviceList().map((device) => device.uid));
}

/** The same from what a non-driving instance reads of a campaign (cluster mode). */
export function budgetEventOf(id: string, spec: CampaignSpec, active: boolean, uids: () => string[]): Event | undefined {
  const budget = downloadBudget(id, spec, uids);
  if (budget === undefined) return undefined;
  return active ? { type: 'OtaBudgetSet', budget } : { type: 'OtaBudgetCleared', campaignId: id };
}

function downloadBudget(id: string, spec: CampaignSpec, uids: () => string[]): DownloadBudget | undefined {
  const bytesPerSecond = spec.budget?.bytesPerSecond;
  if (bytesPerSecond === undefined) return undefined;
  return { campaignId: id, imageId: spec.imageId, bytesPerSecond, maxDelayMs: spec.budget?.maxDelayMs ?? 10_000, devices: uids() };
}
