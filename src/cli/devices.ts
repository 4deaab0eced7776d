import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfigFile, type Config } from '../config/index.js';
import { deviceCredentials, serviceCredentials, type CredentialStore } from '../devices/index.js';
import { hasCode, NucleonError } from '../errors.js';
import { LevelStore } from '../store/index.js';
import { withAdmin } from './admin-client.js';
import type { CliAction } from './cli-action.js';
import { devicesList } from './devices-list.js';

/**
 * `nucleon devices <action>` and `nucleon service-accounts <action>`. The
 * credential actions open the embedded store directly when they can; while a
 * server holds it (LevelDB allows one process) or in cluster mode, device
 * passwords go through the admin endpoint instead. Other actions (such as
 * listing) are added to the `deviceActions` table.
 */

export type Action = { usage: string; run: (argv: string[]) => Promise<number>; api: CliAction };

const CREDENTIAL_OPTIONS = {
  config: { type: 'string', short: 'c', default: 'config.toml' },
  password: { type: 'string', short: 'p' },
  url: { type: 'string' },
  'api-key': { type: 'string' },
} as const;

/** What the add/remove actions need, whether the store is local or behind the admin endpoint. */
type Passwords = Pick<CredentialStore, 'add' | 'remove'>;
type Opened = { credentials: Passwords; close: () => Promise<void> };
type AdminValues = { config?: string | undefined; url?: string | undefined; 'api-key'?: string | undefined };

/** The same two operations, run by a server through its admin endpoint. */
function adminCredentials(values: AdminValues): Passwords {
  const call = <T>(cmd: string, args: Record<string, unknown>) => withAdmin(values, (client) => client.request<T>(cmd, args));
  return {
    add: async (uid: string, password?: string) => (await call<{ password: string }>('devices.add', password === undefined ? { uid } : { uid, password })).password,
    remove: async (uid: string) => {
      try {
        await call('devices.remove', { uid });
        return true;
      } catch (error) {
        if (hasCode(error, 'NOT_FOUND')) return false;
        throw error;
      }
    },
  };
}

function credentialActions(
  what: 'device' | 'service account',
  open: (config: Readonly<Config>, values: AdminValues) => Promise<Opened>,
  api: { add: CliAction; remove: CliAction },
) {
  const noun = what === 'device' ? '<uid>' : '<name>';
  const add: Action = {
    api: api.add,
    usage: `add ${noun} [--password <p>] [--config <file>]   set a password (generated and printed when not given)${what === 'device' ? '; through the admin endpoint (--url, --api-key) while a server runs' : ''}`,
    run: async (argv) => {
      const { values, positionals } = parseArgs({ args: argv, options: CREDENTIAL_OPTIONS, strict: true, allowPositionals: true });
      const name = exactlyOne(positionals, `add ${noun}`);
      if (name === undefined) return 2;
      const { config } = await loadConfigFile(values.config ?? 'config.toml');
      const { credentials, close } = await open(config, values);
      try {
        const password = await credentials.add(name, values.password);
        if (values.password === undefined) process.stdout.write(`${password}\n`);
        process.stderr.write(`${what} ${name}: password set${values.password === undefined ? ' (printed above; it is not shown again)' : ''}\n`);
      } finally {
        await close();
      }
      return 0;
    },
  };
  const remove: Action = {
    api: api.remove,
    usage: `remove ${noun} [--config <file>]                  delete the password (certificates stay valid until they expire)`,
    run: async (argv) => {
      const { config: configOption, url, 'api-key': apiKey } = CREDENTIAL_OPTIONS;
      const { values, positionals } = parseArgs({ args: argv, options: { config: configOption, url, 'api-key': apiKey }, strict: true, allowPositionals: true });
      const name = exactlyOne(positionals, `remove ${noun}`);
      if (name === undefined) return 2;
      const { config } = await loadConfigFile(values.config ?? 'config.toml');
      const { credentials, close } = await open(config, values);
      try {
        if (!(await credentials.remove(name))) throw new NucleonError('NOT_FOUND', `${what} ${name} has no password`);
        process.stderr.write(`${what} ${name}: password removed\n`);
      } finally {
        await close();
      }
      return 0;
    },
  };
  return { add, remove };
}

function exactlyOne(positionals: string[], what: string): string | undefined {
  if (positionals.length === 1) return positionals[0];
  process.stderr.write(`nucleon: ${what} takes exactly one argument\n`);
  return undefined;
}

/** Opens the embedded store, or says in one line why not (usually: the server holds it). */
async function openStore(config: Readonly<Config>): Promise<LevelStore> {
  if (config.cluster) throw new NucleonError('STORE_SHARED', 'with [cluster] the credentials live in Redis: manage them through the admin endpoint');
  const dir = path.join(config.store.path, 'kv');
  const store = new LevelStore(dir);
  try {
    await store.open();
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    if (cause?.code === 'LEVEL_LOCKED') {
      throw new NucleonError('STORE_LOCKED', `the store ${dir} is in use by a running server: stop it first, or use the admin endpoint`, { cause: error });
    }
    throw error;
  }
  return store;
}

function opener(make: (store: LevelStore) => CredentialStore, viaAdmin: boolean) {
  return async (config: Readonly<Config>, values: AdminValues): Promise<Opened> => {
    try {
      const store = await openStore(config);
      return { credentials: make(store), close: () => store.close() };
    } catch (error) {
      // A running server (or the cluster) owns the credentials: ask it.
      if (viaAdmin && config.admin.enabled && (hasCode(error, 'STORE_LOCKED') || hasCode(error, 'STORE_SHARED'))) {
        return { credentials: adminCredentials(values), close: async () => undefined };
      }
      throw error;
    }
  };
}

export const deviceActions: Record<string, Action> = {
  ...credentialActions('device', opener(deviceCredentials, true), { add: 'devices.add', remove: 'devices.remove' }),
  list: { api: 'devices.list', usage: '[list] [--online | --offline] [--url <ws-url>] [--api-key <key>] [--config <file>] [--json]   the fleet, through the admin endpoint', run: devicesList },
};
// Service accounts have no admin command yet: they are managed with the server stopped.
export const serviceAccountActions: Record<string, Action> = credentialActions('service account', opener(serviceCredentials, false), { add: 'local', remove: 'local' });

function usageOf(command: string, actions: Record<string, Action>, summary: string): string {
  return `${summary}\n\n${Object.values(actions)
    .map((action) => `nucleon ${command} ${action.usage}`)
    .join('\n')}`;
}

export const devicesUsage = (): string =>
  usageOf('devices', deviceActions, 'Device credentials for MQTT password logins (certificates: nucleon certs device <uid>).');
export const serviceAccountsUsage = (): string =>
  usageOf('service-accounts', serviceAccountActions, 'Service accounts: backend MQTT clients that log in as "svc:<name>" (README "Service accounts").');

function dispatch(command: string, actions: Record<string, Action>) {
  return async (argv: string[]): Promise<number> => {
    const [name, ...rest] = argv;
    // No action, or options only: the `list` action where there is one (`nucleon devices --json`).
    const defaulted = name === undefined || name.startsWith('-');
    const action = defaulted ? actions.list : Object.hasOwn(actions, name) ? actions[name] : undefined;
    if (defaulted && action) return action.run(argv);
    if (!action) {
      process.stderr.write(`nucleon: ${command}: expected one of ${Object.keys(actions).join(', ')} (see nucleon ${command} --help)\n`);
      return 2;
    }
    return action.run(rest);
  };
}

export const devices = dispatch('devices', deviceActions);
export const serviceAccounts = dispatch('service-accounts', serviceAccountActions);
