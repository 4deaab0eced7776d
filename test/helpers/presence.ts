// Stands in for the MQTT gateway where a test feeds device events straight into
// the broker: each DeviceConnected opens a presence connection, each
// DeviceDisconnected closes the oldest open one with its client id (as a session
// takeover does: the new connection arrives before the old one's goodbye).
import type { Event } from '../../src/events.js';
import { silentLogger } from '../../src/logger.js';
import { LocalPresence, type PresenceEntry } from '../../src/presence/index.js';

export class SimulatedDevices {
  readonly presence = new LocalPresence('test-instance', silentLogger());
  private readonly open = new Map<string, PresenceEntry[]>();

  /** Applies a presence event to `presence` (other events are ignored). */
  apply(event: Event): void {
    if (event.type === 'DeviceConnected') {
      const { uid, clientId, remoteAddress, authMethod, at } = event;
      const open = this.open.get(clientId) ?? [];
      open.push(this.presence.connected({ uid, clientId, remoteAddress, authMethod, at }));
      this.open.set(clientId, open);
    } else if (event.type === 'DeviceDisconnected') {
      const open = this.open.get(event.clientId);
      const oldest = open?.shift();
      if (oldest) this.presence.disconnected(oldest);
      if (open?.length === 0) this.open.delete(event.clientId);
    }
  }
}
