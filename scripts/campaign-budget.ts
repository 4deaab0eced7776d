// The byte-budget measurement of issue 18 at full size, run by hand (too heavy
// for CI on a busy 2-core machine; test/integration/campaign-budget.test.ts
// runs a small one):
//
//   node --import tsx scripts/campaign-budget.ts [devices=200] [bytesPerSecond=2000000] [maxConcurrent=50] [imageKiB=512] [chunk=4096]
//
// One process holds a whole Nucleon (MQTT/TLS, OTA, campaigns) and the fleet
// (mqtt.js clients with device certificates, DownloadBytes chunks of `chunk`
// bytes). It
// prints the bytes per second of every full 10 s window between the ramp
// (2 s after the first byte) and the tail (fewer than maxConcurrent devices
// left), and the most devices that downloaded at once.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { campaignRunnerOf } from '../src/campaigns/index.js';
import { issueDeviceCertificate } from '../src/certs/index.js';
import { silentLogger } from '../src/logger.js';
import type { MqttRunner } from '../src/mqtt/index.js';
import { createNucleon } from '../src/nucleon.js';
import { otaRunnerOf } from '../src/ota/index.js';
import { BudgetFleet, windowRates } from '../test/helpers/budget-fleet.js';
import { baseConfig } from '../test/helpers/mqtt-support.js';
import { firmware } from '../test/helpers/ota-harness.js';

const [devices = 200, budget = 2_000_000, slots = 50, imageKiB = 512, CHUNK = 4096] = process.argv.slice(2).map(Number);
const WINDOW_MS = 10_000;
const RAMP_MS = 2000;
const IMAGE = '3.0.0-1-gbench01';

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nucleon-budget-'));
  const nucleon = createNucleon(baseConfig(dir, { ota: { enabled: true, max_chunk_size: CHUNK, http: { enabled: false, host: '127.0.0.1', port: 0 } } }), { logger: silentLogger() });
  await nucleon.start();
  const fleet = new BudgetFleet({ mqttPort: (nucleon.runner('mqtt') as MqttRunner).port('tls') ?? 0, chunk: CHUNK });
  try {
    const size = imageKiB * 1024;
    await otaRunnerOf(nucleon).addImage({ id: IMAGE, imageType: 'primary', source: { kind: 'bytes', data: firmware(size, 3) } });
    const uids = Array.from({ length: devices }, (_, i) => `bench-${String(i).padStart(4, '0')}`);
    for (const uid of uids) {
      const files = await issueDeviceCertificate({ ...nucleon.config.certs }, uid, path.join(dir, 'devices'));
      await fleet.add(uid, 'mqtt', { ca: await readFile(files.caPath), cert: await readFile(files.certPath), key: await readFile(files.keyPath) });
    }
    const started = performance.now();
    await campaignRunnerOf(nucleon).create({ id: 'bench', imageId: IMAGE, target: { devices: uids }, stages: [{ percent: 100 }], budget: { bytesPerSecond: budget, maxConcurrent: slots } });
    const limitMs = ((devices * size) / budget) * 3000 + 60_000;
    for (let waited = 0; fleet.finished < devices && fleet.errors.length === 0; waited += 500) {
      if (waited > limitMs) throw new Error(`only ${fleet.finished} of ${devices} devices finished in ${limitMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const failure = fleet.errors[0];
    if (failure) throw failure;
    const first = Math.min(...fleet.pieces.map((piece) => piece.at));
    const tail = fleet.finishTimes()[devices - slots] ?? Number.POSITIVE_INFINITY;
    const rates = windowRates(fleet.pieces, first + RAMP_MS, tail, WINDOW_MS);
    const worst = Math.max(...rates.map((rate) => Math.abs(rate - budget) / budget));
    console.log(
      JSON.stringify({
        devices,
        budgetBytesPerSecond: budget,
        maxConcurrent: slots,
        imageBytes: size,
        chunkBytes: CHUNK,
        totalSeconds: Math.round((performance.now() - started) / 100) / 10,
        windowsBytesPerSecond: rates.map(Math.round),
        worstDeviationPercent: Math.round(worst * 1000) / 10,
        maxDownloadingAtOnce: fleet.maxActive,
        loadAverage: os.loadavg().map((load) => Math.round(load * 100) / 100),
      }),
    );
  } finally {
    await fleet.close();
    await nucleon.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
