import { parseArgs } from 'node:util';
import type { ImageInfo } from '../events.js';
import { parseVersionId } from '../protocol/index.js';
import type { CliAction } from './cli-action.js';
import { ADMIN_OPTIONS, ADMIN_OPTIONS_USAGE, formatBytes, formatTable, printJson, withAdmin } from './admin-client.js';

export const otaUsage = `nucleon ota <command> [options]

Commands:
  add <file> --version <id> [--type primary|secondary] [--description <text>]
                       upload a firmware image (id: major.minor.patch-commit-hash, e.g. 1.2.3-4-g965b9df)
  list                 list the images
  link [--device <uid>] [--group <name>] [--image <id>] [--force]
                       link a device to a group and/or an image, or a group to an image
                       (--force: allow a downgrade)
  unlink [--device <uid>] [--group <name>]
                       remove a device's link, or a group's image
  remove <id>          delete an image

${ADMIN_OPTIONS_USAGE}`;

/** The actions and the admin command each runs (`add` uploads in chunks first). */
export const otaActions = { add: 'images.add', list: 'images.list', link: 'ota.link', unlink: 'ota.unlink', remove: 'images.remove' } as const satisfies Record<string, CliAction>;

const OPTIONS = {
  ...ADMIN_OPTIONS,
  version: { type: 'string' },
  type: { type: 'string', default: 'primary' },
  description: { type: 'string' },
  device: { type: 'string' },
  group: { type: 'string' },
  image: { type: 'string' },
  force: { type: 'boolean', default: false },
} as const;

/** `nucleon ota …`: exit 0 on success, 1 when the server refuses or cannot be reached, 2 on usage errors. */
export async function ota(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [sub, ...rest] = positionals;
  switch (sub) {
    case 'add': {
      const [file, extra] = rest;
      if (file === undefined || extra !== undefined) return usage('ota add takes one file');
      if (values.version === undefined) return usage('ota add needs --version <id>, e.g. --version 1.2.3-4-g965b9df');
      if (!parseVersionId(values.version)) return usage(`--version ${values.version} is not major.minor.patch-commit-hash (e.g. 1.2.3-4-g965b9df)`);
      if (values.type !== 'primary' && values.type !== 'secondary') return usage(`--type must be primary or secondary, got ${values.type}`);
      const image = { id: values.version, imageType: values.type, ...(values.description !== undefined ? { description: values.description } : {}) };
      const result = await withAdmin(values, (client) => client.addImage(file, image));
      if (values.json) printJson(result);
      else {
        const added = result as { image?: ImageInfo; created?: boolean };
        const info = added.image;
        process.stdout.write(
          info
            ? `${added.created === false ? 'already present' : 'added'}: image ${info.id} (${info.imageType}, ${formatBytes(info.size)}, sha256 ${info.sha256})\n`
            : `added: image ${image.id}\n`,
        );
      }
      return 0;
    }
    case 'list': {
      if (rest.length > 0) return usage('ota list takes no arguments');
      const { images } = await withAdmin(values, (client) => client.request<{ images: ImageInfo[] }>(otaActions.list));
      if (values.json) printJson(images);
      else {
        const rows = images.map((i) => [i.id, i.imageType, formatBytes(i.size), i.dateAdded, i.sha256.slice(0, 12), i.description ?? '']);
        process.stdout.write(formatTable(['ID', 'TYPE', 'SIZE', 'ADDED', 'SHA256', 'DESCRIPTION'], rows));
      }
      return 0;
    }
    case 'link': {
      if (rest.length > 0) return usage('ota link takes only options');
      if (values.device === undefined && values.group === undefined) return usage('ota link needs --device and/or --group');
      const args = defined({ device: values.device, group: values.group, image: values.image, force: values.force || undefined });
      const result = await withAdmin(values, (client) => client.request(otaActions.link, args));
      if (values.json) printJson(result);
      else process.stdout.write(`linked: ${describeLink(result)}\n`);
      return 0;
    }
    case 'unlink': {
      if (rest.length > 0) return usage('ota unlink takes only options');
      if (values.device === undefined && values.group === undefined) return usage('ota unlink needs --device and/or --group');
      const result = await withAdmin(values, (client) => client.request(otaActions.unlink, defined({ device: values.device, group: values.group })));
      if (values.json) printJson(result);
      else process.stdout.write(`unlinked: ${values.device !== undefined ? `device ${values.device}` : `group ${values.group ?? ''}`}\n`);
      return 0;
    }
    case 'remove': {
      const [id, extra] = rest;
      if (id === undefined || extra !== undefined) return usage('ota remove takes one image id');
      const result = await withAdmin(values, (client) => client.request(otaActions.remove, { id }));
      if (values.json) printJson(result);
      else process.stdout.write(`removed: image ${id}\n`);
      return 0;
    }
    default:
      return usage(`${sub === undefined ? 'missing command' : `unknown command "${sub}"`}; expected one of ${Object.keys(otaActions).join(', ')}`);
  }
}

function usage(problem: string): number {
  process.stderr.write(`nucleon ota: ${problem} (see nucleon ota --help)\n`);
  return 2;
}

function defined(values: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined));
}

function describeLink(result: unknown): string {
  const link = result as { group?: string; imageId?: string; deviceUid?: string; affected?: string[] } | null;
  if (!link || typeof link !== 'object') return 'done';
  const target = `${link.deviceUid !== undefined ? `device ${link.deviceUid} in ` : ''}group ${link.group ?? '?'} → ${link.imageId !== undefined ? `image ${link.imageId}` : 'no image'}`;
  const notified = link.affected && link.affected.length > 0 ? ` (${link.affected.length} device(s) told)` : '';
  return `${target}${notified}`;
}
