/**
 * Generates README's configuration reference from config.toml, the file that
 * documents every key. `node --import tsx scripts/config-reference.ts` rewrites
 * the README block; test/unit/config-docs.test.ts fails when the two drift apart.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BEGIN = '<!-- config-reference:begin (generated from config.toml by scripts/config-reference.ts) -->';
export const END = '<!-- config-reference:end -->';

export interface DocumentedKey {
  section: string;
  key: string;
  value: string;
  comment: string;
  /** Shown commented out in config.toml: an optional section or a secret. */
  commented: boolean;
}

/** Reads `key = value  # comment` lines, including commented-out ones, per section. */
export function documentedKeys(toml: string): DocumentedKey[] {
  const keys: DocumentedKey[] = [];
  let section = '';
  for (const raw of toml.split('\n')) {
    const commented = /^#\s*[[a-z_]/.test(raw) && !/^#\s+[A-Z]/.test(raw);
    const line = commented ? raw.replace(/^#\s*/, '') : raw;
    const header = /^\[([a-z_.]+)\]\s*(#.*)?$/.exec(line);
    if (header) {
      section = header[1] ?? '';
      continue;
    }
    const entry = /^([a-z0-9_]+)\s*=\s*((?:"[^"]*"|\[[^\]]*\]|[^#\s]+))\s*(?:#\s*(.*))?$/.exec(line);
    if (!entry || (commented && !/^#\s*[a-z0-9_]+\s*=/.test(raw))) continue;
    keys.push({ section, key: entry[1] ?? '', value: entry[2] ?? '', comment: (entry[3] ?? '').trim(), commented });
  }
  return keys;
}

export function configReference(toml: string): string {
  const rows = documentedKeys(toml).map((k) => {
    const name = `\`${k.section}.${k.key}\``;
    const value = k.value.replace(/\|/g, '\\|');
    const comment = k.comment.replace(/\|/g, '\\|');
    return `| ${name} | \`${value}\`${k.commented ? ' (example)' : ''} | ${comment} |`;
  });
  return [BEGIN, '', '| key | default | meaning |', '|---|---|---|', ...rows, '', END].join('\n');
}

export function replaceBlock(readme: string, block: string): string {
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error('README.md has no config-reference block');
  return readme.slice(0, start) + block + readme.slice(end + END.length);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const readmePath = path.join(root, 'README.md');
  const block = configReference(readFileSync(path.join(root, 'config.toml'), 'utf8'));
  writeFileSync(readmePath, replaceBlock(readFileSync(readmePath, 'utf8'), block));
  process.stdout.write('README.md configuration reference updated\n');
}
