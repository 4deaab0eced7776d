import type { Event } from '../events.js';
import type { CampaignEngine } from './engine.js';

/**
 * What the OTA runner must be told of a campaign's byte budget: set while
 * the campaign is running or paused (its devices may be downloading), cleared
 * once it has ended. Nothing for a campaign without `budget.bytesPerSecond`
 * (its `maxConcurrent` is the campaigns runner's own pacing).
 */
export function budgetEvent(engine: CampaignEngine): Event | undefined {
  const bytesPerSecond = engine.spec.budget?.bytesPerSecond;
  if (bytesPerSecond === undefined) return undefined;
  if (!engine.active) return { type: 'OtaBudgetCleared', campaignId: engine.id };
  return {
    type: 'OtaBudgetSet',
    budget: {
      campaignId: engine.id,
      imageId: engine.imageId,
      bytesPerSecond,
      maxDelayMs: engine.spec.budget?.maxDelayMs ?? 10_000,
      devices: engine.deviceList().map((device) => device.uid),
    },
  };
}
