// `npm run fleet-sim -- --devices 100 --bad-never-back 0.1 --config config.toml`:
// N simulated Pyrinas devices (scripts/fleet-sim/) against a running Nucleon,
// over MQTT/TLS with passwords set through the admin endpoint first. They run
// for --duration-s, print what they run every few seconds, and all disconnect
// at the end (or on Ctrl-C). Start a campaign meanwhile (nucleon campaigns
// create) to watch it roll out. README "Campaigns" has the walk-through.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../src/config/index.js';
import { AdminClient, resolveAdminConnection } from '../src/cli/admin-client.js';
import { BEHAVIOURS, type Behaviour } from './fleet-sim/device.js';
import { behavioursByShare, Fleet, MAX_DEVICES } from './fleet-sim/fleet.js';

const USAGE = `npm run fleet-sim -- [options]
  --devices <n>             simulated devices (default 100, at most ${MAX_DEVICES})
  --version <id>            the image they run at start (default 1.0.0-0-gaaaaaaa)
  --uid-prefix <digits>     uids are the prefix and a counter, 15 characters (default 3526561)
  --config <file>           the server's config: MQTT/TLS port, CA, admin URL and key (default ./config.toml)
  --mqtt-url <url>          mqtts://host:port (default from the config)
  --ca <file>               CA certificate (default <certs.dir>/ca.crt of the config)
  --url, --api-key          the admin endpoint, as for nucleon ota (sets each device's password)
  --bad-never-back <share>  never come back after the install (bricked)
  --bad-revert <share>      come back on the old version (MCUboot revert)
  --bad-boot-loop <share>   reconnect again and again after the install
  --bad-silent <share>      stop sending telemetry after the update
  --bad-stall <share>       stop the download after the first chunk
  --telemetry-ms <ms>       telemetry period (default 5000)
  --duration-s <s>          run this long, then disconnect all (default 600)`;

const OPTIONS = {
  devices: { type: 'string', default: '100' },
  version: { type: 'string', default: '1.0.0-0-gaaaaaaa' },
  'uid-prefix': { type: 'string', default: '3526561' },
  config: { type: 'string' },
  'mqtt-url': { type: 'string' },
  ca: { type: 'string' },
  url: { type: 'string' },
  'api-key': { type: 'string' },
  'bad-never-back': { type: 'string', default: '0' },
  'bad-revert': { type: 'string', default: '0' },
  'bad-boot-loop': { type: 'string', default: '0' },
  'bad-silent': { type: 'string', default: '0' },
  'bad-stall': { type: 'string', default: '0' },
  'telemetry-ms': { type: 'string', default: '5000' },
  'duration-s': { type: 'string', default: '600' },
  help: { type: 'boolean', default: false },
} as const;

function numberOption(name: string, raw: string, min: number, max: number): number {
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) throw new Error(`--${name} must be a number from ${min} to ${max}, got ${raw}`);
  return value;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: OPTIONS, strict: true });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const count = numberOption('devices', values.devices, 1, MAX_DEVICES);
  const shares: Partial<Record<Behaviour, number>> = {
    never_back: numberOption('bad-never-back', values['bad-never-back'], 0, 1),
    revert: numberOption('bad-revert', values['bad-revert'], 0, 1),
    boot_loop: numberOption('bad-boot-loop', values['bad-boot-loop'], 0, 1),
    silent: numberOption('bad-silent', values['bad-silent'], 0, 1),
    stall: numberOption('bad-stall', values['bad-stall'], 0, 1),
  };
  const durationMs = numberOption('duration-s', values['duration-s'], 1, 24 * 3600) * 1000;
  const configFile = values.config ?? 'config.toml';
  const { config } = await loadConfigFile(configFile);
  const host = config.mqtt.tls.host === '0.0.0.0' ? 'localhost' : config.mqtt.tls.host;
  const mqttUrl = values['mqtt-url'] ?? `mqtts://${host}:${config.mqtt.tls.port}`;
  const ca = await readFile(values.ca ?? `${config.certs.dir}/ca.crt`);

  const prefix = values['uid-prefix'];
  const uids = Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(Math.max(1, 15 - prefix.length), '0')}`);
  const password = (uid: string) => `fleet-sim-${uid}`;
  const admin = await resolveAdminConnection({ url: values.url, 'api-key': values['api-key'], config: configFile });
  const client = await AdminClient.connect(admin.url, admin.apiKey);
  try {
    for (const uid of uids) await client.request('devices.add', { uid, password: password(uid) });
  } finally {
    client.close();
  }

  const behaviours = behavioursByShare(uids, shares);
  const fleet = new Fleet({
    url: mqttUrl,
    ca,
    devices: uids.map((uid) => ({ uid, login: { password: password(uid) } })),
    version: values.version,
    behaviourOf: (uid) => behaviours.get(uid) ?? 'good',
    timings: { telemetryEveryMs: numberOption('telemetry-ms', values['telemetry-ms'], 100, 3_600_000) },
  });
  const mix = BEHAVIOURS.map((b) => `${b} ${[...behaviours.values()].filter((x) => x === b).length}`).join(', ');
  process.stdout.write(`fleet-sim: ${count} devices (${mix}) → ${mqttUrl}, for ${durationMs / 1000} s\n`);
  await fleet.start();

  const report = () => process.stdout.write(`fleet-sim: ${JSON.stringify(fleet.summary())}\n`);
  const reporter = setInterval(report, 5000);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, durationMs);
    process.once('SIGINT', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  clearInterval(reporter);
  report();
  await fleet.stop();
  const failure = fleet.failure();
  if (failure !== undefined) throw new Error('a simulated device failed', { cause: failure });
}

main().catch((error: unknown) => {
  process.stderr.write(`fleet-sim: ${error instanceof Error ? `${error.message}${error.cause instanceof Error ? `: ${error.cause.message}` : ''}` : String(error)}\n`);
  process.exitCode = 1;
});
