/**
 * A small application runner: devices publish CBOR environment readings on
 * `<uid>/app/p/env`; the app stores them as Influx points and answers each on
 * `<uid>/app/s/env` with a CBOR acknowledgement. Admin clients can ask it for
 * per-device counts with `app.request` (target `env.stats`).
 *
 * Run it: `npm run build && node --import tsx examples/main.ts`.
 */
import { EventRunner, protocol, type EventOf } from '../src/index.js';

export interface EnvReading {
  temperature?: number;
  humidity?: number;
}

type Accepted = 'ApplicationRequest' | 'ApplicationManagementRequest';

export class EnvApp extends EventRunner<Accepted> {
  private readonly counts = new Map<string, number>();

  constructor() {
    super('env-app', ['ApplicationRequest', 'ApplicationManagementRequest']);
  }

  protected async handle(event: EventOf<Accepted>): Promise<void> {
    switch (event.type) {
      case 'ApplicationRequest':
        return this.onReading(event);
      case 'ApplicationManagementRequest':
        return this.onManagement(event);
    }
  }

  private async onReading(event: EventOf<'ApplicationRequest'>): Promise<void> {
    if (event.target !== 'env') return;
    let reading: EnvReading;
    try {
      reading = parseReading(protocol.decodeCbor(event.payload));
    } catch (error) {
      // A bad reading is answered, not ignored: the device learns why.
      await this.publish({ type: 'ApplicationResponse', uid: event.uid, target: 'env', payload: protocol.encodeCbor({ ok: false, error: (error as Error).message }) });
      return;
    }
    const count = (this.counts.get(event.uid) ?? 0) + 1;
    this.counts.set(event.uid, count);
    const fields: Record<string, number> = {};
    if (reading.temperature !== undefined) fields.temperature = reading.temperature;
    if (reading.humidity !== undefined) fields.humidity = reading.humidity;
    if (Object.keys(fields).length > 0) {
      await this.publish({ type: 'InfluxDataSave', points: [{ measurement: 'env', tags: { id: event.uid }, fields, timestampMs: event.receivedAt }] });
    }
    await this.publish({ type: 'ApplicationResponse', uid: event.uid, target: 'env', payload: protocol.encodeCbor({ ok: true, count }) });
  }

  private async onManagement(event: EventOf<'ApplicationManagementRequest'>): Promise<void> {
    if (event.target !== 'env.stats') {
      await this.publish({ type: 'ApplicationManagementResponse', correlationId: event.correlationId, error: { code: 'UNKNOWN_TARGET', message: `env-app has no target "${event.target}"` } });
      return;
    }
    await this.publish({ type: 'ApplicationManagementResponse', correlationId: event.correlationId, payload: Object.fromEntries(this.counts) });
  }
}

function parseReading(value: unknown): EnvReading {
  // Devices send a map keyed by field index (0 temperature, 1 humidity) or by name.
  const get = (index: number, name: string): unknown => {
    if (value instanceof Map) return value.has(index) ? value.get(index) : value.get(name);
    throw new Error('expected a CBOR map');
  };
  const reading: EnvReading = {};
  const temperature = get(0, 'temperature');
  const humidity = get(1, 'humidity');
  if (temperature !== undefined && temperature !== null) {
    if (typeof temperature !== 'number') throw new Error('temperature must be a number');
    reading.temperature = temperature;
  }
  if (humidity !== undefined && humidity !== null) {
    if (typeof humidity !== 'number') throw new Error('humidity must be a number');
    reading.humidity = humidity;
  }
  return reading;
}
