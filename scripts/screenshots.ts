// Screenshots of every console view for docs/dashboard/: a Nucleon on free
// loopback ports with 10,000 devices seeded into its store, a few live devices
// over TLS (telemetry, app messages, an OTA download), an image, groups, a
// campaign and some admin actions; then Chromium takes each view at 1400 px
// and 390 px wide (light), and the overview and devices at 1400 px dark.
//
//   npm run screenshots            (builds the console first)
//
// Everything runs on this machine and stops at the end; nothing is fetched.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Encoder } from 'cbor-x';
import type { MqttClient } from 'mqtt';
import { chromium, type Page } from 'playwright-core';
import WebSocket from 'ws';
import type { AdminRunner } from '../src/admin/index.js';
import { silentLogger } from '../src/logger.js';
import { createNucleon } from '../src/nucleon.js';
import { connectTlsDevice } from '../test/helpers/admin-harness.js';
import { seedFleet } from '../test/helpers/seed-fleet.js';
import { buildConsole } from './build-console.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(root, 'docs', 'dashboard');
const API_KEY = 'screenshots-admin-key-0123456789';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const LIVE = ['352656199000001', '352656199000002', '352656199000003', '352656199000004'];
const OLD = '1.4.0-0-g1a2b3c4';
const NEW = '1.5.0-2-g5d6e7f8';
/** How long the live devices run before the first picture (sessions, messages, telemetry history on the device page). */
const WARM_UP_MS = 30_000;
/** The overview keeps its history in the browser: each new page waits for this many health samples (500 ms apart). */
const OVERVIEW_SAMPLES = 40;
/** Long pages are cut here: the first screenfuls show what a view looks like. */
const MAX_HEIGHT = { 1400: 1800, 390: 2200 } as const;
const cbor = new Encoder({ useRecords: false, mapsAsObjects: false, variableMapSize: true });

const dir = await mkdtemp(path.join(os.tmpdir(), 'nucleon-screenshots-'));
const stops: Array<() => Promise<unknown>> = [];
try {
  await buildConsole();
  await seedFleet(path.join(dir, 'data'), {
    count: 10_000,
    prefix: '3526561000',
    firmware: [OLD, '1.3.2-7-g9f8e7d6', '1.4.1-0-gabcdef0'],
    groups: [
      { name: 'canary', every: 250 },
      { name: 'plant-north', every: 3 },
      { name: 'plant-south', every: 2 },
    ],
  });
  const nucleon = createNucleon(
    {
      log: { level: 'silent' },
      store: { path: path.join(dir, 'data') },
      certs: { dir: path.join(dir, 'certs') },
      mqtt: { tls: { host: '127.0.0.1', port: 0 } },
      ota: { http: { host: '127.0.0.1', port: 0 } },
      telemetry: { fields: [{ key: 10, name: 'temperature', type: 'float' }, { key: 11, name: 'battery_mv', type: 'int' }] },
      admin: { host: '127.0.0.1', port: 0, api_key: API_KEY, health_interval_ms: 500 },
    },
    { logger: silentLogger() },
  );
  await nucleon.start();
  stops.push(() => nucleon.stop());
  const adminPort = (nucleon.runner('admin') as AdminRunner).address()?.port ?? 0;
  const admin = await adminClient(adminPort);
  stops.push(async () => admin.close());

  // Images, groups and links through the admin API, so the audit view has them too.
  for (const [id, size] of [[OLD, 180_000], [NEW, 196_608]] as const) {
    await admin.request('images.add', { id, imageType: 'primary', description: id === NEW ? 'sensor fix, new modem firmware' : 'field release', data: Buffer.alloc(size, id === NEW ? 7 : 3).toString('base64') });
  }
  await admin.request('ota.link', { group: 'plant-north', image: OLD });
  for (const uid of LIVE) await admin.request('ota.link', { device: uid, group: 'field-trial' });
  await admin.request('ota.link', { group: 'field-trial', image: OLD });

  // Live devices over TLS: telemetry every second, now and then an app message.
  const devices: MqttClient[] = [];
  for (const uid of LIVE) devices.push((await connectTlsDevice(nucleon, dir, uid)).device);
  stops.push(() => Promise.all(devices.map((device) => device.endAsync(true))));
  let tick = 0;
  const timer = setInterval(() => {
    tick++;
    devices.forEach((device, index) => {
      const uid = LIVE[index] ?? '';
      const rsrp = 45 + index * 6 + Math.round(6 * Math.sin((tick + index * 7) / 6));
      const temperature = 21 + index + Math.round(20 * Math.sin((tick + index) / 10)) / 10;
      const fields = new Map<number, unknown>([[1, rsrp], [2, -70 - index], [10, temperature], [11, 3700 - tick - index * 40]]);
      if (tick === 1) fields.set(0, OLD);
      device.publish(`${uid}/tel/p`, cbor.encode(fields), { qos: 1 });
      if ((tick + index) % 9 === 0) device.publish(`${uid}/app/p/sensors/door`, Buffer.from(JSON.stringify({ open: tick % 2 === 0, at: tick })), { qos: 1 });
    });
  }, 1000);
  stops.push(async () => clearInterval(timer));

  // A campaign over the field trial: the first two devices are its canaries; one downloads half the image.
  await admin.request('campaigns.create', {
    id: 'fw-1.5.0',
    imageId: NEW,
    target: { groups: ['field-trial'] },
    canary: [LIVE[0], LIVE[1]],
    stages: [{ percent: 100 }],
    soakMs: 3_600_000,
    health: { windowMs: 1_800_000, telemetrySilentMs: 1_800_000, downloadTimeoutMs: 3_600_000, reconnectTimeoutMs: 3_600_000 },
    rollback: { enabled: true },
  });
  const downloader = devices[0];
  if (downloader) {
    await downloader.publishAsync(`${LIVE[0]}/ota/p`, cbor.encode(new Map<number, unknown>([[0, 0]])), { qos: 1 });
    for (let start = 0; start < 98_304; start += 4096) {
      await downloader.publishAsync(`${LIVE[0]}/ota/p`, cbor.encode(new Map<number, unknown>([[0, 2], [1, NEW], [2, start], [3, start + 4096]])), { qos: 1 });
    }
  }
  await admin.request('devices.kick', { uid: LIVE[3] });
  await admin.request('devices.revoke', { uid: '352656100000042', reason: 'reported stolen' });
  console.log(`warming up for ${WARM_UP_MS / 1000} s…`);
  await new Promise((resolve) => setTimeout(resolve, WARM_UP_MS));

  await mkdir(OUT, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'] });
  stops.push(() => browser.close());
  const base = `http://127.0.0.1:${adminPort}/`;
  const views: Array<{ name: string; hash: string; ready: string; then?: (page: Page) => Promise<void> }> = [
    { name: 'overview', hash: '#/overview', ready: '#metric-connections canvas' },
    { name: 'overview-detail', hash: '#/overview', ready: '#metric-connections canvas', then: async (page) => {
      await page.click('#metric-messages');
      await page.waitForSelector('#metric-detail canvas');
    } },
    { name: 'devices', hash: '#/devices', ready: '#devices[data-state="ready"] tbody tr' },
    { name: 'device', hash: `#/devices/${LIVE[0]}`, ready: '.telemetry-field canvas' },
    { name: 'images', hash: '#/images', ready: '#images tbody tr' },
    { name: 'groups', hash: '#/groups', ready: '#groups .group' },
    { name: 'campaigns', hash: '#/campaigns', ready: '#campaigns tbody tr', then: async (page) => {
      await page.click('button[aria-label="Show campaign fw-1.5.0"]');
      await page.waitForSelector('#campaign-detail');
    } },
    { name: 'audit', hash: '#/audit', ready: '#audit tbody tr' },
  ];
  const shots: string[] = [];
  for (const [width, scheme] of [[1400, 'light'], [390, 'light'], [1400, 'dark']] as const) {
    const context = await browser.newContext({ viewport: { width, height: width > 1000 ? 900 : 844 }, colorScheme: scheme, deviceScaleFactor: 1 });
    const page = await context.newPage();
    page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
    await page.goto(`${base}#/overview`);
    const suffix = `${width}${scheme === 'dark' ? '-dark' : ''}`;
    if (scheme === 'light') {
      await page.waitForSelector('#api-key');
      const file = path.join(OUT, `login-${suffix}.png`);
      await page.screenshot({ path: file });
      shots.push(file);
    }
    await page.fill('#api-key', API_KEY);
    await page.click('#login-button');
    await page.waitForSelector('#status[data-state="connected"]');
    console.log(`${width} px ${scheme}: collecting ${OVERVIEW_SAMPLES} health samples in the page…`);
    for (const deadline = Date.now() + 60_000; Number(await page.getAttribute('.metrics', 'data-samples')) < OVERVIEW_SAMPLES; ) {
      if (Date.now() > deadline) throw new Error('the overview got no health samples');
      await page.waitForTimeout(500);
    }
    for (const view of views) {
      if (scheme === 'dark' && !['overview', 'devices', 'device'].includes(view.name)) continue;
      // The hash only: the page (and the overview's history) stays.
      await page.evaluate(`location.hash = ${JSON.stringify(view.hash)}`);
      await page.waitForSelector(view.ready, { timeout: 30_000 });
      await page.mouse.move(1, 1);
      await view.then?.(page);
      // The charts draw on the next frame.
      await page.evaluate('new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)))');
      const file = path.join(OUT, `${view.name}-${suffix}.png`);
      const height = Number(await page.evaluate('document.documentElement.scrollHeight'));
      await page.screenshot({ path: file, fullPage: true, clip: { x: 0, y: 0, width, height: Math.min(height, MAX_HEIGHT[width]) } });
      shots.push(file);
    }
    await context.close();
  }
  console.log(`${shots.length} screenshots in ${path.relative(root, OUT)}/:\n${shots.map((file) => `  ${path.basename(file)}`).join('\n')}`);
} finally {
  for (const stop of stops.reverse()) await stop().catch((error: unknown) => console.error('stopping', error));
  await rm(dir, { recursive: true, force: true });
}

/** A minimal admin WebSocket client: one request at a time, answers by id, errors thrown. */
async function adminClient(port: number): Promise<{ request: (cmd: string, args: Record<string, unknown>) => Promise<unknown>; close: () => void }> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { authorization: `Bearer ${API_KEY}` } });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  let next = 1;
  const waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  socket.on('message', (data: Buffer) => {
    const message = JSON.parse(data.toString('utf8')) as { id?: number; ok?: boolean; result?: unknown; error?: { code: string; message: string } };
    if (typeof message.id !== 'number') return;
    const entry = waiting.get(message.id);
    waiting.delete(message.id);
    if (message.ok) entry?.resolve(message.result);
    else entry?.reject(new Error(`${message.error?.message} [${message.error?.code}]`));
  });
  return {
    request: (cmd, args) =>
      new Promise((resolve, reject) => {
        const id = next++;
        waiting.set(id, { resolve, reject });
        socket.send(JSON.stringify({ v: 1, id, cmd, args }));
      }),
    close: () => socket.close(),
  };
}
