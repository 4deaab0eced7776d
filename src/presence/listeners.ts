import type { Logger } from '../logger.js';
import type { PresenceEntry, PresenceListener } from './presence.js';

/** The listeners of a presence; one that throws is logged and the others are still told. */
export class PresenceListeners {
  private readonly listeners = new Set<PresenceListener>();

  constructor(private readonly logger: Logger) {}

  add(listener: PresenceListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify(uid: string, entry: PresenceEntry | undefined, previous: PresenceEntry | undefined): void {
    for (const listener of this.listeners) {
      try {
        listener(uid, entry, previous);
      } catch (error) {
        this.logger.error({ err: error, uid }, 'presence listener failed');
      }
    }
  }

  clear(): void {
    this.listeners.clear();
  }
}
