import { parseArgs } from 'node:util';
import type { GroupInfo } from '../events.js';
import type { CliAction } from './cli-action.js';
import { ADMIN_OPTIONS, ADMIN_OPTIONS_USAGE, formatTable, printJson, withAdmin } from './admin-client.js';

export const groupsUsage = `nucleon groups [options]

Lists the OTA groups: each group's image and member devices.

${ADMIN_OPTIONS_USAGE}`;

/** `nucleon groups` has no actions: it runs this one admin command. */
export const groupsAction = 'groups.list' satisfies CliAction;

export async function groups(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: ADMIN_OPTIONS, allowPositionals: true, strict: true });
  if (positionals.length > 0) {
    process.stderr.write('nucleon groups: takes no arguments (see nucleon groups --help)\n');
    return 2;
  }
  const result = await withAdmin(values, (client) => client.request<{ groups: GroupInfo[] }>(groupsAction));
  if (values.json) printJson(result.groups);
  else {
    const rows = result.groups.map((g) => [g.name, g.imageId ?? '-', String(g.devices.length), g.devices.join(' ')]);
    process.stdout.write(formatTable(['GROUP', 'IMAGE', 'DEVICES', 'MEMBERS'], rows));
  }
  return 0;
}
