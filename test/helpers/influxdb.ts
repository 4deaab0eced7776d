// A real InfluxDB 1.x (Debian's influxdb package, /usr/bin/influxd) on free
// loopback ports, from a generated config with everything in a temp dir. It
// serves InfluxQL on /query and line protocol on the 1.x /write (not the v2
// write API Nucleon's writer uses: 1.6.7 predates it).
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { freePort, requireBinary, startProcess, tempDir, waitFor } from './index.js';

export interface InfluxDb1 {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  pid: number;
  /** Runs InfluxQL statements (CREATE DATABASE ...) through POST /query; throws on an error. */
  query(q: string, db?: string): Promise<unknown>;
  /** Writes line protocol through the 1.x /write (precision ms); throws unless 204. */
  write(db: string, lines: string[]): Promise<void>;
  /** Stops it (SIGTERM) and waits for the exit. Safe twice. */
  stop(): Promise<void>;
}

/**
 * Starts influxd with its meta, data and WAL dirs in a temp dir, the HTTP API
 * and the RPC (backup) service on free loopback ports, reporting disabled.
 * Undefined when the binary is missing outside CI (a loud skip); under CI=true
 * a failure.
 */
export async function startInfluxDb1(t: TestContext): Promise<InfluxDb1 | undefined> {
  const binary = requireBinary(t, 'influxd', 'influxdb');
  if (!binary) return undefined;
  const dir = await tempDir(t, 'nucleon-influxdb-');
  const [httpPort, rpcPort] = [await freePort(), await freePort()];
  const config = path.join(dir, 'influxdb.conf');
  await writeFile(
    config,
    [
      'reporting-disabled = true',
      `bind-address = "127.0.0.1:${rpcPort}"`,
      '[meta]',
      `  dir = "${path.join(dir, 'meta')}"`,
      '[data]',
      `  dir = "${path.join(dir, 'data')}"`,
      `  wal-dir = "${path.join(dir, 'wal')}"`,
      '  query-log-enabled = false',
      '[http]',
      '  enabled = true',
      `  bind-address = "127.0.0.1:${httpPort}"`,
      '  log-enabled = false',
      '[monitor]',
      '  store-enabled = false',
      '[logging]',
      '  level = "warn"',
      '',
    ].join('\n'),
  );
  const running = startProcess(t, binary, ['-config', config]);
  const url = `http://127.0.0.1:${httpPort}`;
  await waitFor(
    async () => {
      if (running.child.exitCode !== null) throw new Error(`influxd exited: ${running.output()}`);
      try {
        return (await fetch(`${url}/ping`)).status === 204;
      } catch (error) {
        // Not listening yet: ECONNREFUSED until influxd has opened its stores.
        if ((error as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED') return false;
        throw error;
      }
    },
    'influxd to answer /ping',
    30_000,
    50,
  );
  let stopped: Promise<void> | undefined;
  return {
    url,
    pid: running.child.pid ?? -1,
    async query(q, db) {
      const body = new URLSearchParams({ q, ...(db ? { db } : {}) });
      const response = await fetch(`${url}/query`, { method: 'POST', body });
      const answer = (await response.json()) as { error?: string; results?: Array<{ error?: string }> };
      const error = answer.error ?? answer.results?.find((r) => r.error)?.error;
      if (!response.ok || error) throw new Error(`influxd query ${q}: HTTP ${response.status} ${error ?? ''}`);
      return answer;
    },
    async write(db, lines) {
      const response = await fetch(`${url}/write?${new URLSearchParams({ db, precision: 'ms' }).toString()}`, { method: 'POST', body: lines.join('\n') });
      const text = await response.text();
      if (response.status !== 204) throw new Error(`influxd write: HTTP ${response.status} ${text}`);
    },
    stop() {
      stopped ??= (async () => {
        if (running.child.exitCode === null && running.child.signalCode === null) running.child.kill('SIGTERM');
        await running.exited;
      })();
      return stopped;
    },
  };
}
