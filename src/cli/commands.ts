import { campaignActions, campaigns, campaignsUsage } from './campaigns.js';
import { certs, certsActions, certsUsage } from './certs.js';
import type { CliAction } from './cli-action.js';
import { deviceActions, devices, devicesUsage, serviceAccountActions, serviceAccounts, serviceAccountsUsage, type Action } from './devices.js';
import { groups, groupsAction, groupsUsage } from './groups.js';
import { ota, otaActions, otaUsage } from './ota.js';
import { serve, serveUsage } from './serve.js';

export interface CliCommand {
  summary: string;
  usage: string;
  run: (argv: string[]) => Promise<number>;
  /** Each action (`nucleon ota link`: `link`) and what it runs; `''` for a command without actions (`nucleon groups`). */
  actions: Readonly<Record<string, CliAction>>;
}

const apiOf = (actions: Record<string, Action>): Record<string, CliAction> => Object.fromEntries(Object.entries(actions).map(([name, action]) => [name, action.api]));

/** The `nucleon` subcommands; each lives in src/cli/<name>.ts. */
export const CLI_COMMANDS: Readonly<Record<string, CliCommand>> = {
  serve: { summary: 'run the broker', usage: serveUsage, run: serve, actions: { '': 'local' } },
  certs: { summary: 'make the CA, server and device certificates', usage: certsUsage, run: certs, actions: certsActions },
  devices: { summary: 'device passwords for MQTT logins', usage: devicesUsage(), run: devices, actions: apiOf(deviceActions) },
  'service-accounts': { summary: 'service accounts (backend MQTT clients)', usage: serviceAccountsUsage(), run: serviceAccounts, actions: apiOf(serviceAccountActions) },
  ota: { summary: 'firmware images and links (add, list, link, unlink, remove)', usage: otaUsage, run: ota, actions: otaActions },
  groups: { summary: 'list OTA groups', usage: groupsUsage, run: groups, actions: { '': groupsAction } },
  campaigns: { summary: 'staged OTA campaigns (create, list, show, pause, resume, abort, promote)', usage: campaignsUsage, run: campaigns, actions: campaignActions },
};
