import { open, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { syncDirectory } from '../util/fs.js';

/**
 * How far past the last number handed out the ingest log may number records
 * before it must write a new lease. After a crash the log goes on after the
 * lease, so at most this many numbers are skipped (u48 numbers last for 2.8
 * hundred million crashes).
 */
export const LEASE_SIZE = 1_000_000;

/**
 * `<log dir>/seq-lease`: the highest sequence number the ingest log may hand
 * out, written and synced before it does. Runners see an event as soon as it
 * is appended, before it is on disk; a crash may lose such an event, and
 * without the lease the next run would give its number (its id) to another
 * message, which a runner that recognises replays by id would then skip.
 * After a crash the log resumes past the lease; after a clean close the
 * lease is set to the last number used, so no number is skipped.
 */
export async function readLease(dir: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(leasePath(dir), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const value = Number(text.trim());
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${leasePath(dir)} holds no sequence number (got ${JSON.stringify(text.slice(0, 40))})`);
  return value;
}

/** Replaces the lease durably: synced file, renamed, synced directory. */
export async function writeLease(dir: string, seq: number): Promise<void> {
  const temporary = `${leasePath(dir)}.tmp`;
  const handle = await open(temporary, 'w');
  try {
    await handle.writeFile(`${String(seq)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, leasePath(dir));
  await syncDirectory(dir);
}

function leasePath(dir: string): string {
  return path.join(dir, 'seq-lease');
}
