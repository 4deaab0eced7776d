import type { Registry } from 'prom-client';
import type { EventBroker } from './broker/index.js';
import type { Config } from './config/index.js';
import type { DurableMode, Event, EventType, LogPosition } from './events.js';
import type { Logger } from './logger.js';
import type { Presence } from './presence/index.js';
import type { KvStore } from './store/index.js';

/** What a runner gets when it starts: everything it may use, nothing global. */
export interface RunnerContext {
  config: Readonly<Config>;
  broker: EventBroker;
  /** Already bound to the runner's name. */
  logger: Logger;
  metrics: Registry;
  store: KvStore;
  /** Who is online (in cluster mode: on any instance); written by the MQTT gateway only. */
  presence: Presence;
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

export interface EventRunnerOptions {
  /**
   * How device events (ApplicationRequest, TelemetryReceived, OtaRequest) are
   * consumed from the durable ingest log (README "Durable ingest"):
   * `handled` (the default) moves the runner's cursor once `handle()` has
   * resolved, so after a crash every event not yet handled is handed out
   * again (`event.log.replay` is true, `event.log.id` as before); `manual`
   * leaves it to the runner (`commit()`); `false` takes device events live
   * only, with nothing replayed.
   */
  durable?: DurableMode | false;
}

/**
 * Helper for the common case: register for some event types and handle them one
 * at a time. Subclasses implement `handle` with an exhaustive switch.
 */
export abstract class EventRunner<K extends EventType> implements Runner {
  protected context: RunnerContext | undefined;
  private readonly durable: DurableMode | false;

  constructor(
    readonly name: string,
    private readonly accepts: readonly K[],
    options: EventRunnerOptions = {},
  ) {
    this.durable = options.durable ?? 'handled';
  }

  async start(context: RunnerContext): Promise<void> {
    this.context = context;
    await this.onStart(context);
    await context.broker.publish({
      type: 'NewRunner',
      name: this.name,
      accepts: this.accepts,
      inbox: { handle: (event) => this.handle(event as Extract<Event, { type: K }>), ...(this.durable ? { durable: this.durable } : {}) },
    });
  }

  /**
   * For `durable: 'manual'`: every device event up to this one (by its log
   * position) is dealt with; after a crash the runner is handed only what
   * came after. A no-op for events that did not come through the log.
   */
  protected commit(position: LogPosition | undefined): void {
    if (position && this.context) this.context.broker.commit(this.name, position.seq);
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
