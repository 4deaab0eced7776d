import type { DownloadBudget } from '../events.js';
import { TokenBucket } from '../util/token-bucket.js';

/**
 * What a download request of a campaign device gets from its budget:
 * `free` (no budget applies: the device is in no campaign, or asks for
 * another image), `wait` (serve after `ms`; the bytes are already counted),
 * `over` (not served now: the wait would pass the budget's `maxDelayMs`;
 * nothing is counted, and `retryAfterMs` is when the bytes would fit).
 */
export type BudgetDecision = { kind: 'free' } | { kind: 'wait'; ms: number; campaignId: string } | { kind: 'over'; retryAfterMs: number; campaignId: string };

const FREE: BudgetDecision = { kind: 'free' };

/**
 * Bytes saved up when idle: a quarter of a second's. Enough that a process
 * stalled for a moment (a busy machine) catches up instead of losing the
 * time, small enough that a ramp or a pause does not turn into a second's
 * burst above the rate.
 */
const BURST_SECONDS = 0.25;

interface Active {
  budget: DownloadBudget;
  bucket: TokenBucket;
}

/**
 * The byte budgets of running campaigns, as the campaigns runner sets them
 * (`OtaBudgetSet` / `OtaBudgetCleared`). One token bucket of bytes per
 * campaign, shared by the MQTT chunk path and the HTTP range path, so the
 * two together stay within the rate. The bucket goes into debt for a
 * request and the request waits the debt out: requests are served in turn
 * at the rate, whatever their sizes.
 */
export class DownloadBudgets {
  private readonly campaigns = new Map<string, Active>();
  /** uid → campaign id; a device is in at most one running campaign. */
  private readonly byDevice = new Map<string, string>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  get size(): number {
    return this.campaigns.size;
  }

  /** Sets or replaces a campaign's budget (the bucket starts afresh only when the rate changed). */
  set(budget: DownloadBudget): void {
    const existing = this.campaigns.get(budget.campaignId);
    this.clear(budget.campaignId);
    const bucket =
      existing && existing.budget.bytesPerSecond === budget.bytesPerSecond
        ? existing.bucket
        : new TokenBucket({ perSecond: budget.bytesPerSecond, burst: Math.max(1, budget.bytesPerSecond * BURST_SECONDS), now: this.now });
    this.campaigns.set(budget.campaignId, { budget, bucket });
    for (const uid of budget.devices) this.byDevice.set(uid, budget.campaignId);
  }

  clear(campaignId: string): void {
    const active = this.campaigns.get(campaignId);
    if (!active) return;
    this.campaigns.delete(campaignId);
    for (const uid of active.budget.devices) if (this.byDevice.get(uid) === campaignId) this.byDevice.delete(uid);
  }

  /** Counts `bytes` of `imageId` for `uid` against its campaign's budget, if one applies. */
  request(uid: string | undefined, imageId: string, bytes: number): BudgetDecision {
    if (uid === undefined) return FREE;
    const campaignId = this.byDevice.get(uid);
    if (campaignId === undefined) return FREE;
    const active = this.campaigns.get(campaignId);
    if (!active || active.budget.imageId !== imageId) return FREE;
    const ms = active.bucket.reserve(bytes, active.budget.maxDelayMs);
    if (ms === undefined) return { kind: 'over', retryAfterMs: active.bucket.waitFor(bytes), campaignId };
    return { kind: 'wait', ms, campaignId };
  }
}
