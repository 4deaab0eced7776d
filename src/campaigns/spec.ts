import { z } from 'zod';
import { isValidUid, parseVersionId } from '../protocol/index.js';
import { CampaignError } from './errors.js';

/**
 * What an operator gives to create a campaign (admin `campaigns.create`,
 * README "Campaigns"), validated in one pass: every problem is reported at
 * once with the path of its field, such as `stages.2.percent`.
 *
 * Times are milliseconds. Stage sizes are cumulative shares of the target
 * (1% → 10% → 100%), or cumulative device counts; the last stage must reach
 * 100% so that no device is silently left out.
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** Group names as the OTA runner takes them. */
const GROUP_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

const uid = z.string().refine(isValidUid, { message: 'expected a device uid ([A-Za-z0-9_-], 1..64 characters)' });
const imageId = z.string().refine((id) => parseVersionId(id) !== undefined, { message: 'expected an image id such as 1.2.3-4-g965b9df' });
const duration = z.number().int().min(0).max(365 * 24 * HOUR);
const positiveDuration = z.number().int().min(1).max(365 * 24 * HOUR);

const stageSchema = z
  .strictObject({
    /** Cumulative share of the target devices notified by the end of this stage. */
    percent: z.number().gt(0).max(100).optional(),
    /** Cumulative number of target devices notified by the end of this stage. */
    count: z.number().int().min(1).optional(),
    /** Overrides the campaign's `soakMs` for this stage. */
    soakMs: duration.optional(),
  })
  .refine((stage) => (stage.percent === undefined) !== (stage.count === undefined), { message: 'give exactly one of percent or count' });

/** `health.revertGraceMs` when the spec gives none, and for campaigns stored before it existed. */
export const REVERT_GRACE_DEFAULT_MS = 1 * MINUTE;

const healthSchema = z.strictObject({
  /** A confirmed device is healthy once it has passed this window without failing. */
  windowMs: positiveDuration.default(30 * MINUTE),
  /** A confirmed device that sends no telemetry for this long fails as `telemetry_silent`. */
  telemetrySilentMs: positiveDuration.default(10 * MINUTE),
  /** A notified device must have downloaded the whole image within this, or fails as `download_timeout`. */
  downloadTimeoutMs: positiveDuration.default(2 * HOUR),
  /** A downloaded device must report the new version within this, or fails as `no_reconnect`. */
  reconnectTimeoutMs: positiveDuration.default(15 * MINUTE),
  /**
   * After the reboot, an old-version report is a revert only when the device
   * asks for no more of the image within this: a device whose last chunk was
   * lost with its connection (a broker restart, a cellular drop) reconnects on
   * the old version and asks for that chunk again.
   */
  revertGraceMs: positiveDuration.default(REVERT_GRACE_DEFAULT_MS),
  /** `reconnects` connections within `withinMs` after the download: `boot_loop`. */
  bootLoop: z.strictObject({ reconnects: z.number().int().min(2).max(1000).default(3), withinMs: positiveDuration.default(10 * MINUTE) }).prefault({}),
  /** Share (0..1) of a stage's devices that must be healthy before the next stage starts. */
  successRatio: z.number().min(0).max(1).default(0.95),
});

/**
 * The campaign's share of the OTA serving paths (README "Campaigns"). The
 * OTA runner holds the campaign's devices to `bytesPerSecond` over MQTT
 * chunks and HTTP ranges together; the campaigns runner keeps at most
 * `maxConcurrent` devices downloading (notified, not yet downloaded or
 * failed) and notifies the next as one finishes.
 */
const budgetSchema = z
  .strictObject({
    bytesPerSecond: z.number().int().min(1024).max(10_000_000_000).optional(),
    maxConcurrent: z.number().int().min(1).max(1_000_000).optional(),
    /** A download request that would wait longer than this for the budget is not served now (no MQTT reply; HTTP 503 with Retry-After). */
    maxDelayMs: z.number().int().min(100).max(60_000).default(10_000),
  })
  .refine((budget) => budget.bytesPerSecond !== undefined || budget.maxConcurrent !== undefined, { message: 'give bytesPerSecond, maxConcurrent or both' });

const timeOfDay = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, { message: 'expected a UTC time of day HH:MM' });
const instant = z.iso.datetime({ offset: true, message: 'expected an ISO 8601 date and time, such as 2026-12-01T02:00:00Z' });

/** When new devices may be notified (src/campaigns/schedule.ts). */
const scheduleSchema = z
  .strictObject({
    notBefore: instant.optional(),
    notAfter: instant.optional(),
    daily: z.strictObject({ from: timeOfDay, to: timeOfDay }).refine((d) => d.from !== d.to, { message: 'from and to are the same time: an empty window' }).optional(),
  })
  .refine((s) => s.notBefore === undefined || s.notAfter === undefined || Date.parse(s.notBefore) < Date.parse(s.notAfter), { message: 'notBefore must be before notAfter', path: ['notAfter'] });

const specSchema = z
  .strictObject({
    id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, { message: 'expected [A-Za-z0-9_.-], 1..64 characters' }),
    imageId,
    target: z
      .strictObject({
        groups: z.array(z.string().regex(GROUP_NAME, { message: 'expected a group name ([A-Za-z0-9_.-]{1,64})' })).max(1000).optional(),
        devices: z.array(uid).max(1_000_000).optional(),
        fleet: z.literal(true).optional(),
      })
      .refine((t) => t.fleet === true || (t.groups?.length ?? 0) + (t.devices?.length ?? 0) > 0, { message: 'give groups, devices, or fleet: true' })
      .refine((t) => t.fleet !== true || (t.groups === undefined && t.devices === undefined), { message: 'fleet: true takes no groups or devices' }),
    /** Named devices notified first, as a stage of their own. */
    canary: z.array(uid).max(1000).optional(),
    stages: z.array(stageSchema).min(1).max(20),
    soakMs: duration.default(HOUR),
    health: healthSchema.prefault({}),
    /** Abort once `failedPercent` of the notified devices have failed and at least `minFailed` of them (both must hold, as AWS IoT Jobs abortConfig). */
    abort: z.strictObject({ failedPercent: z.number().gt(0).max(100), minFailed: z.number().int().min(1) }).optional(),
    budget: budgetSchema.optional(),
    schedule: scheduleSchema.optional(),
    /** On abort, link the devices of the stage being rolled out back to their previous image (or to `imageId`). */
    rollback: z.strictObject({ enabled: z.boolean().default(true), imageId: imageId.optional() }).optional(),
  })
  .superRefine((spec, context) => {
    let previous = 0;
    spec.stages.forEach((stage, index) => {
      const size = stage.percent ?? stage.count ?? 0;
      const kind = stage.percent !== undefined ? 'percent' : 'count';
      const earlier = spec.stages[index - 1];
      if (index > 0 && earlier && (earlier.percent !== undefined) !== (stage.percent !== undefined)) {
        context.addIssue({ code: 'custom', path: ['stages', index], message: 'all stages use percent, or all use count (they are cumulative)' });
      } else if (size <= previous) {
        context.addIssue({ code: 'custom', path: ['stages', index, kind], message: `stages are cumulative: must be more than the stage before (${previous})` });
      }
      previous = size;
    });
    const last = spec.stages[spec.stages.length - 1];
    if (last?.percent !== undefined && last.percent !== 100) {
      context.addIssue({ code: 'custom', path: ['stages', spec.stages.length - 1, 'percent'], message: 'the last stage must reach 100, so no target device is left out' });
    }
    if (spec.rollback?.imageId === spec.imageId && spec.imageId !== undefined) {
      context.addIssue({ code: 'custom', path: ['rollback', 'imageId'], message: 'a rollback to the image being rolled out undoes nothing' });
    }
  });

export type CampaignSpec = z.output<typeof specSchema>;
export type HealthSettings = CampaignSpec['health'];

/** Validates a campaign spec; throws CampaignError INVALID_ARGUMENT naming every bad field. */
export function parseCampaignSpec(input: unknown): CampaignSpec {
  const parsed = specSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  throw new CampaignError('INVALID_ARGUMENT', describeIssues(parsed.error));
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const at = issue.path.map(String).join('.');
      if (issue.code === 'unrecognized_keys') return `${at === '' ? '' : `${at}: `}unknown field ${issue.keys.join(', ')}`;
      return at === '' ? issue.message : `${at}: ${issue.message}`;
    })
    .join('; ');
}
