// The event loop's CPU per ingest-log commit write, one way against the
// other: FileHandle.write (a promise made in C++) against fs.write's callback
// on the same descriptor wrapped in a promise (writeFully in
// src/ingest/segment-log.ts, called here). Each writes 120 bytes with O_DSYNC, one
// after the other, as commits under light load do; the main thread's CPU is
// read from /proc/self/task/<pid>/schedstat (Linux), the thread pool's is not
// in it.
//
//   node --import tsx scripts/log-write-cost.ts [dir] [writes] [rounds]
import { constants, readFileSync } from 'node:fs';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeFully } from '../src/ingest/segment-log.js';

const RECORD = Buffer.alloc(120, 7);

/** CPU time of this process's main thread so far, in µs. */
function mainThreadUs(): number {
  return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1000;
}

type Way = (handle: FileHandle, position: number) => Promise<number>;

const WAYS: Record<string, Way> = {
  'FileHandle.write': async (handle, position) => (await handle.write(RECORD, 0, RECORD.length, position)).bytesWritten,
  // The log's own write (fs.write's callback on the descriptor).
  'fs.write callback': async (handle, position) => {
    await writeFully(handle, RECORD, RECORD.length, position);
    return RECORD.length;
  },
};

async function measure(dir: string, way: Way, writes: number): Promise<{ mainUs: number; wallUs: number }> {
  const file = path.join(dir, 'log-write-cost.seg');
  const handle = await open(file, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC | constants.O_DSYNC);
  try {
    const main = mainThreadUs();
    const wall = performance.now();
    let position = 0;
    for (let i = 0; i < writes; i++) position += await way(handle, position);
    return { mainUs: (mainThreadUs() - main) / writes, wallUs: ((performance.now() - wall) * 1000) / writes };
  } finally {
    await handle.close();
    await rm(file, { force: true });
  }
}

const [dirArg, writesArg = '10000', roundsArg = '2'] = process.argv.slice(2);
const dir = dirArg ?? (await mkdtemp(path.join(os.tmpdir(), 'nucleon-log-write-')));
try {
  for (let round = 1; round <= Number(roundsArg); round++) {
    for (const [name, way] of Object.entries(WAYS)) {
      const { mainUs, wallUs } = await measure(dir, way, Number(writesArg));
      process.stdout.write(`round ${round} ${name.padEnd(18)} main thread ${mainUs.toFixed(1)} µs/write, wall ${wallUs.toFixed(1)} µs/write\n`);
    }
  }
} finally {
  if (!dirArg) await rm(dir, { recursive: true, force: true });
}
