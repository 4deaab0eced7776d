// The numbers of the console's campaign detail, as pure functions of what
// `campaigns.show {devices: true}` answers (and `campaign.*` events update):
// no DOM here, so test/unit/campaigns-dashboard.test.ts checks them in Node.

/** A device's way through a campaign, in order (README "Campaigns"). */
export const STEPS = ['pending', 'notified', 'downloading', 'downloaded', 'rebooting', 'confirmed', 'healthy', 'failed'] as const;
export type Step = (typeof STEPS)[number];

export const FUNNEL_STEPS = ['notified', 'downloading', 'downloaded', 'rebooting', 'confirmed', 'healthy'] as const;
export type FunnelStep = (typeof FUNNEL_STEPS)[number];

export interface CampaignStage {
  label: string;
  devices: number;
  soakMs?: number;
  startedAt?: number;
}

export interface CampaignSummary {
  id: string;
  imageId: string;
  /** running, paused, aborted, completed */
  state: string;
  stage: number;
  stages: CampaignStage[];
  counts: Partial<Record<Step, number>>;
  reason: string;
  createdAt: number;
  updatedAt: number;
}

export interface CampaignDevice {
  uid: string;
  stage: number;
  /** One of STEPS (a newer server may know more). */
  state: string;
  reason?: string;
  notifiedAt?: number;
  bytes?: number;
  downloadedAt?: number;
  rebootAt?: number;
  confirmedAt?: number;
  rolledBackTo?: string;
}

export interface CampaignSpec {
  health?: { windowMs?: number; successRatio?: number };
  rollback?: { enabled?: boolean };
}

export type Counts = Record<Step, number>;

export interface FunnelRow {
  label: string;
  index: number;
  devices: number;
  counts: Counts;
}

/**
 * Devices per stage and state, as they are now (not cumulative: a healthy
 * device counts under healthy only). One row per stage, then the total.
 */
export function funnel(summary: CampaignSummary, devices: Iterable<CampaignDevice>): { rows: FunnelRow[]; total: FunnelRow } {
  const rows: FunnelRow[] = summary.stages.map((stage, index) => ({ label: stage.label, index, devices: stage.devices, counts: zeroCounts() }));
  const total: FunnelRow = { label: 'total', index: -1, devices: 0, counts: zeroCounts() };
  for (const device of devices) {
    const step = device.state as Step;
    if (!(STEPS as readonly string[]).includes(step)) continue;
    const row = rows[device.stage];
    if (row) row.counts[step]++;
    total.counts[step]++;
    total.devices++;
  }
  return { rows, total };
}

/**
 * How many devices reached each step of the funnel (notified → downloading →
 * downloaded → rebooting → confirmed → healthy), failed ones included as far
 * as their record's times and bytes show they got.
 */
export function reached(devices: Iterable<CampaignDevice>): Record<FunnelStep, number> {
  const counts = Object.fromEntries(FUNNEL_STEPS.map((step) => [step, 0])) as Record<FunnelStep, number>;
  for (const device of devices) {
    for (const step of FUNNEL_STEPS) if (hasReached(device, step)) counts[step]++;
  }
  return counts;
}

function hasReached(device: CampaignDevice, step: FunnelStep): boolean {
  if (device.state !== 'failed') return STEPS.indexOf(device.state as Step) >= STEPS.indexOf(step);
  switch (step) {
    case 'notified':
      return device.notifiedAt !== undefined;
    case 'downloading':
      return (device.bytes ?? 0) > 0;
    case 'downloaded':
      return device.downloadedAt !== undefined;
    case 'rebooting':
      return device.rebootAt !== undefined;
    case 'confirmed':
      return device.confirmedAt !== undefined;
    default:
      return false;
  }
}

/** Failed devices per reason, most frequent first. */
export function failedByReason(devices: Iterable<CampaignDevice>): Array<{ reason: string; count: number }> {
  const counts = new Map<string, number>();
  for (const device of devices) {
    if (device.state !== 'failed') continue;
    const reason = device.reason ?? 'unknown';
    counts.set(reason, (counts.get(reason) ?? 0) + 1);
  }
  return [...counts.entries()].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));
}

/**
 * Bytes of the campaign image served to its devices: the sum of each device
 * record's `bytes` (MQTT chunks and HTTP ranges together; retried ranges count
 * again, and a record stops counting once the device has the whole image).
 */
export function bytesServed(devices: Iterable<CampaignDevice>, stage?: number): number {
  let sum = 0;
  for (const device of devices) if (stage === undefined || device.stage === stage) sum += device.bytes ?? 0;
  return sum;
}

/**
 * Two estimates, both undefined when the data does not allow one:
 *
 * - `downloadsDoneAt`: when the current stage's devices still downloading
 *   would have the whole image, at the rate this stage has been served so
 *   far (its bytes / the time since it started). Needs the image size and
 *   some bytes served.
 * - `earliestEndAt`: a lower bound for the campaign's end. A stage passes no
 *   earlier than its soak time after its start, and, when its gate needs
 *   healthy devices (or it is the last stage), no earlier than the health
 *   window (a device is healthy a window after it confirmed, which is after
 *   the stage started). Later stages add the same minimum each. Only while
 *   running: a paused campaign waits for an operator.
 */
export function estimate({ summary, spec, devices, imageSize, now }: { summary: CampaignSummary; spec: CampaignSpec | undefined; devices: readonly CampaignDevice[]; imageSize: number; now: number }): {
  downloadsDoneAt: number | undefined;
  earliestEndAt: number | undefined;
} {
  const result: { downloadsDoneAt: number | undefined; earliestEndAt: number | undefined } = { downloadsDoneAt: undefined, earliestEndAt: undefined };
  const current = summary.stages[summary.stage];
  if (summary.state !== 'running' || !current || current.startedAt === undefined) return result;

  if (imageSize > 0) {
    const inStage = devices.filter((device) => device.stage === summary.stage);
    const served = bytesServed(inStage);
    const elapsed = now - current.startedAt;
    const remaining = inStage
      .filter((device) => device.state === 'notified' || device.state === 'downloading')
      .reduce((sum, device) => sum + Math.max(0, imageSize - (device.bytes ?? 0)), 0);
    if (remaining > 0 && served > 0 && elapsed > 0) result.downloadsDoneAt = now + Math.ceil(remaining / (served / elapsed));
  }

  const windowMs = spec?.health?.windowMs ?? 0;
  const successRatio = spec?.health?.successRatio ?? 1;
  const last = summary.stages.length - 1;
  const minimum = (stage: CampaignStage, index: number) => Math.max(stage.soakMs ?? 0, successRatio > 0 || index === last ? windowMs : 0);
  if (typeof current.soakMs !== 'number') return result;
  let end = Math.max(now, current.startedAt + minimum(current, summary.stage));
  for (let index = summary.stage + 1; index <= last; index++) {
    const stage = summary.stages[index];
    if (stage) end += minimum(stage, index);
  }
  result.earliestEndAt = end;
  return result;
}

function zeroCounts(): Counts {
  return Object.fromEntries(STEPS.map((step) => [step, 0])) as Counts;
}
