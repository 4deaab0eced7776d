import type { Aedes, PublishPacket } from 'aedes';
import type { Logger } from '../logger.js';

export interface SysFigures {
  version: string;
  clients: { devices: number; services: number; anonymous: number };
  /** Device and client messages taken in, and server messages sent, since start. */
  received: number;
  sent: number;
}

/**
 * Mosquitto-style `$SYS/broker/…` topics (README "$SYS"), published retained
 * every `intervalS` seconds so a subscriber gets the latest at once. Only
 * service accounts may subscribe to them (src/mqtt/acl.ts). The rates are per
 * minute over the last interval, as Mosquitto's `load/…/1min`.
 */
export class SysTopics {
  private timer: NodeJS.Timeout | undefined;
  private readonly startedAt = Date.now();
  private last: { at: number; received: number; sent: number } | undefined;

  constructor(
    private readonly aedes: Aedes,
    private readonly figures: () => SysFigures,
    private readonly intervalS: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    if (this.intervalS <= 0) return;
    this.publishAll();
    this.timer = setInterval(() => this.publishAll(), this.intervalS * 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private publishAll(): void {
    const now = Date.now();
    const figures = this.figures();
    const { devices, services, anonymous } = figures.clients;
    const topics: [string, string | number][] = [
      ['version', `nucleon ${figures.version}`],
      ['uptime', `${Math.floor((now - this.startedAt) / 1000)} seconds`],
      ['clients/connected', devices + services + anonymous],
      ['clients/devices', devices],
      ['clients/services', services],
      ['clients/anonymous', anonymous],
      ['messages/received', figures.received],
      ['messages/sent', figures.sent],
    ];
    if (this.last) {
      const minutes = (now - this.last.at) / 60_000;
      if (minutes > 0) {
        topics.push(['load/messages/received/1min', Math.round((figures.received - this.last.received) / minutes)]);
        topics.push(['load/messages/sent/1min', Math.round((figures.sent - this.last.sent) / minutes)]);
      }
    }
    this.last = { at: now, received: figures.received, sent: figures.sent };
    for (const [topic, value] of topics) {
      const packet = { cmd: 'publish', topic: `$SYS/broker/${topic}`, payload: Buffer.from(String(value)), qos: 0, retain: true, dup: false } as PublishPacket;
      this.aedes.publish(packet, (error?: Error) => {
        if (error) this.logger.debug({ err: error, topic: packet.topic }, '$SYS publish failed');
      });
    }
  }
}
