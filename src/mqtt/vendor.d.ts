// aedes-persistence-level ships no types; this is the part Nucleon uses.
declare module 'aedes-persistence-level/asyncPersistence.js' {
  import type { Aedes, Client, PublishPacket, Subscription } from 'aedes';

  export interface QueuedSubscription {
    clientId: string;
    topic: string;
    qos: number;
  }

  export default class AsyncLevelPersistence {
    constructor(db: unknown);
    readonly broker: Aedes | undefined;
    setup(broker: Aedes): Promise<void>;
    addSubscriptions(client: Client, subs: Subscription[]): Promise<void>;
    removeSubscriptions(client: Client, topics: string[]): Promise<void>;
    /** Removes all of a client's subscriptions (through removeSubscriptions). */
    cleanSubscriptions(client: Client): Promise<void>;
    subscriptionsByTopic(topic: string): Promise<QueuedSubscription[]>;
    outgoingEnqueue(sub: { clientId: string }, packet: PublishPacket): Promise<void>;
    outgoingEnqueueCombi(subs: QueuedSubscription[], packet: PublishPacket): Promise<unknown>;
    outgoingUpdate(client: Client, packet: PublishPacket): Promise<void>;
    outgoingClearMessageId(client: Client, packet: PublishPacket): Promise<PublishPacket | undefined>;
    storeRetained(packet: PublishPacket): Promise<void>;
    delWill(client: { id: string; brokerId?: string }): Promise<unknown>;
    createRetainedStreamCombi(patterns: string[]): AsyncIterable<PublishPacket> | NodeJS.ReadableStream;
    createRetainedStream(pattern: string): AsyncIterable<PublishPacket> | NodeJS.ReadableStream;
    outgoingStream(client: Client): AsyncIterable<PublishPacket> | NodeJS.ReadableStream;
    destroy(): Promise<void>;
  }
}

// aedes-persistence-redis ships no types either; the same surface.
declare module 'aedes-persistence-redis/asyncPersistence.js' {
  import type { Aedes, Client, PublishPacket, Subscription } from 'aedes';

  export default class AsyncRedisPersistence {
    constructor(options: { conn: unknown; maxSessionDelivery?: number; packetTTL?: (packet: PublishPacket) => number });
    setup(broker: Aedes): Promise<void>;
    addSubscriptions(client: Client, subs: Subscription[]): Promise<void>;
    outgoingEnqueue(sub: { clientId: string }, packet: PublishPacket): Promise<void>;
    outgoingEnqueueCombi(subs: { clientId: string }[], packet: PublishPacket): Promise<void>;
    outgoingClearMessageId(client: Client, packet: PublishPacket): Promise<PublishPacket | undefined>;
    storeRetained(packet: PublishPacket): Promise<void>;
    delWill(client: { id: string; brokerId?: string }): Promise<unknown>;
    createRetainedStreamCombi(patterns: string[]): AsyncIterable<PublishPacket> | NodeJS.ReadableStream;
    createRetainedStream(pattern: string): AsyncIterable<PublishPacket> | NodeJS.ReadableStream;
    outgoingStream(client: Client): AsyncIterable<PublishPacket> | NodeJS.ReadableStream;
    destroy(): Promise<void>;
  }
}

declare module 'qlobber' {
  export interface QlobberOptions {
    separator?: string;
    wildcard_one?: string;
    wildcard_some?: string;
    match_empty_levels?: boolean;
  }
  export class Qlobber {
    constructor(options?: QlobberOptions);
    add(topic: string, value: unknown): this;
    remove(topic: string, value?: unknown): this;
    match(topic: string): unknown[];
    clear(): this;
  }
}
