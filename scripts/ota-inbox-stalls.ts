// What holds up the OTA runner's inbox, measured beside one device that
// downloads 1 KiB chunks one after another (as Pyrinas firmware does):
//   1. a reconnect storm: N devices each send a Check (Pyrinas firmware asks
//      on every connect); how long until every Check was answered and saved;
//   2. an operator storing an image of M MiB from a file (OtaNewPackage, as
//      the admin upload does); how long the store took.
// For each, the waits of the chunk answers meanwhile. One process, a real
// EventBroker and LevelStore in a temporary directory under os.tmpdir().
//
//   node --import tsx scripts/ota-inbox-stalls.ts [devices] [imageMiB]
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { EventBroker } from '../src/broker/index.js';
import { validateConfig } from '../src/config/index.js';
import type { Event } from '../src/events.js';
import { silentLogger } from '../src/logger.js';
import { LocalPresence } from '../src/presence/index.js';
import { OtaRunner } from '../src/ota/runner.js';
import { LevelStore } from '../src/store/index.js';

const devices = Number(process.argv[2] ?? 2000);
const imageMiB = Number(process.argv[3] ?? 64);
const IMAGE = '2.0.0-0-gstorm01';
const UPLOADED = '3.0.0-0-gupload1';
const CHUNK = 1024;

const dir = await mkdtemp(path.join(os.tmpdir(), 'nucleon-ota-stalls-'));
const logger = silentLogger();
const config = validateConfig({ store: { path: path.join(dir, 'data') }, certs: { dir: path.join(dir, 'certs') }, ota: { http: { host: '127.0.0.1', port: 0, tls: false } } });
const store = new LevelStore(path.join(dir, 'data', 'kv'));
await store.open();
const broker = new EventBroker({ inboxSize: 4096, maxWaiters: 4096, logger, metrics: new Registry() });
broker.start();

let answers = 0;
let lastAnswerAt = 0;
let saved = 0;
let lastSavedAt = 0;
let uploadedAt = 0;
let chunkAskedAt = 0;
let chunkWaits: number[] = [];
let askNextChunk: () => Promise<void> = async () => undefined;
broker.register({
  type: 'NewRunner',
  name: 'devices',
  accepts: ['OtaResponse', 'OtaDownloadResponse', 'OtaCommandResult', 'DeviceFirmwareUpdated'],
  inbox: {
    handle: (event: Event) => {
      if (event.type === 'OtaResponse' && event.uid !== 'downloader') {
        answers++;
        lastAnswerAt = performance.now();
      }
      if (event.type === 'DeviceFirmwareUpdated' && event.state.lastCheckAt !== undefined && event.state.uid !== 'downloader') {
        saved++;
        lastSavedAt = performance.now();
      }
      if (event.type === 'OtaCommandResult' && event.correlationId === 'upload') {
        if (event.error) throw new Error(`upload failed: ${event.error.message}`);
        uploadedAt = performance.now();
      }
      if (event.type === 'OtaDownloadResponse') {
        chunkWaits.push(performance.now() - chunkAskedAt);
        askNextChunk().catch((error: unknown) => console.error(error));
      }
    },
  },
});
const ota = new OtaRunner({});
await ota.start({ config, broker, logger, metrics: new Registry(), store, presence: new LocalPresence('stalls', logger) });
const size = 256 * 1024;
await ota.addImage({ id: IMAGE, imageType: 'primary', source: { kind: 'bytes', data: Buffer.alloc(size, 7) } });
await ota.link({ deviceUid: 'downloader', imageId: IMAGE });
for (let i = 0; i < devices; i++) await ota.link({ deviceUid: `storm-${i}`, imageId: IMAGE });
// The links pushed their packages: only the storm's own answers count.
await broker.drain(5000);
answers = 0;

let offset = 0;
let downloading = true;
askNextChunk = async () => {
  if (!downloading) return;
  offset = (offset + CHUNK) % size;
  chunkAskedAt = performance.now();
  await broker.publish({ type: 'OtaRequest', uid: 'downloader', cmd: 'DownloadBytes', id: IMAGE, startPos: offset, endPos: offset + CHUNK, receivedAt: Date.now() });
};

function waits(): string {
  const sorted = [...chunkWaits].sort((a, b) => a - b);
  const pick = (q: number) => (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(1);
  return `${chunkWaits.length} chunks for the downloading device, wait p50 ${pick(0.5)} ms, p99 ${pick(0.99)} ms, max ${pick(1)} ms`;
}

async function until(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// 1. The Check storm.
chunkWaits = [];
await askNextChunk();
let start = performance.now();
for (let i = 0; i < devices; i++) await broker.publish({ type: 'OtaRequest', uid: `storm-${i}`, cmd: 'Check', receivedAt: Date.now() });
await until(() => answers >= devices && saved >= devices, 'every Check answered and saved');
console.log(`${devices} Checks: answered in ${(lastAnswerAt - start).toFixed(0)} ms, saved by ${(lastSavedAt - start).toFixed(0)} ms; meanwhile ${waits()}`);

// 2. An image stored from a file.
const file = path.join(dir, 'upload.bin');
await writeFile(file, randomBytes(imageMiB * 1024 * 1024));
chunkWaits = [];
start = performance.now();
await broker.publish({ type: 'OtaNewPackage', correlationId: 'upload', id: UPLOADED, imageType: 'primary', source: { kind: 'file', path: file } });
await until(() => uploadedAt > 0, 'the image stored');
console.log(`a ${imageMiB} MiB image stored in ${(uploadedAt - start).toFixed(0)} ms; meanwhile ${waits()}`);

downloading = false;
await broker.drain(5000);
await ota.stop();
await store.close();
await rm(dir, { recursive: true, force: true });
