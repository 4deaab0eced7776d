// A reconnect storm as the OTA runner sees it: N devices each send a Check
// (Pyrinas firmware asks on every connect) while one device downloads chunks.
// Prints how long until every Check was answered and saved, and the waits of
// the chunk answers meanwhile: the OTA runner's inbox against synced store
// writes. One process, a real EventBroker and LevelStore in a
// temporary directory (on the disk under os.tmpdir()).
//
//   node --import tsx scripts/ota-check-storm.ts [devices]
import { mkdtemp, rm } from 'node:fs/promises';
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
const IMAGE = '2.0.0-0-gstorm01';
const CHUNK = 1024;

const dir = await mkdtemp(path.join(os.tmpdir(), 'nucleon-check-storm-'));
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
let chunkAskedAt = 0;
let chunkWaits: number[] = [];
let askNextChunk: () => Promise<void> = async () => undefined;
broker.register({
  type: 'NewRunner',
  name: 'storm-devices',
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
      if (event.type === 'OtaDownloadResponse') {
        chunkWaits.push(performance.now() - chunkAskedAt);
        askNextChunk().catch((error: unknown) => console.error(error));
      }
    },
  },
});
const ota = new OtaRunner({});
await ota.start({ config, broker, logger, metrics: new Registry(), store, presence: new LocalPresence('storm', logger) });
const size = 256 * 1024;
await ota.addImage({ id: IMAGE, imageType: 'primary', source: { kind: 'bytes', data: Buffer.alloc(size, 7) } });
await ota.link({ deviceUid: 'downloader', imageId: IMAGE });
for (let i = 0; i < devices; i++) await ota.link({ deviceUid: `storm-${i}`, imageId: IMAGE });

let offset = 0;
let downloading = true;
askNextChunk = async () => {
  if (!downloading) return;
  offset = (offset + CHUNK) % size;
  chunkAskedAt = performance.now();
  await broker.publish({ type: 'OtaRequest', uid: 'downloader', cmd: 'DownloadBytes', id: IMAGE, startPos: offset, endPos: offset + CHUNK, receivedAt: Date.now() });
};
// The links pushed their packages: only the storm's own answers count.
await broker.drain(5000);
answers = 0;
chunkWaits = [];
await askNextChunk();

const start = performance.now();
for (let i = 0; i < devices; i++) await broker.publish({ type: 'OtaRequest', uid: `storm-${i}`, cmd: 'Check', receivedAt: Date.now() });
const deadline = Date.now() + 120_000;
while ((answers < devices || saved < devices) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
downloading = false;
const answeredMs = lastAnswerAt - start;
const savedMs = lastSavedAt - start;
const sorted = [...chunkWaits].sort((a, b) => a - b);
const pick = (q: number) => (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(1);
console.log(
  `${devices} devices: ${answers} Checks answered in ${answeredMs.toFixed(0)} ms; ${saved} saved by ${savedMs.toFixed(0)} ms; ` +
    `meanwhile ${chunkWaits.length} chunks for one downloading device, wait p50 ${pick(0.5)} ms, p99 ${pick(0.99)} ms, max ${pick(1)} ms`,
);
await ota.stop();
await broker.drain(5000);
await store.close();
await rm(dir, { recursive: true, force: true });
