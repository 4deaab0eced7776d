import type { Runner } from '../runner.js';
import { CampaignRunner } from './runner.js';

export { CampaignRunner, type CampaignRunnerOptions } from './runner.js';
export { CampaignError, type CampaignErrorCode } from './errors.js';
export { parseCampaignSpec, type CampaignSpec } from './spec.js';
export type { CommandAnswer, DrivingSeat, ObservationRelay, ObservedEvent } from './driving.js';

/**
 * The campaigns runner of a Nucleon instance, for its typed API (`create`, `pause`, `abort`, ...).
 * Takes anything with `runner(name)` (a `Nucleon`), so this folder need not import the wiring.
 */
export function campaignRunnerOf(nucleon: { runner(name: string): Runner | undefined }): CampaignRunner {
  const runner = nucleon.runner('campaigns');
  if (!(runner instanceof CampaignRunner)) throw new Error('this Nucleon has no campaigns runner (ota.enabled = false)');
  return runner;
}
