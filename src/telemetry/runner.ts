import type { EventOf } from '../events.js';
import { EventRunner } from '../runner.js';
import { RecentTelemetry } from './recent.js';

/**
 * Keeps the last `[telemetry] recent_per_device` points per device in the
 * embedded store (see RecentTelemetry for the key layout). Started instead of
 * the Influx runner when no `[influx]` section is configured.
 */
export class RecentTelemetryRunner extends EventRunner<'TelemetryReceived'> {
  constructor() {
    super('telemetry-recent', ['TelemetryReceived']);
  }

  protected async handle(event: EventOf<'TelemetryReceived'>): Promise<void> {
    const context = this.context;
    if (!context) return;
    await RecentTelemetry.record(context.store, event.uid, event.telemetry, event.receivedAt, context.config.telemetry.recent_per_device);
  }
}
