import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LoggerOptions {
  level: LevelWithSilent;
  /** `auto`: human-readable when stdout is a terminal, JSON otherwise. */
  format: 'json' | 'pretty' | 'auto';
}

export function createLogger(options: LoggerOptions): Logger {
  const pretty = options.format === 'pretty' || (options.format === 'auto' && process.stdout.isTTY === true);
  if (!pretty) return pino({ level: options.level, base: { name: 'nucleon' } });
  return pino({
    level: options.level,
    base: { name: 'nucleon' },
    transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' } },
  });
}

/** A logger that discards everything, for library users who pass none and for tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
