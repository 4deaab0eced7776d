import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { pingRedis, redisServerArgs } from '../../test/helpers/redis.js';
import { freePort, sleep } from './net.js';
import { ServerProcess } from './server-process.js';

export const REDIS_SERVER = '/usr/bin/redis-server';

/**
 * A redis-server (Debian package) on a free loopback port, for Nucleon in
 * cluster mode (`serve --workers`, scenario 12); the same command line the
 * tests use (test/helpers/redis.ts).
 */
export class RedisServer extends ServerProcess {
  private constructor(
    child: ReturnType<typeof spawn>,
    readonly url: string,
  ) {
    super('redis-server', child);
  }

  static unavailable(): string | undefined {
    return existsSync(REDIS_SERVER) ? undefined : `${REDIS_SERVER} not installed (apt-get install -y redis-server)`;
  }

  static async start(dataDir: string): Promise<RedisServer> {
    const port = await freePort();
    const child = spawn(REDIS_SERVER, redisServerArgs(port, dataDir), { stdio: ['ignore', 'pipe', 'pipe'] });
    const redis = new RedisServer(child, `redis://127.0.0.1:${port}`);
    const deadline = Date.now() + 10_000;
    while (!(await pingRedis(port))) {
      if (!redis.alive) throw new Error(`redis-server exited: ${redis.tail}`);
      if (Date.now() > deadline) {
        await redis.stop();
        throw new Error(`redis-server did not answer PING on port ${port} within 10 s: ${redis.tail}`);
      }
      await sleep(50);
    }
    return redis;
  }
}
