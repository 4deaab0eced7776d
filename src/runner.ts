import type { Registry } from 'prom-client';
import type { EventBroker } from './broker/index.js';
import type { Config } from './config/index.js';
import type { Event, EventType } from './events.js';
import type { Logger } from './logger.js';
import type { KvStore } from './store/index.js';

/** What a runner gets when it starts: everything it may use, nothing global. */
export interface RunnerContext {
  config: Readonly<Config>;
  broker: EventBroker;
  /** Already bound to the runner's name. */
  logger: Logger;
  metrics: Registry;
  store: KvStore;
}

/**
 * A long-running part of Nucleon. `start()` registers with the broker (a
 * `NewRunner` event) before it handles anything; `stop()` closes all it opened
 * and is safe to call twice.
 */
export interface Runner {
  readonly name: string;
  /** Runners that accept outside connections start after the others and stop first. */
  readonly listens?: boolean;
  start(context: RunnerContext): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Helper for the common case: register for some event types and handle them one
 * at a time. Subclasses implement `handle` with an exhaustive switch.
 */
export abstract class EventRunner<K extends EventType> implements Runner {
  protected context: RunnerContext | undefined;

  constructor(
    readonly name: string,
    private readonly accepts: readonly K[],
  ) {}

  async start(context: RunnerContext): Promise<void> {
    this.context = context;
    await this.onStart(context);
    await context.broker.publish({
      type: 'NewRunner',
      name: this.name,
      accepts: this.accepts,
      inbox: { handle: (event) => this.handle(event as Extract<Event, { type: K }>) },
    });
  }

  async stop(): Promise<void> {
    const context = this.context;
    if (!context) return;
    this.context = undefined;
    context.broker.unregister(this.name);
    await this.onStop(context);
  }

  protected abstract handle(event: Extract<Event, { type: K }>): void | Promise<void>;

  protected async onStart(_context: RunnerContext): Promise<void> {}
  protected async onStop(_context: RunnerContext): Promise<void> {}

  /** Sends an event with back-pressure. */
  protected publish(event: Event): Promise<void> {
    if (!this.context) return Promise.reject(new Error(`runner ${this.name} is not started`));
    return this.context.broker.publish(event);
  }
}
