import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** Nucleon's version from package.json (the file sits one level above both src/ and dist/). */
export function nucleonVersion(): string {
  cached ??= (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return cached;
}
