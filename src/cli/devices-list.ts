import { parseArgs } from 'node:util';
import type { DeviceRecord } from '../admin/index.js';
import { ADMIN_OPTIONS, ADMIN_OPTIONS_USAGE, formatTable, formatTime, printJson, withAdmin } from './admin-client.js';

export const devicesListUsage = `nucleon devices [list] [--online | --offline] [options]

Lists the devices the server has seen: online or not, last seen, address,
firmware version and OTA state.

${ADMIN_OPTIONS_USAGE}`;

const OPTIONS = { ...ADMIN_OPTIONS, online: { type: 'boolean' }, offline: { type: 'boolean' } } as const;

/** `nucleon devices` / `nucleon devices list`, through the admin endpoint. */
export async function devicesList(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  if (positionals.length > 0) {
    process.stderr.write('nucleon devices list: takes no arguments (see nucleon devices --help)\n');
    return 2;
  }
  if (values.online === true && values.offline === true) {
    process.stderr.write('nucleon devices list: --online and --offline exclude each other\n');
    return 2;
  }
  const args = values.online === true ? { online: true } : values.offline === true ? { online: false } : {};
  const { devices } = await withAdmin(values, (client) => client.request<{ devices: DeviceRecord[] }>('devices.list', args));
  if (values.json) printJson(devices);
  else {
    const rows = devices.map((d) => [d.uid, d.online ? 'online' : 'offline', formatTime(d.lastSeen), d.remoteAddress ?? '-', d.firmwareVersion ?? '-', d.otaStatus]);
    process.stdout.write(formatTable(['UID', 'STATE', 'LAST SEEN', 'ADDRESS', 'FIRMWARE', 'OTA'], rows));
  }
  return 0;
}
