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
export const BURST_SECONDS = 0.25;

interface Active {
  budget: DownloadBudget;
  bucket: TokenBucket;
}

/**
 * Byte buckets every instance of a cluster shares (src/cluster/budget-buckets.ts,
 * in Redis), so a campaign's budget holds for the bytes of all instances
 * together. `reserve` has the local bucket's meaning: the bytes are taken, into
 * debt if need be, and `waitMs` is how long the caller waits before serving
 * them; `taken: false` when that wait would pass `maxWaitMs` (nothing taken,
 * `waitMs` is when the bytes would fit).
 */
export interface SharedByteBuckets {
  open(): Promise<void>;
  close(): Promise<void>;
  reserve(campaignId: string, limits: { bytesPerSecond: number; burst: number }, bytes: number, maxWaitMs: number): Promise<{ taken: boolean; waitMs: number }>;
}

export interface DownloadBudgetsOptions {
  now?: () => number;
  /** Cluster mode: the buckets live in Redis. The local bucket stands in while they cannot be reached. */
  shared?: SharedByteBuckets;
  /** A shared bucket could not be asked; the request was counted against the local one instead. */
  onSharedError?: (error: unknown, campaignId: string) => void;
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

  private readonly now: () => number;

  constructor(private readonly options: DownloadBudgetsOptions = {}) {
    this.now = options.now ?? (() => performance.now());
  }

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
        : new TokenBucket({ perSecond: budget.bytesPerSecond, burst: burstOf(budget.bytesPerSecond), now: this.now });
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
  async request(uid: string | undefined, imageId: string, bytes: number): Promise<BudgetDecision> {
    if (uid === undefined) return FREE;
    const campaignId = this.byDevice.get(uid);
    if (campaignId === undefined) return FREE;
    const active = this.campaigns.get(campaignId);
    if (!active || active.budget.imageId !== imageId) return FREE;
    const shared = this.options.shared;
    if (shared) {
      const limits = { bytesPerSecond: active.budget.bytesPerSecond, burst: burstOf(active.budget.bytesPerSecond) };
      try {
        const { taken, waitMs } = await shared.reserve(campaignId, limits, bytes, active.budget.maxDelayMs);
        return taken ? { kind: 'wait', ms: waitMs, campaignId } : { kind: 'over', retryAfterMs: waitMs, campaignId };
      } catch (error) {
        // Redis away: this instance holds its own share to the whole rate rather than stop serving (README "Byte budget").
        this.options.onSharedError?.(error, campaignId);
      }
    }
    const ms = active.bucket.reserve(bytes, active.budget.maxDelayMs);
    if (ms === undefined) return { kind: 'over', retryAfterMs: active.bucket.waitFor(bytes), campaignId };
    return { kind: 'wait', ms, campaignId };
  }
}

function burstOf(bytesPerSecond: number): number {
  return Math.max(1, bytesPerSecond * BURST_SECONDS);
}
