import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';

/**
 * The committed position of each durable runner, by runner name, in
 * `<log dir>/cursors.json` (replaced by write + rename).
 *
 * Never synced: a cursor that is older after a power cut only means events
 * handed out again (duplicates a handler can recognise by their log id),
 * never lost ones, because a segment is deleted only after every cursor has
 * passed it and a cursor is saved no further than the durable head. A file that
 * does not parse or fails its checksum is reported and ignored: every runner
 * then starts from the oldest segment (more duplicates, nothing lost).
 */
export type Cursors = Record<string, number>;

interface Stored {
  version: 1;
  cursors: Cursors;
  crc: number;
}

export function cursorPath(dir: string): string {
  return path.join(dir, 'cursors.json');
}

function checksum(cursors: Cursors): number {
  return crc32(JSON.stringify(cursors));
}

/** The stored cursors; undefined when there is no file, or why it cannot be used. */
export async function readCursors(dir: string): Promise<{ cursors: Cursors | undefined; problem?: string }> {
  let text: string;
  try {
    text = await readFile(cursorPath(dir), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { cursors: undefined };
    throw error;
  }
  let parsed: Partial<Stored>;
  try {
    parsed = JSON.parse(text) as Partial<Stored>;
  } catch (error) {
    return { cursors: undefined, problem: `not JSON (${(error as Error).message})` };
  }
  const cursors = parsed.cursors;
  if (parsed.version !== 1 || typeof cursors !== 'object' || cursors === null) return { cursors: undefined, problem: 'unknown layout' };
  if (!Object.values(cursors).every((seq) => Number.isSafeInteger(seq) && seq >= 0)) return { cursors: undefined, problem: 'a cursor is not a sequence number' };
  if (checksum(cursors) !== parsed.crc) return { cursors: undefined, problem: 'checksum mismatch' };
  return { cursors };
}

export async function writeCursors(dir: string, cursors: Cursors): Promise<void> {
  const stored: Stored = { version: 1, cursors, crc: checksum(cursors) };
  const temporary = `${cursorPath(dir)}.tmp`;
  await writeFile(temporary, `${JSON.stringify(stored)}\n`);
  await rename(temporary, cursorPath(dir));
}
