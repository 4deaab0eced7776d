// Shared test helpers: temp dirs, free ports, waiting, child processes, binaries.
import { readFileSync } from 'node:fs';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The built `nucleon` command (package.json "bin"); `npm run build` first. */
export const cliPath = path.join(repoRoot, 'dist/bin.cjs');

/** Processes started by each test, ended before its temporary folders are removed (they may still write there). */
const started = new WeakMap<TestContext, RunningProcess[]>();
/** In-process servers of each test, stopped (newest first) before its temporary folders are removed. */
const closers = new WeakMap<TestContext, (() => Promise<unknown>)[]>();

/**
 * Stops `close` after the test, before the test's temporary folders are
 * removed (t.after hooks run in the order they were added, and a folder is
 * usually made before the server that writes into it).
 */
export function closeAfter(t: TestContext, close: () => Promise<unknown>): void {
  closers.set(t, [...(closers.get(t) ?? []), close]);
  t.after(close);
}

export async function tempDir(t: TestContext, prefix = 'nucleon-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.after(async () => {
    for (const close of [...(closers.get(t) ?? [])].reverse()) await close();
    for (const proc of started.get(t) ?? []) await killProcess(proc);
    // Retried: a server of a failed test may not have been stopped through closeAfter and still write.
    await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });
  return dir;
}

async function killProcess(proc: RunningProcess): Promise<void> {
  if (proc.child.exitCode === null && proc.child.signalCode === null) {
    proc.child.kill('SIGKILL');
    await proc.exited;
  }
}

/** Ports this process has handed out already (never twice). */
const handedOut = new Set<number>();

/** Below the kernel's ephemeral range, so no client socket of another test takes it before the server binds. */
function listenRange(): [number, number] {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 12_000) return [10_000, low - 1];
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return [20_000, 32_767];
}

function tryListen(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' || error.code === 'EACCES' ? resolve(false) : reject(error)));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A port that was free a moment ago on 127.0.0.1, for a server a test starts
 * in another process. Chosen at random below the ephemeral range: port 0's
 * answer comes from that range, where the many client sockets of tests
 * running at the same time take ports too, and one took a server's port
 * between this call and its bind often enough to fail a loaded run.
 */
export async function freePort(): Promise<number> {
  const [low, high] = listenRange();
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (handedOut.has(port)) continue;
    if (await tryListen(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port found between ${low} and ${high} in 100 tries`);
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000, intervalMs = 25): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
    await delay(intervalMs);
  }
}

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Starts a command without blocking the event loop (a broker under test may
 * be in this process); `done` resolves when it exits, SIGKILLed after
 * `timeoutMs`. `output` is its stdout so far.
 */
export function spawnCollecting(command: string, args: string[], timeoutMs = 20_000): { output: () => string; done: Promise<Finished> } {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<Finished>((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
  return { output: () => stdout, done };
}

/** `spawnCollecting`, waited for. */
export function runToExit(command: string, args: string[], timeoutMs = 20_000): Promise<Finished> {
  return spawnCollecting(command, args, timeoutMs).done;
}

export interface RunningProcess {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts a process, collects its output, and kills it (by PID) after the test if still running. */
export function startProcess(t: TestContext, command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): RunningProcess {
  const child = spawn(command, args, { cwd: options.cwd ?? repoRoot, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const proc = { child, output: () => output, exited };
  started.set(t, [...(started.get(t) ?? []), proc]);
  t.after(() => killProcess(proc));
  return proc;
}

/** Runs the built CLI to completion. */
export function runCli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [cliPath, ...args], {
    cwd: options.cwd ?? repoRoot,
    env: { ...process.env, ...options.env },
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 30_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * Finds a binary the suite needs. Outside CI a missing binary skips the suite
 * with a loud message; under CI=true it is a failure.
 */
export function requireBinary(t: TestContext, name: string, debianPackage: string): string | undefined {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
  if (found) return found;
  skipOutsideCi(t, `${name} not found: install the Debian package ${debianPackage} (apt-get install -y ${debianPackage})`);
  return undefined;
}

/** Something a test needs is missing: a loud skip on a developer's machine, a failure under CI=true. */
export function skipOutsideCi(t: TestContext, message: string): void {
  if (process.env.CI === 'true') throw new Error(`${message}; CI=true requires it`);
  process.stderr.write(`\n*** SKIPPING: ${message} ***\n\n`);
  t.skip(message);
}

/**
 * A config.toml for a `nucleon serve` under test: its own store and certs in
 * `dir`, every listener on loopback, ports as given (0: the OS chooses).
 */
export function isolatedConfig(dir: string, ports: { mqtt?: number; admin?: number } = {}): string {
  return [
    '[log]',
    'format = "json"',
    '[store]',
    `path = "${path.join(dir, 'data')}"`,
    '[certs]',
    `dir = "${path.join(dir, 'certs')}"`,
    '[mqtt.tls]',
    'host = "127.0.0.1"',
    `port = ${ports.mqtt ?? 0}`,
    '[ota.http]',
    'host = "127.0.0.1"',
    'port = 0',
    '[admin]',
    `port = ${ports.admin ?? 0}`,
  ].join('\n');
}
