// The byte-budget measurement of issue 18 at full size, run by hand (too heavy
// for CI on a busy 2-core machine; test/integration/campaign-budget.test.ts
// runs a small one):
//
//   node --import tsx scripts/campaign-budget.ts [devices=200] [bytesPerSecond=2000000] [maxConcurrent=50] [imageKiB=512] [chunk=4096]
//
// This process holds a whole Nucleon (MQTT/TLS, OTA, campaigns); a child
// process holds the fleet (mqtt.js clients with device certificates,
// DownloadBytes chunks of `chunk` bytes), so the devices do not take the
// server's CPU. The child prints the bytes per second of every full 10 s
// window between the ramp (2 s after the first byte) and the tail (fewer than
// maxConcurrent devices left), and the most devices that downloaded at once.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { campaignRunnerOf } from '../src/campaigns/index.js';
import { issueDeviceCertificate } from '../src/certs/index.js';
import { silentLogger } from '../src/logger.js';
import type { MqttRunner } from '../src/mqtt/index.js';
import { createNucleon } from '../src/nucleon.js';
import { otaRunnerOf } from '../src/ota/index.js';
import { BudgetFleet, windowRates } from '../test/helpers/budget-fleet.js';
import { baseConfig } from '../test/helpers/mqtt-support.js';
import { firmware } from '../test/helpers/ota-harness.js';

const WINDOW_MS = 10_000;
const RAMP_MS = 2000;
const IMAGE = '3.0.0-1-gbench01';

interface Settings {
  devices: number;
  budget: number;
  slots: number;
  imageKiB: number;
  chunk: number;
}

const uidOf = (i: number) => `bench-${String(i).padStart(4, '0')}`;

async function server(settings: Settings): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nucleon-budget-'));
  const nucleon = createNucleon(baseConfig(dir, { ota: { enabled: true, max_chunk_size: settings.chunk, http: { enabled: false, host: '127.0.0.1', port: 0 } } }), { logger: silentLogger() });
  await nucleon.start();
  try {
    const size = settings.imageKiB * 1024;
    await otaRunnerOf(nucleon).addImage({ id: IMAGE, imageType: 'primary', source: { kind: 'bytes', data: firmware(size, 3) } });
    const uids = Array.from({ length: settings.devices }, (_, i) => uidOf(i));
    const devicesDir = path.join(dir, 'devices');
    for (const uid of uids) await issueDeviceCertificate({ ...nucleon.config.certs }, uid, devicesDir);
    const port = (nucleon.runner('mqtt') as MqttRunner).port('tls') ?? 0;
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--fleet', JSON.stringify({ ...settings, port, devicesDir })], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    for await (const line of createInterface({ input: child.stdout })) {
      if (line === 'ready') {
        await campaignRunnerOf(nucleon).create({ id: 'bench', imageId: IMAGE, target: { devices: uids }, stages: [{ percent: 100 }], budget: { bytesPerSecond: settings.budget, maxConcurrent: settings.slots } });
      } else {
        console.log(line);
      }
    }
    const code = await exited;
    if (code !== 0) throw new Error(`the fleet process exited with ${code}`);
  } finally {
    await nucleon.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function fleetProcess(settings: Settings & { port: number; devicesDir: string }): Promise<void> {
  const fleet = new BudgetFleet({ mqttPort: settings.port, chunk: settings.chunk });
  try {
    const ca = await readFile(path.join(settings.devicesDir, 'ca.crt'));
    for (let i = 0; i < settings.devices; i++) {
      const uid = uidOf(i);
      await fleet.add(uid, 'mqtt', { ca, cert: await readFile(path.join(settings.devicesDir, `${uid}.crt`)), key: await readFile(path.join(settings.devicesDir, `${uid}.key`)) });
    }
    console.log('ready');
    const started = performance.now();
    const size = settings.imageKiB * 1024;
    const limitMs = ((settings.devices * size) / settings.budget) * 3000 + 60_000;
    for (let waited = 0; fleet.finished < settings.devices && fleet.errors.length === 0; waited += 500) {
      if (waited > limitMs) throw new Error(`only ${fleet.finished} of ${settings.devices} devices finished in ${limitMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const failure = fleet.errors[0];
    if (failure) throw failure;
    const first = fleet.pieces.reduce((earliest, piece) => Math.min(earliest, piece.at), Number.POSITIVE_INFINITY);
    const tail = fleet.finishTimes()[settings.devices - settings.slots] ?? Number.POSITIVE_INFINITY;
    const rates = windowRates(fleet.pieces, first + RAMP_MS, tail, WINDOW_MS);
    const worst = Math.max(...rates.map((rate) => Math.abs(rate - settings.budget) / settings.budget));
    console.log(
      JSON.stringify({
        devices: settings.devices,
        budgetBytesPerSecond: settings.budget,
        maxConcurrent: settings.slots,
        imageBytes: size,
        chunkBytes: settings.chunk,
        totalSeconds: Math.round((performance.now() - started) / 100) / 10,
        windowsBytesPerSecond: rates.map(Math.round),
        worstDeviationPercent: Math.round(worst * 1000) / 10,
        maxDownloadingAtOnce: fleet.maxActive,
        loadAverage: os.loadavg().map((load) => Math.round(load * 100) / 100),
      }),
    );
  } finally {
    await fleet.close();
  }
}

const args = process.argv.slice(2);
const run =
  args[0] === '--fleet'
    ? fleetProcess(JSON.parse(args[1] ?? '{}') as Settings & { port: number; devicesDir: string })
    : (() => {
        const [devices = 200, budget = 2_000_000, slots = 50, imageKiB = 512, chunk = 4096] = args.map(Number);
        return server({ devices, budget, slots, imageKiB, chunk });
      })();
run.catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
