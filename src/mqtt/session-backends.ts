import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { Counter } from 'prom-client';
import type { RunnerContext } from '../runner.js';
import { SessionStore, type SessionPersistence, type SessionStoreOptions } from './persistence.js';
import { reportedRetainedPolicy, retainedLimits, type RetainedStoreOptions } from './retained.js';

/** An opened resource of the MQTT runner and how to close it. */
export interface Opened<T> {
  value: T;
  close(): Promise<void>;
}

/**
 * Where sessions live and how messages travel between instances. The default
 * is the embedded one (LevelDB sessions, aedes' in-process emitter); cluster
 * mode supplies Redis for both (redis-backend.ts).
 */
export interface MqttBackend {
  openSessions(options: SessionStoreOptions): Promise<Opened<SessionPersistence>>;
  /** The mqemitter aedes routes through; undefined for aedes' own in-process one. */
  openEmitter?(concurrency: number): Promise<Opened<unknown>>;
}

/** The embedded backend: aedes-persistence-level in `<store.path>/mqtt`. */
export function levelBackend(context: RunnerContext): MqttBackend {
  return {
    openSessions: async (options) => {
      const dbPath = path.join(context.config.store.path, 'mqtt');
      await mkdir(dbPath, { recursive: true });
      const db = new ClassicLevel<string, Buffer>(dbPath, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
      await db.open();
      const store = new SessionStore(db, options);
      return { value: store, close: () => store.close() };
    },
  };
}


/**
 * The retained-message bounds of `[mqtt.limits]`, counted and logged through
 * the runner's registry and logger; for either session store.
 */
export function retainedStoreOptions(context: RunnerContext): RetainedStoreOptions {
  const { config, metrics, logger } = context;
  const compactions = new Counter({
    name: 'nucleon_mqtt_retained_compactions_total',
    help: 'Compactions of the retained messages after clears (embedded store), per result',
    labelNames: ['result'],
    registers: [metrics],
  });
  return {
    policy: reportedRetainedPolicy(retainedLimits(config.mqtt.limits), metrics, logger),
    compactIntervalMs: config.mqtt.limits.retained_compact_interval_ms,
    onCompacted: (error, durationMs) => {
      compactions.inc({ result: error === undefined ? 'ok' : 'failed' });
      if (error === undefined) logger.debug({ durationMs }, 'retained messages compacted');
      else logger.error({ err: error, durationMs }, 'compacting the retained messages failed');
    },
    onResyncFailed: (error) => logger.warn({ err: error }, 'recounting the retained messages failed'),
  };
}

/**
 * The embedded backend (`levelBackend`) with the retained bounds from the
 * config; its close stops compacting before the database closes.
 */
export function embeddedSessions(context: RunnerContext): MqttBackend {
  const level = levelBackend(context);
  return {
    openSessions: async (options) => {
      const opened = await level.openSessions({ ...options, retained: retainedStoreOptions(context) });
      const store = opened.value;
      return {
        value: store,
        close: async () => {
          if (store instanceof SessionStore) await store.stopCompacting();
          await opened.close();
        },
      };
    },
  };
}
