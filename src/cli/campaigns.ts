import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseToml } from 'smol-toml';
import { NucleonError } from '../errors.js';
import type { CampaignDeviceStatus, CampaignSummary } from '../events.js';
import type { CliAction } from './cli-action.js';
import { ADMIN_OPTIONS, ADMIN_OPTIONS_USAGE, formatBytes, formatTable, formatTime, printJson, withAdmin } from './admin-client.js';

export const campaignsUsage = `nucleon campaigns <command> [options]

Staged, health-gated OTA rollouts (README "Campaigns").

Commands:
  create <spec.json|spec.toml>   create and start a campaign from a spec file
  list                           every campaign: state, stage, devices per state
  show <id> [--devices]          one campaign, its stages and spec (--devices: every device record)
  pause <id>                     notify no new stage; devices in progress are still watched
  resume <id>                    resume a paused campaign
  abort <id> [--rollback|--no-rollback]
                                 stop it; rollback links the stage's devices back (default: as the spec says)
  promote <id>                   start the next stage now

${ADMIN_OPTIONS_USAGE}`;

const OPTIONS = {
  ...ADMIN_OPTIONS,
  devices: { type: 'boolean', default: false },
  rollback: { type: 'boolean' },
  'no-rollback': { type: 'boolean' },
} as const;

/** The actions and the admin command each runs. */
export const campaignActions = {
  create: 'campaigns.create',
  list: 'campaigns.list',
  show: 'campaigns.show',
  pause: 'campaigns.pause',
  resume: 'campaigns.resume',
  abort: 'campaigns.abort',
  promote: 'campaigns.promote',
} as const satisfies Record<string, CliAction>;

/** The commands that take one campaign id and answer its summary. */
const OPERATIONS = ['pause', 'resume', 'promote', 'abort'] as const;
type Operation = (typeof OPERATIONS)[number];

/** `nucleon campaigns …`: exit 0 on success, 1 when the server refuses or cannot be reached, 2 on usage errors. */
export async function campaigns(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [sub, ...rest] = positionals;
  if (values.rollback === true && values['no-rollback'] === true) return usage('give --rollback or --no-rollback, not both');
  switch (sub) {
    case 'create': {
      const [file, extra] = rest;
      if (file === undefined || extra !== undefined) return usage('campaigns create takes one spec file (.json or .toml)');
      const spec = await readSpec(file);
      const campaign = await withAdmin(values, (client) => client.request<CampaignSummary>(campaignActions.create, spec));
      if (values.json) printJson(campaign);
      else process.stdout.write(`created: ${describeSummary(campaign)}\n${formatStages(campaign)}`);
      return 0;
    }
    case 'list': {
      if (rest.length > 0) return usage('campaigns list takes no arguments');
      const { campaigns: list } = await withAdmin(values, (client) => client.request<{ campaigns: CampaignSummary[] }>(campaignActions.list));
      if (values.json) printJson(list);
      else {
        const rows = list.map((c) => [c.id, c.imageId, c.state, `${c.stage + 1}/${c.stages.length} ${c.stages[c.stage]?.label ?? ''}`.trim(), c.reason, formatCounts(c)]);
        process.stdout.write(formatTable(['ID', 'IMAGE', 'STATE', 'STAGE', 'REASON', 'DEVICES'], rows));
      }
      return 0;
    }
    case 'show': {
      const [id, extra] = rest;
      if (id === undefined || extra !== undefined) return usage('campaigns show takes one campaign id');
      const shown = await withAdmin(values, (client) =>
        client.request<{ campaign: CampaignSummary; spec: unknown; devices?: CampaignDeviceStatus[] }>(campaignActions.show, { id, ...(values.devices ? { devices: true } : {}) }),
      );
      if (values.json) printJson(shown);
      else {
        process.stdout.write(`${describeSummary(shown.campaign)}\n${formatStages(shown.campaign)}`);
        if (shown.devices) process.stdout.write(`\n${formatDevices(shown.devices)}`);
      }
      return 0;
    }
    default: {
      if (!isOperation(sub)) return usage(sub === undefined ? 'missing command' : `unknown command "${sub}"`);
      const [id, extra] = rest;
      if (id === undefined || extra !== undefined) return usage(`campaigns ${sub} takes one campaign id`);
      if (sub !== 'abort' && (values.rollback !== undefined || values['no-rollback'] !== undefined)) return usage('--rollback and --no-rollback go with abort only');
      const rollback = values.rollback === true ? true : values['no-rollback'] === true ? false : undefined;
      const args = { id, ...(rollback !== undefined ? { rollback } : {}) };
      const campaign = await withAdmin(values, (client) => client.request<CampaignSummary>(campaignActions[sub], args));
      if (values.json) printJson(campaign);
      else process.stdout.write(`${PAST[sub]}: ${describeSummary(campaign)}\n`);
      return 0;
    }
  }
}

const PAST: Record<Operation, string> = { pause: 'paused', resume: 'resumed', promote: 'promoted', abort: 'aborted' };

function usage(problem: string): number {
  process.stderr.write(`nucleon campaigns: ${problem} (see nucleon campaigns --help)\n`);
  return 2;
}

function isOperation(sub: string | undefined): sub is Operation {
  return (OPERATIONS as readonly (string | undefined)[]).includes(sub);
}

/** A spec file: TOML when its name ends in .toml, JSON otherwise. The server validates the fields. */
export async function readSpec(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new NucleonError('INVALID_ARGUMENT', `cannot read the spec ${file}: ${(error as Error).message}`, { cause: error });
  }
  let spec: unknown;
  try {
    spec = path.extname(file).toLowerCase() === '.toml' ? parseToml(text) : JSON.parse(text);
  } catch (error) {
    throw new NucleonError('INVALID_ARGUMENT', `the spec ${file} is not valid ${path.extname(file).toLowerCase() === '.toml' ? 'TOML' : 'JSON'}: ${(error as Error).message}`, { cause: error });
  }
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) throw new NucleonError('INVALID_ARGUMENT', `the spec ${file} must be an object (a table in TOML)`);
  return spec as Record<string, unknown>;
}

function describeSummary(c: CampaignSummary): string {
  const stage = c.stages[c.stage];
  return `campaign ${c.id} (image ${c.imageId}): ${c.state} (${c.reason}), stage ${c.stage + 1} of ${c.stages.length}${stage ? ` (${stage.label})` : ''}; ${formatCounts(c)}`;
}

/** Devices per state, the empty states left out: "healthy 12, notified 3". */
function formatCounts(c: CampaignSummary): string {
  const parts = Object.entries(c.counts)
    .filter(([, n]) => n > 0)
    .map(([state, n]) => `${state} ${n}`);
  return parts.length > 0 ? parts.join(', ') : 'no devices';
}

function formatStages(c: CampaignSummary): string {
  const rows = c.stages.map((stage, i) => [String(i + 1), stage.label, String(stage.devices), formatTime(stage.startedAt), i === c.stage ? '<' : '']);
  return formatTable(['STAGE', 'LABEL', 'DEVICES', 'STARTED', ''], rows);
}

function formatDevices(devices: readonly CampaignDeviceStatus[]): string {
  const rows = devices.map((d) => [
    d.uid,
    String(d.stage + 1),
    d.state,
    d.bytes !== undefined ? `${formatBytes(d.bytes)}${d.percent !== undefined ? ` (${Math.round(d.percent)}%)` : ''}` : '-',
    d.reason ?? '',
    d.rolledBackTo !== undefined ? `rolled back to ${d.rolledBackTo}` : (d.detail ?? ''),
  ]);
  return formatTable(['DEVICE', 'STAGE', 'STATE', 'DOWNLOADED', 'REASON', 'NOTE'], rows);
}
