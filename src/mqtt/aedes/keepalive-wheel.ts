/*
 * aedes gives every client with a keepalive its own Node timer: a Timeout
 * (120 B, and its numbers), a `keepaliveTimeout` closure with its context,
 * about 0.3 KB of heap on every idle device, refreshed on every packet the
 * client sends (`client._keepaliveTimer.refresh()` in aedes' packet handler).
 * Here, once the client is connected ('clientReady'), that timer is cleared
 * and the client is watched by one wheel per broker instead: an entry of two
 * fields whose `refresh()` notes the time, and one interval that sweeps the
 * entries and does what aedes' timer did for a client whose 1.5 × keepalive
 * (`client._keepaliveInterval`, set by aedes) has passed with no packet:
 * emit 'keepaliveTimeout' on the broker and a 'keep alive timeout' error on
 * the client, which closes it.
 *
 * A client is never timed out early; it may be up to one sweep (SWEEP_MS)
 * late, as with Mosquitto, which checks keepalives from its main loop. aedes'
 * close() clears `_keepaliveTimer` (clearTimeout ignores an entry, which is
 * not a Node timer) and sets it to null; the sweep drops every entry that is
 * no longer its client's timer. The interval runs only while entries exist.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Aedes, Client } from 'aedes';
import { DependencyMismatchError } from '../../errors.js';
import { installedVersion } from './versions.js';

/** How often the wheel looks for clients past their keepalive. */
export const SWEEP_MS = 500;

/** The parts of aedes 1.x's Client the wheel reads and replaces. */
interface KeepaliveClient {
  closed: boolean;
  _keepaliveInterval?: number;
  _keepaliveTimer: unknown;
  broker: { emit(event: 'keepaliveTimeout', client: unknown): boolean };
  emit(event: 'error', error: Error): boolean;
}

/** A client's place in the wheel; aedes calls `refresh()` on every packet the client sends. */
class KeepaliveEntry {
  seen = performance.now();

  constructor(readonly client: KeepaliveClient) {}

  refresh(): this {
    this.seen = performance.now();
    return this;
  }
}

/** Whether aedes' timer looks like what the wheel replaces: a Node Timeout with aedes' interval, on a connected client. */
function hasNodeKeepalive(client: KeepaliveClient): boolean {
  const timer = client._keepaliveTimer as { refresh?: unknown; hasRef?: unknown } | null;
  return !client.closed && typeof client._keepaliveInterval === 'number' && client._keepaliveInterval > 0 && typeof timer?.refresh === 'function' && typeof timer.hasRef === 'function';
}

export class KeepaliveWheel {
  private entries: KeepaliveEntry[] = [];
  private timer: NodeJS.Timeout | undefined;

  /** Clients watched now. */
  get size(): number {
    return this.entries.length;
  }

  /** Takes over `client`'s keepalive from its Node timer; a client without one (keepalive 0) is left alone. */
  watch(client: KeepaliveClient): void {
    if (!hasNodeKeepalive(client)) return;
    clearTimeout(client._keepaliveTimer as NodeJS.Timeout);
    const entry = new KeepaliveEntry(client);
    client._keepaliveTimer = entry;
    this.entries.push(entry);
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(), SWEEP_MS);
      // Clients keep the process alive through their sockets, not through this.
      this.timer.unref();
    }
  }

  /** Ends every client past its keepalive and forgets the ones that closed. */
  sweep(now = performance.now()): void {
    const expired: KeepaliveClient[] = [];
    let kept = 0;
    for (const entry of this.entries) {
      const client = entry.client;
      if (client._keepaliveTimer !== entry) continue;
      if (now - entry.seen >= (client._keepaliveInterval ?? 0)) expired.push(client);
      else this.entries[kept++] = entry;
    }
    this.entries.length = kept;
    if (kept === 0) this.stop();
    // After the list is consistent: each close below runs aedes' close(), which clears the client's timer.
    for (const client of expired) {
      client.broker.emit('keepaliveTimeout', client);
      client.emit('error', new Error('keep alive timeout'));
    }
  }

  /** Stops the sweep and forgets every entry (the broker is closing its clients). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.entries = [];
  }
}

/**
 * Checks that aedes still keeps a client's keepalive as the wheel expects: its
 * packet handler refreshes `client._keepaliveTimer`, and close() clears it with
 * clearTimeout and sets it to null. Throws DependencyMismatchError otherwise.
 */
export function checkKeepalive(probe: object): void {
  const close = (Object.getPrototypeOf(probe) as { close?: unknown }).close;
  const closeClears = typeof close === 'function' && /clearTimeout\(this\._keepaliveTimer\)/.test(close.toString()) && /this\._keepaliveTimer = null/.test(close.toString());
  const handlers = path.join(path.dirname(createRequire(import.meta.url).resolve('aedes')), 'lib', 'handlers', 'index.js');
  const refreshes = /client\._keepaliveTimer\.refresh\(\)/.test(readFileSync(handlers, 'utf8'));
  if (!closeClears || !refreshes) {
    throw new DependencyMismatchError('aedes', installedVersion('aedes'), "a client's keepalive is not refreshed through _keepaliveTimer.refresh() and cleared in close() where src/mqtt/aedes/keepalive-wheel.ts expects it");
  }
}

/** One wheel per broker, watching each client from the moment it is connected. Stopped when the broker closes. */
export function wheelKeepalives(aedes: Aedes): KeepaliveWheel {
  const wheel = new KeepaliveWheel();
  aedes.on('clientReady', (client: Client) => wheel.watch(client as unknown as KeepaliveClient));
  aedes.once('closed', () => wheel.stop());
  return wheel;
}
