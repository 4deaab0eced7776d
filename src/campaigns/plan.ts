import { createHash } from 'node:crypto';
import type { CampaignSpec } from './spec.js';

export interface PlannedStage {
  label: string;
  /** Devices notified when this stage starts. */
  devices: number;
  soakMs: number;
}

export interface Plan {
  stages: PlannedStage[];
  /** Every target device with the index of the stage it belongs to, in notification order. */
  devices: { uid: string; stage: number }[];
}

/**
 * Splits the target into stages. The canary devices come first, as a stage
 * of their own; the rest are ordered by a hash of campaign id and uid, so a
 * stage is a spread sample of the fleet (not the oldest uids, not one group)
 * and the same campaign always gets the same order. Stage sizes are
 * cumulative; with counts the last stage takes every device left. A stage
 * that would get no device (a small fleet) is left out.
 */
export function planStages(spec: CampaignSpec, target: readonly string[]): Plan {
  const canary = [...new Set(spec.canary ?? [])];
  const canarySet = new Set(canary);
  const rest = [...new Set(target)].filter((uid) => !canarySet.has(uid));
  const ordered = rest.map((uid) => ({ uid, key: spreadKey(spec.id, uid) })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

  const stages: PlannedStage[] = [];
  const devices: Plan['devices'] = [];
  if (canary.length > 0) {
    stages.push({ label: 'canary', devices: canary.length, soakMs: spec.soakMs });
    for (const uid of canary) devices.push({ uid, stage: 0 });
  }
  let placed = 0;
  spec.stages.forEach((stage, index) => {
    const last = index === spec.stages.length - 1;
    const reach = last ? ordered.length : stage.percent !== undefined ? Math.ceil((stage.percent / 100) * ordered.length) : Math.min(stage.count ?? 0, ordered.length);
    if (reach <= placed) return;
    const stageIndex = stages.length;
    stages.push({ label: stage.percent !== undefined ? `${stage.percent}%` : `${stage.count ?? reach} devices`, devices: reach - placed, soakMs: stage.soakMs ?? spec.soakMs });
    for (const { uid } of ordered.slice(placed, reach)) devices.push({ uid, stage: stageIndex });
    placed = reach;
  });
  return { stages, devices };
}

function spreadKey(campaignId: string, uid: string): string {
  return createHash('sha256').update(campaignId).update('\0').update(uid).digest('hex');
}
