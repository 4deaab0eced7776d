import os from 'node:os';
import path from 'node:path';
import { workersNeedRedis, type Config } from '../config/index.js';
import { ConfigError } from '../errors.js';

/**
 * How many worker processes `nucleon serve` runs: `--workers` when given,
 * else `[cluster] workers`; 0 means one per core. More than one needs cluster
 * mode, checked here for the flag (the config file's own key is checked when
 * it is validated, src/config/load.ts).
 */
export function workerCount(config: Readonly<Config>, flag: number | undefined, source: string, cores: number = os.availableParallelism()): number {
  const requested = flag ?? config.cluster?.workers ?? 1;
  if (requested !== 1 && !config.cluster) {
    throw new ConfigError([`${path.basename(source)}: cluster.workers: ${workersNeedRedis(requested)}${flag === undefined ? '' : ` (--workers ${flag})`}`]);
  }
  return requested === 0 ? Math.max(1, cores) : requested;
}

/** The folder of one worker under a shared one: `<dir>/worker-<slot>`. */
export function workerDir(dir: string, slot: number): string {
  return path.join(dir, `worker-${slot}`);
}

/**
 * The config one worker runs with. Each worker is a normal cluster-mode
 * instance; what a process keeps on local disk must never be opened by two
 * of them (the ingest log's segments, the Influx spool, admin uploads, which
 * a starting instance clears), so each gets its own folders:
 *
 * - `ingest.dir` → `<ingest dir>/worker-<slot>` (default `<store.path>/ingest/worker-<slot>`),
 *   reopened by the restarted worker of the same slot, which replays it;
 * - `influx.spool_dir` → `<spool dir>/worker-<slot>`;
 * - `store.path` → `<store.path>/worker-<slot>` for everything else a
 *   process writes there (admin uploads in progress). The shared state is in
 *   Redis, so nothing under it is LevelDB.
 *
 * The admin API key is resolved once by the primary and handed to every
 * worker (`apiKey`), so all of them accept the same key, generated or not.
 */
export function workerConfig(config: Readonly<Config>, slot: number, apiKey: string | undefined): Config {
  if (!config.cluster) throw new Error('workers run in cluster mode only');
  const store = config.store.path;
  return {
    ...config,
    store: { ...config.store, path: workerDir(store, slot) },
    ingest: { ...config.ingest, dir: workerDir(config.ingest.dir === '' ? path.join(store, 'ingest') : config.ingest.dir, slot) },
    influx: config.influx ? { ...config.influx, spool_dir: workerDir(config.influx.spool_dir === '' ? path.join(store, 'influx-spool') : config.influx.spool_dir, slot) } : undefined,
    admin: { ...config.admin, ...(apiKey === undefined ? {} : { api_key: apiKey }) },
    cluster: { ...config.cluster, workers: 1 },
  };
}

/** Whether any listener needs the server certificate, which the primary then makes before forking. */
export function needsServerTls(config: Readonly<Config>): boolean {
  const mqtt = config.mqtt;
  const ota = config.ota;
  return (mqtt.tls.enabled || (mqtt.ws.enabled && mqtt.ws.tls)) || (ota.enabled && ota.http.enabled && ota.http.tls);
}
