import { randomBytes } from 'node:crypto';
import os from 'node:os';

/**
 * This process's id in presence entries: readable in logs and in Redis CLIENT
 * LIST; random so a restarted process is a new owner. A worker of
 * `nucleon serve --workers N` carries its slot (`<host>-w<slot>-<pid>-<random>`):
 * the slot stays the same when the primary restarts that worker, so an
 * operator (and admin `devices.list`) sees which worker holds a device.
 */
export function newInstanceId(options: { worker?: number } = {}): string {
  const slot = options.worker === undefined ? '' : `-w${options.worker}`;
  return `${os.hostname()}${slot}-${process.pid}-${randomBytes(3).toString('hex')}`;
}
