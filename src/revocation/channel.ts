import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import { connectIfIdle, type RedisConnections } from '../redis-connections.js';
import type { Revocation } from './revocation.js';

/** What one instance tells the others (and itself) after it changed the store. */
export type ChannelMessage = { op: 'put'; key: string; entry: Revocation } | { op: 'del'; key: string } | { op: 'kick'; uid: string };

export interface ChannelHandlers {
  deliver(message: ChannelMessage): void;
  /** Messages may have been missed (a Redis reconnect): read the store again. */
  resync(): void;
}

/** How changes reach every instance: in-process for one instance, Redis pub/sub for a cluster. */
export interface RevocationChannel {
  open(handlers: ChannelHandlers): Promise<void>;
  publish(message: ChannelMessage): Promise<void>;
  close(): Promise<void>;
}

/** One instance: the message is handled before publish() returns. */
export class LocalChannel implements RevocationChannel {
  private handlers: ChannelHandlers | undefined;

  async open(handlers: ChannelHandlers): Promise<void> {
    this.handlers = handlers;
  }

  async publish(message: ChannelMessage): Promise<void> {
    this.handlers?.deliver(message);
  }

  async close(): Promise<void> {
    this.handlers = undefined;
  }
}

/**
 * Cluster mode: `<ns>revocations:changes`. Pub/sub delivers at most once and
 * only to instances connected now, so every (re)subscription reads the whole
 * list from the store again; the store, not the channel, is the truth.
 */
export class RedisChannel implements RevocationChannel {
  private pub: Redis | undefined;
  private sub: Redis | undefined;

  constructor(
    private readonly url: string,
    private readonly channel: string,
    private readonly connections: RedisConnections,
    private readonly logger: Logger,
  ) {}

  async open(handlers: ChannelHandlers): Promise<void> {
    const pub = this.connections.connect('revocations', this.url, { maxRetriesPerRequest: 1 });
    const sub = this.connections.connect('revocations-changes', this.url, { maxRetriesPerRequest: null });
    this.pub = pub;
    this.sub = sub;
    sub.on('message', (_channel: string, text: string) => {
      const message = parseMessage(text);
      if (message) handlers.deliver(message);
      else this.logger.warn({ message: text.slice(0, 200) }, 'dropped a revocation message that is not one');
    });
    let subscribed = false;
    // ioredis subscribes again after a reconnect; what was published meanwhile is read from the store.
    sub.on('ready', () => {
      if (subscribed) handlers.resync();
    });
    await connectIfIdle(pub);
    await connectIfIdle(sub);
    await sub.subscribe(this.channel);
    subscribed = true;
  }

  async publish(message: ChannelMessage): Promise<void> {
    if (!this.pub) throw new Error('the revocation channel is not open');
    await this.pub.publish(this.channel, JSON.stringify(message));
  }

  async close(): Promise<void> {
    if (!this.pub) return;
    this.pub = undefined;
    this.sub = undefined;
    await this.connections.release('revocations-changes');
    await this.connections.release('revocations');
  }
}

function parseMessage(text: string): ChannelMessage | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // Not JSON: the caller logs it as a message that is not one.
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const message = value as Partial<Record<string, unknown>>;
  if (message.op === 'put' && typeof message.key === 'string' && typeof message.entry === 'object' && message.entry !== null) return message as ChannelMessage;
  if (message.op === 'del' && typeof message.key === 'string') return message as ChannelMessage;
  if (message.op === 'kick' && typeof message.uid === 'string') return message as ChannelMessage;
  return undefined;
}
