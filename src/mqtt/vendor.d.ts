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
    outgoingEnqueue(sub: { clientId: string }, packet: PublishPacket): Promise<void>;
    outgoingEnqueueCombi(subs: QueuedSubscription[], packet: PublishPacket): Promise<unknown>;
    outgoingClearMessageId(client: Client, packet: PublishPacket): Promise<PublishPacket | undefined>;
    destroy(): Promise<void>;
  }
}
