import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { syncDirectory } from '../util/fs.js';

/**
 * The log's own id (`<dir>/log-id`, 8 hex digits, written once and synced),
 * the first half of every event id `<log>:<seq>`: ids stay unique across
 * instances and cluster workers, each of which has its own log, and stable
 * across restarts of one.
 */
export async function loadLogId(dir: string): Promise<string> {
  const file = path.join(dir, 'log-id');
  try {
    const id = (await readFile(file, 'utf8')).trim();
    if (/^[0-9a-f]{8}$/.test(id)) return id;
    throw new Error(`${file} holds no log id (expected 8 hex digits, got ${JSON.stringify(id.slice(0, 40))})`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const id = randomBytes(4).toString('hex');
  await writeFile(file, `${id}\n`, { flag: 'wx', flush: true });
  await syncDirectory(dir);
  return id;
}
