import type { GroupInfo } from '../events.js';
import type { TargetDevice } from './engine.js';
import { CampaignError } from './errors.js';
import type { CampaignSpec } from './spec.js';

/**
 * The devices of a new campaign, fixed when it is created (a device that
 * joins a group later is not taken in: the stages were planned without it),
 * each with the image its group points at now, where a rollback takes it.
 *
 * - `groups`: their members, as the OTA runner lists them;
 * - `devices`: these uids, known or not (they get the link either way);
 * - `fleet`: every member of any group and every device online now.
 * Canary devices are always part of the target.
 */
export function resolveTarget(spec: CampaignSpec, groups: readonly GroupInfo[], online: Iterable<string>): TargetDevice[] {
  const imageOf = new Map<string, string>();
  for (const group of groups) {
    if (group.imageId === undefined) continue;
    for (const uid of group.devices) imageOf.set(uid, group.imageId);
  }
  const uids = new Set<string>();
  const { target } = spec;
  if (target.groups) {
    const byName = new Map(groups.map((group) => [group.name, group]));
    const missing = target.groups.filter((name) => !byName.has(name));
    if (missing.length > 0) throw new CampaignError('NOT_FOUND', `target.groups: no group ${missing.map((name) => JSON.stringify(name)).join(', ')}`);
    for (const name of target.groups) for (const uid of byName.get(name)?.devices ?? []) uids.add(uid);
  }
  for (const uid of target.devices ?? []) uids.add(uid);
  if (target.fleet === true) {
    for (const group of groups) for (const uid of group.devices) uids.add(uid);
    for (const uid of online) uids.add(uid);
  }
  for (const uid of spec.canary ?? []) uids.add(uid);
  return [...uids].map((uid) => {
    const previousImageId = imageOf.get(uid);
    // A device already linked to the campaign's image has no older image to go back to.
    return previousImageId === undefined || previousImageId === spec.imageId ? { uid } : { uid, previousImageId };
  });
}
