import { Gauge, type Registry } from 'prom-client';
import type { CampaignSummary } from '../events.js';

/** Where the gauges read from: the running campaigns runner of this registry, none while it is stopped. */
interface Source {
  campaigns: () => CampaignSummary[];
}

const sources = new WeakMap<Registry, Source>();

/**
 * Campaign gauges, read from the campaigns at scrape time (nothing is counted
 * on the device path): `nucleon_campaign_devices{campaign,state}` (devices
 * per state) and `nucleon_campaign_stage{campaign,state}` (the stage being
 * rolled out, labelled with the campaign's state). Registered once per
 * registry; a runner started again in the same instance takes them over.
 * Returns the function that detaches the runner (at its stop).
 */
export function campaignMetrics(registry: Registry, campaigns: () => CampaignSummary[]): () => void {
  const source: Source = { campaigns };
  sources.set(registry, source);
  if (!registry.getSingleMetric('nucleon_campaign_devices')) {
    new Gauge({
      name: 'nucleon_campaign_devices',
      help: 'Devices of each campaign, per state in it (pending, notified, ..., healthy, failed)',
      labelNames: ['campaign', 'state'],
      registers: [registry],
      collect() {
        this.reset();
        for (const campaign of sources.get(registry)?.campaigns() ?? []) {
          for (const [state, count] of Object.entries(campaign.counts)) this.set({ campaign: campaign.id, state }, count);
        }
      },
    });
    new Gauge({
      name: 'nucleon_campaign_stage',
      help: 'The stage each campaign is rolling out (0 is the first), labelled with the campaign state (running, paused, aborted, completed)',
      labelNames: ['campaign', 'state'],
      registers: [registry],
      collect() {
        this.reset();
        for (const campaign of sources.get(registry)?.campaigns() ?? []) this.set({ campaign: campaign.id, state: campaign.state }, campaign.stage);
      },
    });
  }
  return () => {
    if (sources.get(registry) === source) sources.delete(registry);
  };
}
