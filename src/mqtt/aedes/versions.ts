import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

/**
 * The installed version of a package aedes depends on (or of aedes itself),
 * read from its package.json beside the entry point, since their `exports`
 * maps do not expose it. Used in guard messages, so a mismatch names what
 * was found.
 */
export function installedVersion(name: string): string {
  try {
    const entry = name === 'aedes' ? require.resolve('aedes') : createRequire(require.resolve('aedes')).resolve(name);
    let dir = path.dirname(entry);
    for (let i = 0; i < 4; i++) {
      const file = path.join(dir, 'package.json');
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name && typeof pkg.version === 'string') return pkg.version;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
      dir = path.dirname(dir);
    }
    return 'unknown';
  } catch (error) {
    return `not found (${(error as Error).message})`;
  }
}
