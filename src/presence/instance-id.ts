import { randomBytes } from 'node:crypto';
import os from 'node:os';

/** This process's id in presence entries: readable in logs and in Redis CLIENT LIST; random so a restarted process is a new owner. */
export function newInstanceId(): string {
  return `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}
