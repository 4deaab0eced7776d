// README "Quick start", command by command, in a fresh clone of HEAD: the
// commands are read from the README's quickstart block, so they cannot drift
// from what a newcomer copies. The test substitutes only what the README tells
// a reader to choose: `<repository>` (this checkout) and the three default
// ports (free ones, in config.toml and in the commands). The server command
// runs in the background, as in the reader's first terminal; every other
// command must exit 0, and the device's telemetry must show in the admin
// endpoint's fleet, the app message in /metrics.
//
// `npm ci` is replaced by hard links to this checkout's node_modules when they
// were installed from the same lockfile (npm's hidden lockfile lists the same
// packages, less other platforms' optional builds): npm ci of the same
// lockfile gives the same tree, and it costs 33-50 s here. QUICKSTART_NPM_CI=1 runs it anyway.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { freePort, repoRoot, requireBinary, tempDir, waitFor } from '../helpers/index.js';

const BEGIN = '<!-- quickstart:begin -->';
const END = '<!-- quickstart:end -->';
const DEFAULT_PORTS = { mqtt: 8883, ota: 3030, admin: 3032 } as const;
const UID = '352656100000001';

/** Every line of the ```sh blocks between the markers that is not blank or a comment. */
export function quickstartCommands(readme: string): string[] {
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  assert.ok(start >= 0 && end > start, 'README.md has the quickstart block markers');
  const section = readme.slice(start, end);
  const commands: string[] = [];
  for (const block of section.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const line of (block[1] ?? '').split('\n')) if (line.trim() !== '' && !line.trim().startsWith('#')) commands.push(line.trim());
  }
  return commands;
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** One command in bash, in `cwd`; `cd` in it carries over to the next (as in a terminal). */
function run(command: string, cwd: string, cwdFile: string, timeoutMs: number): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', `set -e\n${command}\npwd > "${cwdFile}"`], { cwd, env: quickstartEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function quickstartEnv(): NodeJS.ProcessEnv {
  // Offline: the README's commands must work from the clone alone once installed.
  return { ...process.env, npm_config_offline: 'true', npm_config_update_notifier: 'false', NO_COLOR: '1' };
}

/**
 * Whether this checkout's node_modules is what `npm ci` of the clone's lockfile
 * installs: the same version of every package, leaving out only optional ones
 * (the other platforms' builds of esbuild and cbor-extract).
 */
function sameLockfile(clone: string): boolean {
  type Packages = Record<string, { version?: string; optional?: boolean }>;
  const hidden = path.join(repoRoot, 'node_modules', '.package-lock.json');
  if (!existsSync(hidden)) return false;
  const installed = (JSON.parse(readFileSync(hidden, 'utf8')) as { packages: Packages }).packages;
  const wanted = (JSON.parse(readFileSync(path.join(clone, 'package-lock.json'), 'utf8')) as { packages: Packages }).packages;
  return Object.entries(wanted).every(([name, info]) => name === '' || installed[name]?.version === info.version || (installed[name] === undefined && info.optional === true)) &&
    Object.keys(installed).every((name) => wanted[name] !== undefined);
}

function withPorts(text: string, ports: Record<keyof typeof DEFAULT_PORTS, number>): string {
  let out = text;
  for (const key of Object.keys(DEFAULT_PORTS) as (keyof typeof DEFAULT_PORTS)[]) out = out.replace(new RegExp(`\\b${DEFAULT_PORTS[key]}\\b`, 'g'), String(ports[key]));
  return out;
}

/** The server, started as its own process group so that npx and the node it starts stop together. */
function background(command: string, cwd: string): { child: ChildProcess; output: () => string; stop: () => Promise<void> } {
  const child = spawn('bash', ['-c', `exec ${command}`], { cwd, env: quickstartEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const signal = (name: NodeJS.Signals) => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(-child.pid, name);
  };
  return {
    child,
    output: () => output,
    async stop() {
      signal('SIGTERM');
      const timer = setTimeout(() => signal('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

test('the README quick start, command by command in a fresh clone: a device publishes telemetry over mutual TLS and the admin endpoint shows it', async (t) => {
  for (const [binary, pkg] of [
    ['git', 'git'],
    ['mosquitto_pub', 'mosquitto-clients'],
    ['curl', 'curl'],
  ] as const) {
    if (!requireBinary(t, binary, pkg)) return;
  }
  const commands = quickstartCommands(await readFile(path.join(repoRoot, 'README.md'), 'utf8'));
  // The steps the checks below rely on; the rest run as they are.
  for (const pattern of [/^git clone <repository> /, /^npm ci$/, /^npm run build$/, /nucleon serve/, /nucleon certs device/, /\/tel\/p/, /nucleon devices --json/, /\/app\/p\//, /\/metrics/]) {
    assert.ok(commands.some((command) => pattern.test(command)), `the quick start has a command matching ${String(pattern)}`);
  }
  const dir = await tempDir(t, 'nucleon-quickstart-');
  const cwdFile = path.join(dir, '.cwd');
  const ports = { mqtt: await freePort(), ota: await freePort(), admin: await freePort() };
  let cwd = dir;
  let server: ReturnType<typeof background> | undefined;
  t.after(async () => server?.stop());
  const steps: string[] = [];

  for (const readmeCommand of commands) {
    const command = withPorts(readmeCommand.replace('<repository>', JSON.stringify(repoRoot)), ports);
    steps.push(command);
    if (command === 'npm ci' && process.env.QUICKSTART_NPM_CI !== '1' && sameLockfile(cwd)) {
      const linked = await run(`cp -al ${JSON.stringify(path.join(repoRoot, 'node_modules'))} node_modules`, cwd, cwdFile, 60_000);
      assert.equal(linked.code, 0, linked.stderr);
      t.diagnostic('npm ci: node_modules hard-linked (same lockfile)');
      continue;
    }
    if (/nucleon serve|^npm start\b/.test(command)) {
      server = background(command, cwd);
      const running = server;
      await waitFor(
        () => {
          if (running.child.exitCode !== null) throw new Error(`the server exited: ${running.output()}`);
          return running.output().includes('nucleon started');
        },
        `the server to start (${command})`,
        60_000,
        100,
      );
      t.diagnostic(`server started: ${command}`);
      continue;
    }
    const started = Date.now();
    const expect = expectationOf(command);
    if (expect === undefined) {
      const ran = await run(command, cwd, cwdFile, 300_000);
      assert.equal(ran.code, 0, `${command}\nexited ${String(ran.code)}:\n${ran.stderr}${ran.stdout}`);
    } else {
      // The fleet and the metrics are written a moment after the device's PUBACK: ask again until they show.
      await waitFor(
        async () => {
          const ran = await run(command, cwd, cwdFile, 60_000);
          if (ran.code !== 0) throw new Error(`${command}\nexited ${String(ran.code)}:\n${ran.stderr}${ran.stdout}`);
          return expect(ran.stdout);
        },
        `the expected output of: ${command}`,
        15_000,
        250,
      );
    }
    t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s: ${command}`);
    cwd = (await readFile(cwdFile, 'utf8')).trim();
    if (/^git clone /.test(command)) {
      // The one change the README asks of a reader whose default ports are taken.
      const config = path.join(cwd, 'config.toml');
      await writeFile(config, (await readFile(config, 'utf8')).replace(/^port = (8883|3030|3032)\b/gm, (line) => withPorts(line, ports)));
    }
  }
  assert.ok(server, 'the quick start started a server');
  assert.deepEqual(steps.length, commands.length);
});

/** What a command's output must show for the quick start to have worked. */
function expectationOf(command: string): ((stdout: string) => boolean) | undefined {
  if (/nucleon devices --json/.test(command)) {
    return (stdout) => {
      const devices = JSON.parse(stdout) as { uid: string; online: boolean; firmwareVersion?: string; telemetry?: Record<string, unknown> }[];
      const device = devices.find((d) => d.uid === UID);
      if (!device?.telemetry) return false;
      assert.deepEqual(device.telemetry, { version: '1.0.0-0-gabcdef0', rsrp: 45, rssi_hub: -70 });
      assert.equal(device.firmwareVersion, '1.0.0-0-gabcdef0');
      return true;
    };
  }
  if (/\/metrics/.test(command)) return (stdout) => /^nucleon_broker_unrouted_total\{event="ApplicationRequest"\} 1$/m.test(stdout);
  return undefined;
}
