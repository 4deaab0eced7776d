import type { TestContext } from 'node:test';
import { freePort, requireBinary, startProcess, tempDir, waitFor } from './index.js';
import { createConnection } from 'node:net';

export interface RedisServer {
  url: string;
  port: number;
  dir: string;
  pid: number;
  stop(): Promise<void>;
}

/** Answers PONG on 127.0.0.1:port (the bench's Redis waits with it too, bench/lib/redis.ts). */
export function pingRedis(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
  });
}

/** A loopback-only redis-server with its data (append-only file, as README "Cluster" asks) in `dir`. */
export function redisServerArgs(port: number, dir: string): string[] {
  return ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--protected-mode', 'yes'];
}

/**
 * Starts a real redis-server on a free loopback port with a temp dir; stopped after the test.
 * Pass the `port` and `dir` of a stopped one to start it again with its data (append-only file).
 */
export async function startRedis(t: TestContext, port?: number, dataDir?: string): Promise<RedisServer | undefined> {
  const binary = requireBinary(t, 'redis-server', 'redis-server');
  if (!binary) return undefined;
  const dir = dataDir ?? (await tempDir(t, 'nucleon-redis-'));
  const chosen = port ?? (await freePort());
  const proc = startProcess(t, binary, redisServerArgs(chosen, dir));
  await waitFor(() => pingRedis(chosen), `redis-server on port ${chosen}`, 10_000);
  return {
    url: `redis://127.0.0.1:${chosen}`,
    port: chosen,
    dir,
    pid: proc.child.pid ?? -1,
    stop: async () => {
      if (proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.child.kill('SIGTERM');
        await proc.exited;
      }
    },
  };
}
