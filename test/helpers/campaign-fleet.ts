// For the campaign system tests: a real `nucleon serve` (dist/bin.cjs) with
// the reliability suites' loopback config and device passwords provisioned
// before it starts, an admin client per call, and a simulated fleet
// (scripts/fleet-sim) on an old image in one OTA group.
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { AdminClient } from '../../src/cli/admin-client.js';
import { initCertificates } from '../../src/certs/index.js';
import { validateConfig } from '../../src/config/index.js';
import { deviceCredentials } from '../../src/devices/index.js';
import type { CampaignDeviceStatus, CampaignSummary } from '../../src/events.js';
import { LevelStore } from '../../src/store/index.js';
import { Fleet } from '../../scripts/fleet-sim/fleet.js';
import type { Behaviour, DeviceTimings } from '../../scripts/fleet-sim/device.js';
import { cliPath, skipOutsideCi, startProcess, tempDir, waitFor, type RunningProcess } from './index.js';
import { ADMIN_KEY, freePorts, writeInstanceConfig, type Ports } from './reliability-support.js';
import { firmware } from './ota-harness.js';

export const OLD_IMAGE = '1.0.0-0-gaaaaaaa';
export const NEW_IMAGE = '1.1.0-0-gbbbbbbb';
export const GROUP = 'fleet';
const IMAGE_BYTES = 16 * 1024;

export interface Serve {
  dir: string;
  ports: Ports;
  ca: Buffer;
  process: RunningProcess;
  alive(): boolean;
  /** SIGTERM and wait (a clean stop). */
  stop(): Promise<void>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
}

/** True when dist/bin.cjs exists; else the test is skipped (a failure under CI=true, see skipOutsideCi). */
export function builtCliExists(): boolean {
  return existsSync(cliPath);
}

/** Device uids 352656100000000, 352656100000001, …: IMEI-shaped, as real Pyrinas devices. */
export function deviceUids(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `3526561${String(i).padStart(8, '0')}`);
}

export const passwordOf = (uid: string): string => `sim-password-${uid}`;

/** Certificates (server and CA) and a password per device, written before the server holds the store. */
export async function provision(dir: string, uids: readonly string[]): Promise<Buffer> {
  const config = validateConfig({ store: { path: path.join(dir, 'data') }, certs: { dir: path.join(dir, 'certs') } });
  const ca = Buffer.from((await initCertificates(config.certs)).ca);
  const store = new LevelStore(path.join(dir, 'data', 'kv'));
  await store.open();
  try {
    for (const uid of uids) await deviceCredentials(store).add(uid, passwordOf(uid));
  } finally {
    await store.close();
  }
  return ca;
}

/** Starts `nucleon serve` in `dir` (provisioned) and waits for /healthz; killed after the test if still running. */
export async function startServe(t: TestContext, dir: string, ports?: Ports): Promise<Serve> {
  const chosen = ports ?? (await freePorts());
  const configFile = await writeInstanceConfig(dir, chosen);
  const proc = startProcess(t, process.execPath, [cliPath, 'serve', '--config', configFile], { cwd: dir });
  await waitFor(
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`nucleon serve exited (${proc.child.exitCode}):\n${proc.output().slice(-3000)}`);
      try {
        return (await fetch(`http://127.0.0.1:${chosen.admin}/healthz`)).ok;
      } catch (error) {
        if ((error as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED') return false;
        throw error;
      }
    },
    'nucleon serve to answer /healthz',
    30_000,
    100,
  );
  const alive = () => proc.child.exitCode === null && proc.child.signalCode === null;
  const signal = async (name: NodeJS.Signals) => {
    if (!alive()) return;
    proc.child.kill(name);
    await proc.exited;
  };
  return { dir, ports: chosen, ca: await readFile(path.join(dir, 'certs', 'ca.crt')), process: proc, alive, stop: () => signal('SIGTERM'), kill: () => signal('SIGKILL') };
}

/**
 * A provisioned `nucleon serve` with `count` devices in GROUP on OLD_IMAGE and both images uploaded;
 * undefined (the test skipped, or failed under CI=true) when dist/bin.cjs is missing.
 */
export async function startCampaignServer(t: TestContext, count: number): Promise<{ serve: Serve; uids: string[] } | undefined> {
  if (!builtCliExists()) {
    skipOutsideCi(t, 'dist/bin.cjs is missing: run npm run build');
    return undefined;
  }
  const dir = await tempDir(t, 'nucleon-campaigns-');
  const uids = deviceUids(count);
  await provision(dir, uids);
  const serve = await startServe(t, dir);
  await prepareImages(serve, uids);
  return { serve, uids };
}

/** One admin connection for `work`, closed after it. */
export async function withAdminOf<T>(serve: Serve, work: (client: AdminClient) => Promise<T>): Promise<T> {
  const client = await AdminClient.connect(`ws://127.0.0.1:${serve.ports.admin}/ws`, ADMIN_KEY);
  try {
    return await work(client);
  } finally {
    client.close();
  }
}

/** Both images uploaded, every device a member of GROUP, the group on OLD_IMAGE (where a rollback takes them). */
export async function prepareImages(serve: Serve, uids: readonly string[]): Promise<void> {
  await withAdminOf(serve, async (client) => {
    for (const [id, seed] of [[OLD_IMAGE, 1], [NEW_IMAGE, 2]] as const) {
      const file = path.join(serve.dir, `${id}.bin`);
      await writeFile(file, firmware(IMAGE_BYTES, seed));
      await client.addImage(file, { id, imageType: 'primary' });
    }
    for (const uid of uids) await client.request('ota.link', { device: uid, group: GROUP });
    await client.request('ota.link', { group: GROUP, image: OLD_IMAGE });
  });
}

/** The simulated fleet on OLD_IMAGE over TLS with passwords; stopped after the test. */
export async function startFleet(t: TestContext, serve: Serve, uids: readonly string[], behaviours: ReadonlyMap<string, Behaviour> = new Map(), timings: Partial<DeviceTimings> = {}): Promise<Fleet> {
  const fleet = new Fleet({
    url: `mqtts://localhost:${serve.ports.tls}`,
    ca: serve.ca,
    devices: uids.map((uid) => ({ uid, login: { password: passwordOf(uid) } })),
    version: OLD_IMAGE,
    behaviourOf: (uid) => behaviours.get(uid) ?? 'good',
    timings: { telemetryEveryMs: 500, rebootMs: 300, chunkTimeoutMs: 2000, reconnectPeriodMs: 300, ...timings },
  });
  t.after(() => fleet.stop());
  await fleet.start();
  return fleet;
}

export interface Shown {
  campaign: CampaignSummary;
  devices: CampaignDeviceStatus[];
}

export async function showCampaign(serve: Serve, id: string): Promise<Shown> {
  const shown = await withAdminOf(serve, (client) => client.request<{ campaign: CampaignSummary; devices?: CampaignDeviceStatus[] }>('campaigns.show', { id, devices: true }));
  return { campaign: shown.campaign, devices: shown.devices ?? [] };
}

/** Polls the campaign until `check` holds (every wait is on a condition); the last view is in the timeout message. */
export async function waitForCampaign(serve: Serve, id: string, what: string, check: (shown: Shown) => boolean, timeoutMs = 60_000): Promise<Shown> {
  let last: Shown | undefined;
  try {
    return await waitFor(
      async () => {
        last = await showCampaign(serve, id);
        return check(last) ? last : undefined;
      },
      what,
      timeoutMs,
      250,
    );
  } catch (error) {
    const c = last?.campaign;
    throw new Error(`${(error as Error).message}; last seen: ${c ? `${c.state} (${c.reason}) stage ${c.stage}, counts ${JSON.stringify(c.counts)}` : 'nothing'}`, { cause: error });
  }
}
