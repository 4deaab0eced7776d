// What preparing the ingest log's spare segment (64 MiB of zeros, see
// prepareSpare in src/ingest/segment-log.ts) does to other fsyncs on the same
// file system: a probe appends a line to a small file and fsyncs it every
// 2 ms while the zeros are written, synced once at the end ("once") or after
// every MiB ("per-mib", what Nucleon does). On ext4 with data=ordered, an
// fsync may have to wait for other files' dirty data.
//
//   node --import tsx scripts/spare-segment-fsync.ts [dir] [rounds]
import { mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const MIB = 1024 * 1024;
const SEGMENT_BYTES = 64 * MIB;

async function zeroFill(file: string, syncEveryMib: boolean): Promise<number> {
  const started = performance.now();
  const handle = await open(file, 'w');
  try {
    const zeros = Buffer.alloc(MIB);
    for (let at = 0; at < SEGMENT_BYTES; at += MIB) {
      await handle.write(zeros, 0, MIB, at);
      if (syncEveryMib) await handle.datasync();
    }
    await handle.datasync();
  } finally {
    await handle.close();
  }
  return performance.now() - started;
}

async function probe(file: string, running: () => boolean): Promise<number[]> {
  const handle = await open(file, 'w');
  const latencies: number[] = [];
  try {
    // Bounded: at most 10,000 fsyncs whatever happens to the zero fill.
    for (let i = 0; running() && i < 10_000; i++) {
      const started = performance.now();
      await handle.write(`record ${i}\n`);
      await handle.sync();
      latencies.push(performance.now() - started);
      await sleep(2);
    }
  } finally {
    await handle.close();
  }
  return latencies.sort((a, b) => a - b);
}

const dir = await mkdtemp(path.join(process.argv[2] ?? os.tmpdir(), 'spare-fsync-'));
const rounds = Number(process.argv[3] ?? 3);
try {
  for (let round = 1; round <= rounds; round++) {
    for (const mode of ['once', 'per-mib'] as const) {
      let running = true;
      const probing = probe(path.join(dir, 'probe'), () => running);
      await sleep(50);
      const fillMs = await zeroFill(path.join(dir, 'spare'), mode === 'per-mib');
      await sleep(50);
      running = false;
      const latencies = await probing;
      const at = (q: number) => (latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? 0).toFixed(2);
      console.log(`round ${round} ${mode.padEnd(7)} zero fill ${fillMs.toFixed(0)} ms; probe fsyncs ${latencies.length}: p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${at(1)} ms`);
      await rm(path.join(dir, 'spare'));
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
