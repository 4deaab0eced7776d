/*
 * mqtt-packet calls its `debug` loggers several times per packet. A disabled
 * `debug` logger still costs a rest-argument array and a getter per call:
 * about 1.2 µs per MQTT message, 5-6 % of the broker's CPU under load in the
 * scenario 8 profile. Loggers whose namespace DEBUG does not enable when they
 * are created get a no-op function instead.
 *
 * This must run before aedes loads mqtt-packet, which is why
 * patches/index.ts imports it first and aedes/nucleon-aedes.ts imports that ahead
 * of aedes. Namespaces enabled through the
 * DEBUG environment variable keep working; enabling one later from code
 * (`debug.enable()`) does not reach loggers created while it was off.
 */
import { createRequire } from 'node:module';

type DebugLogger = ((...args: unknown[]) => void) & { enabled: boolean; namespace: string };
type DebugFactory = ((namespace: string) => DebugLogger) & Record<string, unknown>;

export type QuietDebugState = 'installed' | 'mqtt-packet-already-loaded' | 'debug-not-cached';

function install(): QuietDebugState {
  const require = createRequire(import.meta.url);
  // Resolved the way mqtt-packet resolves it, in case npm nests a different copy.
  const parserPath = createRequire(require.resolve('aedes')).resolve('mqtt-packet/parser.js');
  const debugPath = createRequire(parserPath).resolve('debug');
  if (require.cache[parserPath]) return 'mqtt-packet-already-loaded';
  const real = require(debugPath) as DebugFactory;
  const cached = require.cache[debugPath];
  if (!cached) return 'debug-not-cached';
  const quiet = ((namespace: string): DebugLogger => {
    const logger = real(namespace);
    if (logger.enabled) return logger;
    quietened.push(namespace);
    return disabledLogger(namespace, quiet);
  }) as DebugFactory;
  // enable(), formatters, humanize and the rest still come from the real module.
  Object.setPrototypeOf(quiet, real);
  cached.exports = quiet;
  return 'installed';
}

function disabledLogger(namespace: string, factory: DebugFactory): DebugLogger {
  const logger = (() => undefined) as unknown as DebugLogger & Record<string, unknown>;
  logger.enabled = false;
  logger.namespace = namespace;
  logger.extend = (sub: string, delimiter = ':') => factory(`${namespace}${delimiter}${sub}`);
  logger.destroy = () => false;
  return logger;
}

/** Namespaces that got a no-op logger, in creation order (for tests and diagnostics). */
export const quietened: string[] = [];

export const quietDebugState: QuietDebugState = install();
