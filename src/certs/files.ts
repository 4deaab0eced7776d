import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Private keys are readable by the owner only. */
export const KEY_MODE = 0o600;
export const CERT_MODE = 0o644;

/**
 * Writes a file so that readers see the old content or the new, never half:
 * a temporary file in the same folder, then a rename.
 */
export async function writeFileAtomic(file: string, content: string, mode: number): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(temporary, content, { mode, flag: 'wx' });
    // writeFile's mode is filtered by the umask; make sure keys end up 0600 regardless.
    await chmod(temporary, mode);
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

export async function readText(file: string): Promise<string> {
  return readFile(file, 'utf8');
}
