import { parseArgs } from 'node:util';
import type { Revocation } from '../revocation/index.js';
import { ADMIN_OPTIONS, ADMIN_OPTIONS_USAGE, formatTable, formatTime, printJson, withAdmin } from './admin-client.js';

/**
 * `nucleon devices revoke|unrevoke|kick|revocations`, through the admin
 * endpoint: the running server owns the list and closes the sessions
 * (README "Revocation").
 */

import type { CliAction } from './cli-action.js';

type Action = { usage: string; run: (argv: string[]) => Promise<number>; api: CliAction };

function oneUid(positionals: string[], what: string): string | undefined {
  if (positionals.length === 1) return positionals[0];
  process.stderr.write(`nucleon devices ${what}: takes exactly one <uid>\n`);
  return undefined;
}

const revoke: Action = {
  api: 'devices.revoke',
  usage: 'revoke <uid> [--reason <text>] [admin options]   refuse its certificates and password on every instance; its session is closed at once',
  run: async (argv) => {
    const { values, positionals } = parseArgs({ args: argv, options: { ...ADMIN_OPTIONS, reason: { type: 'string' } }, allowPositionals: true, strict: true });
    const uid = oneUid(positionals, 'revoke');
    if (uid === undefined) return 2;
    const args = values.reason === undefined ? { uid } : { uid, reason: values.reason };
    const { revocation } = await withAdmin(values, (client) => client.request<{ revocation: Revocation }>('devices.revoke', args));
    if (values.json) printJson(revocation);
    else process.stderr.write(`device ${uid}: revoked (${revocation.reason})\n`);
    return 0;
  },
};

const unrevoke: Action = {
  api: 'devices.unrevoke',
  usage: 'unrevoke <uid> [admin options]                   lift the revocation: the device may log in again',
  run: async (argv) => {
    const { values, positionals } = parseArgs({ args: argv, options: ADMIN_OPTIONS, allowPositionals: true, strict: true });
    const uid = oneUid(positionals, 'unrevoke');
    if (uid === undefined) return 2;
    await withAdmin(values, (client) => client.request('devices.unrevoke', { uid }));
    process.stderr.write(`device ${uid}: no longer revoked\n`);
    return 0;
  },
};

const kick: Action = {
  api: 'devices.kick',
  usage: 'kick <uid> [admin options]                       close its session on whichever instance holds it (it may reconnect)',
  run: async (argv) => {
    const { values, positionals } = parseArgs({ args: argv, options: ADMIN_OPTIONS, allowPositionals: true, strict: true });
    const uid = oneUid(positionals, 'kick');
    if (uid === undefined) return 2;
    await withAdmin(values, (client) => client.request('devices.kick', { uid }));
    process.stderr.write(`device ${uid}: kicked\n`);
    return 0;
  },
};

const revocations: Action = {
  api: 'devices.revocations',
  usage: 'revocations [admin options]                      the revocation list',
  run: async (argv) => {
    const { values, positionals } = parseArgs({ args: argv, options: ADMIN_OPTIONS, allowPositionals: true, strict: true });
    if (positionals.length > 0) {
      process.stderr.write('nucleon devices revocations: takes no arguments\n');
      return 2;
    }
    const list = (await withAdmin(values, (client) => client.request<{ revocations: Revocation[] }>('devices.revocations', {}))).revocations;
    if (values.json) printJson(list);
    else {
      const rows = list.map((r) => [r.uid ?? '-', r.serial ?? '-', r.reason, r.by, formatTime(r.at), formatTime(r.effectiveAt)]);
      process.stdout.write(formatTable(['UID', 'SERIAL', 'REASON', 'BY', 'AT', 'EFFECTIVE'], rows));
    }
    return 0;
  },
};

export const revocationActions: Record<string, Action> = { revoke, unrevoke, kick, revocations };

export const revocationUsage = `Revocation (README "Revocation"), through the admin endpoint:\n${ADMIN_OPTIONS_USAGE}`;
