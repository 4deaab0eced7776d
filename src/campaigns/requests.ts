import { PendingAnswers } from '../util/pending-answers.js';
import { CampaignError } from './errors.js';

/**
 * Requests this runner sends to the OTA runner (image and group lists), each
 * waiting for the event with its correlation id, or failing with UNAVAILABLE
 * when the OTA runner does not answer in time. The answers arrive through the
 * runner's inbox, so whoever waits here must not be the inbox handler itself.
 */
export class OtaRequests extends PendingAnswers {
  constructor(timeoutMs: number) {
    super(timeoutMs, 'campaigns', (what, ms) => new CampaignError('UNAVAILABLE', `${what}: the OTA runner did not answer within ${ms} ms`));
  }

  cancelAll(reason: string): void {
    this.failAll(() => new CampaignError('UNAVAILABLE', reason));
  }
}
