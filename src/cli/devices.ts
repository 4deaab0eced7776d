import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfigFile, type Config } from '../config/index.js';
import { deviceCredentials, MIN_PASSWORD_LENGTH, serviceCredentials, type CredentialStore } from '../devices/index.js';
import { hasCode, NucleonError } from '../errors.js';
import { LevelStore } from '../store/index.js';
import { ADMIN_OPTIONS, formatTable, printJson, withAdmin } from './admin-client.js';
import type { CliAction } from './cli-action.js';
import { devicesList } from './devices-list.js';
import { revocationActions, revocationUsage } from './devices-revoke.js';
import { KvFleetStore } from '../admin/index.js';
import type { KvStore } from '../store/index.js';

/**
 * `nucleon devices <action>` and `nucleon service-accounts <action>`. The
 * credential actions open the embedded store directly when they can; while a
 * server holds it (LevelDB allows one process) or in cluster mode, they go
 * through the admin endpoint instead (`devices.*`, `service-accounts.*`), so
 * the running server takes the change at once. Other actions (such as
 * listing) are added to the action tables.
 */

export type Action = { usage: string; run: (argv: string[]) => Promise<number>; api: CliAction };

const CREDENTIAL_OPTIONS = {
  config: { type: 'string', short: 'c', default: 'config.toml' },
  password: { type: 'string', short: 'p' },
  generate: { type: 'boolean', short: 'g', default: false },
  url: { type: 'string' },
  'api-key': { type: 'string' },
} as const;

/** What the add/remove actions need, whether the store is local or behind the admin endpoint. */
type Passwords = Pick<CredentialStore, 'add' | 'remove'>;
type Opened = { credentials: Passwords; close: () => Promise<void> };
type AdminValues = { config?: string | undefined; url?: string | undefined; 'api-key'?: string | undefined };

/** The admin commands for one kind of credential and the name of their key argument. */
type AdminCommands = { prefix: 'devices' | 'service-accounts'; key: 'uid' | 'name' };

/** The same two operations, run by a server through its admin endpoint. */
function adminCredentials(values: AdminValues, commands: AdminCommands): Passwords {
  const call = <T>(cmd: string, args: Record<string, unknown>) => withAdmin(values, (client) => client.request<T>(`${commands.prefix}.${cmd}`, args));
  return {
    add: async (name: string, password?: string) => (await call<{ password: string }>('add', { [commands.key]: name, ...(password === undefined ? {} : { password }) })).password,
    remove: async (name: string) => {
      try {
        await call('remove', { [commands.key]: name });
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
    usage: `add ${noun} [--password <p> | --generate] [--config <file>]   set a password of at least ${MIN_PASSWORD_LENGTH} characters; --generate (the default without --password) prints a random one; through the admin endpoint (--url, --api-key) while a server runs`,
    run: async (argv) => {
      const { values, positionals } = parseArgs({ args: argv, options: CREDENTIAL_OPTIONS, strict: true, allowPositionals: true });
      const name = exactlyOne(positionals, `add ${noun}`);
      if (name === undefined) return 2;
      if (values.generate === true && values.password !== undefined) {
        process.stderr.write(`nucleon: add ${noun}: give --password or --generate, not both\n`);
        return 2;
      }
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
    usage: `remove ${noun} [--config <file>]                  ${what === 'device' ? 'forget the device: password and fleet record (certificates stay valid until revoked: devices revoke)' : 'delete the password'}`,
    run: async (argv) => {
      const { config: configOption, url, 'api-key': apiKey } = CREDENTIAL_OPTIONS;
      const { values, positionals } = parseArgs({ args: argv, options: { config: configOption, url, 'api-key': apiKey }, strict: true, allowPositionals: true });
      const name = exactlyOne(positionals, `remove ${noun}`);
      if (name === undefined) return 2;
      const { config } = await loadConfigFile(values.config ?? 'config.toml');
      const { credentials, close } = await open(config, values);
      try {
        if (!(await credentials.remove(name))) throw new NucleonError('NOT_FOUND', `${what} ${name} has no password`);
        process.stderr.write(what === 'device' ? `device ${name}: removed (password and fleet record)\n` : `${what} ${name}: password removed\n`);
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
export async function openStore(config: Readonly<Config>): Promise<LevelStore> {
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

function opener(make: (store: LevelStore) => Passwords, commands: AdminCommands, announce: boolean) {
  return async (config: Readonly<Config>, values: AdminValues): Promise<Opened> => {
    try {
      const store = await openStore(config);
      if (announce) process.stderr.write(`(no server holds the store: changing ${path.join(config.store.path, 'kv')} directly; a server started later sees it)\n`);
      return { credentials: make(store), close: () => store.close() };
    } catch (error) {
      // A running server (or the cluster) owns the credentials: ask it, and it applies the change at once.
      if (config.admin.enabled && (hasCode(error, 'STORE_LOCKED') || hasCode(error, 'STORE_SHARED'))) {
        if (announce) process.stderr.write('(a server holds the store: through its admin endpoint, effective at once)\n');
        return { credentials: adminCredentials(values, commands), close: async () => undefined };
      }
      throw error;
    }
  };
}

/**
 * `devices remove` with the store open here forgets the device as the admin
 * command does: password and fleet record. Revocation entries stay: a retired
 * device's certificate must stay refused.
 */
function deviceForgetting(store: KvStore): Passwords {
  const credentials = deviceCredentials(store);
  const fleet = new KvFleetStore(store);
  return {
    add: (uid, password) => credentials.add(uid, password),
    remove: async (uid) => {
      const hadPassword = await credentials.remove(uid);
      const hadRecord = await fleet.remove(uid);
      return hadPassword || hadRecord;
    },
  };
}

export const deviceActions: Record<string, Action> = {
  ...credentialActions('device', opener(deviceForgetting, { prefix: 'devices', key: 'uid' }, false), { add: 'devices.add', remove: 'devices.remove' }),
  ...revocationActions,
  list: { api: 'devices.list', usage: '[list] [--online | --offline] [--url <ws-url>] [--api-key <key>] [--config <file>] [--json]   the fleet, through the admin endpoint', run: devicesList },
};
export const serviceAccountActions: Record<string, Action> = {
  ...credentialActions('service account', opener(serviceCredentials, { prefix: 'service-accounts', key: 'name' }, true), { add: 'service-accounts.add', remove: 'service-accounts.remove' }),
  list: { api: 'service-accounts.list', usage: 'list [--url <ws-url>] [--api-key <key>] [--config <file>] [--json]   the service accounts, through the admin endpoint', run: serviceAccountsList },
};

/** `nucleon service-accounts list`: names and when their password was set, from the running server. */
async function serviceAccountsList(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: ADMIN_OPTIONS, allowPositionals: true, strict: true });
  if (positionals.length > 0) {
    process.stderr.write('nucleon service-accounts list: takes no arguments (see nucleon service-accounts --help)\n');
    return 2;
  }
  const { accounts } = await withAdmin(values, (client) => client.request<{ accounts: { name: string; createdAt: string }[] }>('service-accounts.list', {}));
  if (values.json) printJson(accounts);
  else process.stdout.write(formatTable(['NAME', 'PASSWORD SET'], accounts.map((a) => [a.name, a.createdAt])));
  return 0;
}

function usageOf(command: string, actions: Record<string, Action>, summary: string): string {
  return `${summary}\n\n${Object.values(actions)
    .map((action) => `nucleon ${command} ${action.usage}`)
    .join('\n')}`;
}

export const devicesUsage = (): string =>
  `${usageOf('devices', deviceActions, 'Device credentials for MQTT password logins (certificates: nucleon certs device <uid>), revocation and kick.')}

${revocationUsage}`;
export const serviceAccountsUsage = (): string =>
  usageOf('service-accounts', serviceAccountActions, 'Service accounts: backend MQTT clients that log in as "svc:<name>" with client id "svc:<name>" or "svc:<name>:<anything>" (README "Service accounts").');

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
