import { open } from 'node:fs/promises';

/** Makes a created, renamed or deleted directory entry durable (fsync of the directory). */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
