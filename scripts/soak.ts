// `npm run soak [-- --minutes N] [-- --faults]`: one Nucleon process (the
// reliability test instance, with an echo app runner) under mixed traffic for N
// minutes (default 10): app messages at QoS 1 (half of them echoed back to the
// device), telemetry, OTA downloads over MQTT (DownloadBytes) and HTTP ranges,
// admin requests with a live telemetry stream, and a canary round trip every
// second. Every sample prints RSS, event-loop lag (from /metrics) and traffic;
// the verdict fits a line to RSS over the second half and fails on a growth
// trend. `--faults` then runs the 60 s InfluxDB outage test and the ingest
// log's crash test with 20 SIGKILLs per durability mode.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { TestContext } from 'node:test';
import { parseArgs } from 'node:util';
import { encode } from 'cbor-x';
import type { MqttClient } from 'mqtt';
import WebSocket from 'ws';
import { delay, repoRoot } from '../test/helpers/index.js';
import { ADMIN_KEY, Canary, connectDevice, metricValue, round, startInstance, type Instance } from '../test/helpers/reliability-support.js';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '10' }, faults: { type: 'boolean', default: false } } });
const minutes = Number(values.minutes);
if (!Number.isFinite(minutes) || minutes <= 0) throw new Error('--minutes must be a positive number');
const durationMs = minutes * 60_000;
const sampleEveryMs = Math.max(5000, Math.min(30_000, durationMs / 40));
const APP_DEVICES = 8;
const TEL_DEVICES = 8;
const IMAGE_ID = '5.0.0-1-g965b9df';
const IMAGE_SIZE = 256 * 1024;

/** The test helpers clean up through `t.after`; outside node:test this collects the same callbacks. */
class Cleanup {
  private readonly callbacks: (() => unknown)[] = [];
  after(callback: () => unknown): void {
    this.callbacks.push(callback);
  }
  async run(): Promise<void> {
    for (const callback of this.callbacks.reverse()) {
      try {
        await callback();
      } catch (error) {
        process.stderr.write(`cleanup failed: ${String(error)}\n`);
      }
    }
  }
}

interface Traffic {
  app: number;
  echoes: number;
  telemetry: number;
  otaChunks: number;
  httpBytes: number;
  adminReplies: number;
  errors: string[];
}

const until = Date.now() + durationMs;
const running = () => Date.now() < until;

function note(traffic: Traffic, what: string, error: unknown): void {
  if (traffic.errors.length < 20) traffic.errors.push(`${what}: ${error instanceof Error ? error.message : String(error)}`);
}

async function appLoop(client: MqttClient, uid: string, traffic: Traffic): Promise<void> {
  client.on('message', (topic) => {
    if (topic.includes('/app/s/')) traffic.echoes++;
  });
  await client.subscribeAsync(`${uid}/app/s/#`, { qos: 1 });
  for (let n = 0; running(); n++) {
    await client.publishAsync(`${uid}/app/p/${n % 2 === 0 ? 'echo' : 'data'}`, Buffer.from(encode({ n, t: Date.now() })), { qos: 1 });
    traffic.app++;
    await delay(20);
  }
}

async function telemetryLoop(client: MqttClient, uid: string, traffic: Traffic): Promise<void> {
  for (let n = 0; running(); n++) {
    await client.publishAsync(`${uid}/tel/p`, Buffer.from(encode(new Map<number, string | number>([[0, '5.0.0-1-g965b9df'], [1, n % 140], [2, -60]]))), { qos: 1 });
    traffic.telemetry++;
    await delay(200);
  }
}

/** Downloads the image over MQTT in 4 KiB DownloadBytes chunks, again and again. */
async function otaMqttLoop(client: MqttClient, uid: string, traffic: Traffic): Promise<void> {
  let waiting: (() => void) | undefined;
  client.on('message', (topic) => {
    if (topic === `${uid}/ota/s/d`) {
      traffic.otaChunks++;
      waiting?.();
    }
  });
  await client.subscribeAsync(`${uid}/ota/s/#`, { qos: 1 });
  for (let start = 0; running(); start = (start + 4096) % IMAGE_SIZE) {
    const answered = new Promise<void>((resolve) => (waiting = resolve));
    await client.publishAsync(`${uid}/ota/p`, Buffer.from(encode(new Map<number, string | number>([[0, 2], [1, IMAGE_ID], [2, start], [3, start + 4096]]))), { qos: 1 });
    await Promise.race([answered, delay(10_000)]);
  }
}

async function httpLoop(instance: Instance, traffic: Traffic): Promise<void> {
  for (let start = 0; running(); start = (start + 2048) % IMAGE_SIZE) {
    try {
      const response = await fetch(`http://127.0.0.1:${instance.ports.ota}/images/${IMAGE_ID}`, { headers: { range: `bytes=${start}-${start + 2047}` } });
      traffic.httpBytes += (await response.arrayBuffer()).byteLength;
    } catch (error) {
      note(traffic, 'http download', error);
    }
    await delay(10);
  }
}

async function adminLoop(instance: Instance, traffic: Traffic): Promise<void> {
  const socket = new WebSocket(`ws://127.0.0.1:${instance.ports.admin}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  socket.on('message', (data: Buffer) => {
    if (data.toString().includes('"ok":')) traffic.adminReplies++;
  });
  socket.send(JSON.stringify({ id: 'sub', cmd: 'events.subscribe', args: { kinds: ['telemetry', 'device'] } }));
  for (let n = 0; running(); n++) {
    socket.send(JSON.stringify({ id: n, cmd: n % 2 === 0 ? 'devices.list' : 'images.list' }));
    await delay(200);
  }
  socket.close();
}

async function addImage(instance: Instance): Promise<void> {
  const image = Buffer.alloc(IMAGE_SIZE);
  for (let i = 0; i < image.length; i++) image[i] = (i * 31) & 0xff;
  const socket = new WebSocket(`ws://127.0.0.1:${instance.ports.admin}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  const reply = new Promise<string>((resolve) => socket.once('message', (data: Buffer) => resolve(data.toString())));
  socket.send(JSON.stringify({ id: 'add', cmd: 'images.add', args: { id: IMAGE_ID, data: image.toString('base64') } }));
  const text = await reply;
  socket.close();
  if (!text.includes('"ok":true')) throw new Error(`adding the soak image failed: ${text}`);
  process.stdout.write(`image ${IMAGE_ID}: ${IMAGE_SIZE} bytes, sha256 ${createHash('sha256').update(image).digest('hex').slice(0, 16)}…\n`);
}

/** Least-squares slope of y over x. */
function slope(points: [number, number][]): number {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const sxy = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return sxx === 0 ? 0 : sxy / sxx;
}

async function main(): Promise<number> {
  const cleanup = new Cleanup();
  const t = cleanup as unknown as TestContext;
  try {
    const appUids = Array.from({ length: APP_DEVICES }, (_, i) => `soak-app-${i}`);
    const telUids = Array.from({ length: TEL_DEVICES }, (_, i) => `soak-tel-${i}`);
    const otaUids = ['soak-ota-0', 'soak-ota-1'];
    const instance = await startInstance(t, { certDevices: [...appUids, ...telUids, ...otaUids, 'soak-canary'] });
    process.stdout.write(`soak: ${minutes} min of mixed traffic against pid ${instance.process.child.pid}; a sample every ${sampleEveryMs / 1000} s\n`);
    await addImage(instance);
    const traffic: Traffic = { app: 0, echoes: 0, telemetry: 0, otaChunks: 0, httpBytes: 0, adminReplies: 0, errors: [] };
    const guard = (what: string, work: Promise<void>) => work.catch((error: unknown) => note(traffic, what, error));
    const canary = await Canary.start(t, instance, 'soak-canary');
    const loops = [
      ...(await Promise.all(appUids.map((uid) => connectDevice(t, instance, uid)))).map((client, i) => guard('app', appLoop(client, appUids[i] ?? '', traffic))),
      ...(await Promise.all(telUids.map((uid) => connectDevice(t, instance, uid)))).map((client, i) => guard('telemetry', telemetryLoop(client, telUids[i] ?? '', traffic))),
      ...(await Promise.all(otaUids.map((uid) => connectDevice(t, instance, uid)))).map((client, i) => guard('ota', otaMqttLoop(client, otaUids[i] ?? '', traffic))),
      guard('http', httpLoop(instance, traffic)),
      guard('http', httpLoop(instance, traffic)),
      guard('admin', adminLoop(instance, traffic)),
    ];

    const started = Date.now();
    const samples: { atS: number; rssMb: number; lagP99Ms: number; lagMeanMs: number }[] = [];
    const canaryMs: number[] = [];
    let canaryFailures = 0;
    let nextSample = started + sampleEveryMs;
    process.stdout.write('  t(s)   RSS(MB)  lag p99(ms)  lag mean(ms)  app/s  tel/s  ota chunks/s  http KiB/s  canary(ms)\n');
    let last = { ...traffic, at: started };
    while (running() && instance.alive()) {
      const before = Date.now();
      try {
        await canary.roundTrip(5000);
        canaryMs.push(Date.now() - before);
      } catch (error) {
        canaryFailures++;
        note(traffic, 'canary', error);
      }
      if (Date.now() >= nextSample) {
        nextSample += sampleEveryMs;
        const text = await instance.metricsText();
        const now = Date.now();
        const sample = {
          atS: round((now - started) / 1000, 0),
          rssMb: round(await instance.rssMb()),
          lagP99Ms: round(metricValue(text, 'nucleon_process_nodejs_eventloop_lag_p99_seconds') * 1000, 2),
          lagMeanMs: round(metricValue(text, 'nucleon_process_nodejs_eventloop_lag_mean_seconds') * 1000, 2),
        };
        samples.push(sample);
        const per = (a: number, b: number) => round((a - b) / ((now - last.at) / 1000), 0);
        const recent = canaryMs.slice(-10);
        process.stdout.write(
          `${String(sample.atS).padStart(6)} ${String(sample.rssMb).padStart(9)} ${String(sample.lagP99Ms).padStart(12)} ${String(sample.lagMeanMs).padStart(13)} ${String(per(traffic.app, last.app)).padStart(6)} ${String(per(traffic.telemetry, last.telemetry)).padStart(6)} ${String(per(traffic.otaChunks, last.otaChunks)).padStart(13)} ${String(per(traffic.httpBytes / 1024, last.httpBytes / 1024)).padStart(11)} ${String(Math.max(...recent, 0)).padStart(11)}\n`,
        );
        last = { ...traffic, at: now };
      }
      await delay(1000);
    }
    const alive = instance.alive();
    await Promise.all(loops);

    // Verdict: RSS over the second half should not trend upwards.
    const secondHalf = samples.filter((s) => s.atS >= durationMs / 2000);
    const perMinute = secondHalf.length >= 3 ? slope(secondHalf.map((s) => [s.atS / 60, s.rssMb])) : 0;
    const meanRss = secondHalf.reduce((sum, s) => sum + s.rssMb, 0) / Math.max(1, secondHalf.length);
    const projected = perMinute * (minutes / 2);
    // Allowed: under 5 % of the mean (or 5 MB) over the second half — GC sawtooth, not a leak.
    const allowed = Math.max(5, meanRss * 0.05);
    const growth = projected > allowed;
    const lagP99Max = Math.max(...samples.map((s) => s.lagP99Ms), 0);
    const sortedCanary = [...canaryMs].sort((a, b) => a - b);
    process.stdout.write(
      [
        '',
        `traffic: ${traffic.app} app messages (${traffic.echoes} echoes back), ${traffic.telemetry} telemetry, ${traffic.otaChunks} OTA chunks over MQTT, ${round(traffic.httpBytes / 1048576)} MiB over HTTP ranges, ${traffic.adminReplies} admin replies`,
        `canary: ${canaryMs.length} round trips, median ${sortedCanary[Math.floor(sortedCanary.length / 2)] ?? 0} ms, max ${sortedCanary.at(-1) ?? 0} ms, ${canaryFailures} failures`,
        `RSS: first ${samples[0]?.rssMb ?? 0} MB, last ${samples.at(-1)?.rssMb ?? 0} MB, max ${Math.max(...samples.map((s) => s.rssMb), 0)} MB; second-half slope ${round(perMinute, 2)} MB/min (${round(projected, 1)} MB over the half, allowed ${round(allowed, 1)})`,
        `event-loop lag p99: max ${lagP99Max} ms over the samples`,
        `errors: ${traffic.errors.length === 0 ? 'none' : traffic.errors.join(' | ')}`,
        `verdict: ${alive && !growth && canaryFailures === 0 ? 'PASS' : 'FAIL'} (${alive ? 'broker up' : 'BROKER EXITED'}, ${growth ? 'RSS GROWTH TREND' : 'no RSS growth trend'}, ${canaryFailures === 0 ? 'canary never failed' : `${canaryFailures} CANARY FAILURES`})`,
        '',
      ].join('\n'),
    );
    if (!alive) process.stdout.write(instance.process.output().slice(-3000));
    let code = alive && !growth && canaryFailures === 0 ? 0 : 1;
    if (values.faults) {
      process.stdout.write('--faults: the 60 s InfluxDB outage with a restart in between\n');
      const faults = spawnSync(process.execPath, ['--import', 'tsx', '--test', 'test/system/faults-influx.test.ts'], { cwd: repoRoot, env: { ...process.env, FAULTS_OUTAGE_S: '60' }, stdio: 'inherit' });
      if (faults.status !== 0) code = 1;
      process.stdout.write('--faults: 20 SIGKILLs of the server under load, each durability mode (test/system/faults-ingest-crash.test.ts)\n');
      const crash = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-timeout=1800000', 'test/system/faults-ingest-crash.test.ts'], { cwd: repoRoot, env: { ...process.env, CRASH_KILLS: '20' }, stdio: 'inherit' });
      if (crash.status !== 0) code = 1;
    }
    return code;
  } finally {
    await cleanup.run();
  }
}

process.exitCode = await main();
