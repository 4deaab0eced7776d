import { z } from 'zod';
import type { DeviceRecord, OtaStatus } from './fleet.js';

/** A fleet record as the console lists it: with its OTA groups and whether it is revoked. */
export type DeviceSummary = DeviceRecord & { groups: string[]; revoked: boolean };

const OTA_STATES = ['none', 'assigned', 'downloading', 'updated'] as const satisfies readonly OtaStatus[];
const SORT_KEYS = ['uid', 'lastSeen', 'firmware', 'ota', 'online'] as const;

/** devices.search arguments (docs/console-contract.md). */
export const searchArgs = z.strictObject({
  q: z.string().max(128).optional(),
  group: z.string().min(1).max(128).optional(),
  firmware: z.string().min(1).max(128).optional(),
  online: z.boolean().optional(),
  ota: z.enum(OTA_STATES).optional(),
  sort: z.enum(SORT_KEYS).default('uid'),
  order: z.enum(['asc', 'desc']).default('asc'),
  offset: z.number().int().min(0).default(0),
  limit: z.number().int().min(1).max(500).default(50),
});
export type SearchArgs = z.output<typeof searchArgs>;

export interface SearchAnswer {
  total: number;
  offset: number;
  limit: number;
  items: DeviceSummary[];
  facets: { groups: string[]; firmware: string[] };
}

/** What the search needs besides the records. */
export interface SearchContext {
  groupsOf(uid: string): readonly string[];
  /** Every group name, sorted. */
  groups: readonly string[];
  revoked(uid: string): boolean;
}

export const FACET_CAP = 200;
const OTA_RANK: Record<OtaStatus, number> = { none: 0, assigned: 1, downloading: 2, updated: 3 };

type Compare = (a: DeviceRecord, b: DeviceRecord) => number;

/** Plain code-unit order: uids are ASCII, and localeCompare costs ten times as much over a fleet. */
function byText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const COMPARE: Record<SearchArgs['sort'], Compare> = {
  uid: (a, b) => byText(a.uid, b.uid),
  lastSeen: (a, b) => a.lastSeen - b.lastSeen,
  // Devices without a known version sort after every version (ascending).
  firmware: (a, b) => (a.firmwareVersion === b.firmwareVersion ? 0 : a.firmwareVersion === undefined ? 1 : b.firmwareVersion === undefined ? -1 : byText(a.firmwareVersion, b.firmwareVersion)),
  ota: (a, b) => OTA_RANK[a.otaStatus] - OTA_RANK[b.otaStatus],
  online: (a, b) => Number(a.online) - Number(b.online),
};

/**
 * Filters, sorts and pages the fleet. Only the matches are sorted, and the
 * uid breaks ties so pages are stable. At 10,000 devices one search is a few
 * milliseconds (test/integration/console-api.test.ts logs it), so there is no
 * index to keep in step with the fleet.
 */
export function searchDevices(records: readonly DeviceRecord[], args: SearchArgs, context: SearchContext): SearchAnswer {
  const prefix = args.q?.toLowerCase();
  const firmware = new Set<string>();
  const matches: DeviceRecord[] = [];
  for (const record of records) {
    if (record.firmwareVersion !== undefined) firmware.add(record.firmwareVersion);
    if (prefix !== undefined && prefix !== '' && !record.uid.toLowerCase().startsWith(prefix)) continue;
    if (args.firmware !== undefined && record.firmwareVersion !== args.firmware) continue;
    if (args.online !== undefined && record.online !== args.online) continue;
    if (args.ota !== undefined && record.otaStatus !== args.ota) continue;
    if (args.group !== undefined && !context.groupsOf(record.uid).includes(args.group)) continue;
    matches.push(record);
  }
  const compare = COMPARE[args.sort];
  const sign = args.order === 'desc' ? -1 : 1;
  matches.sort((a, b) => sign * compare(a, b) || byText(a.uid, b.uid));
  const page = matches.slice(args.offset, args.offset + args.limit);
  return {
    total: matches.length,
    offset: args.offset,
    limit: args.limit,
    items: page.map((record) => summarize(record, context)),
    facets: { groups: context.groups.slice(0, FACET_CAP), firmware: [...firmware].sort(byText).slice(0, FACET_CAP) },
  };
}

export function summarize(record: DeviceRecord, context: Pick<SearchContext, 'groupsOf' | 'revoked'>): DeviceSummary {
  return { ...record, groups: [...context.groupsOf(record.uid)], revoked: context.revoked(record.uid) };
}
