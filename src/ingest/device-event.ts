import type { DeviceEvent } from '../events.js';
import { decodeOtaRequest, PayloadError, readTelemetry, TelemetryFields, type RefusedTelemetryField } from '../protocol/index.js';
import type { DeviceMessage } from './record.js';

/** The event a device message becomes, or why its payload was refused. */
export type DecodeResult = { ok: true; event: DeviceEvent; notes?: TelemetryNotes } | { ok: false; reason: string; message: string };

/** What a telemetry message carried that did not make it into its event, for the live path to count and log. */
export interface TelemetryNotes {
  readonly unknownKeys: readonly (number | string)[];
  readonly refused: readonly RefusedTelemetryField[];
}

/**
 * Turns a device message into its event (DESIGN.md section 1): `app` →
 * ApplicationRequest, `tel` → TelemetryReceived, `ota` → OtaRequest. The
 * live path and a replay from the ingest log both come through here, so a
 * replayed event is the event that was first handed out. `payload` is kept
 * by an ApplicationRequest: pass a copy, not a socket's read buffer.
 * `fields` are the configured extra telemetry fields (`[[telemetry.fields]]`).
 */
export function deviceEvent(message: DeviceMessage, fields: TelemetryFields = TelemetryFields.none): DecodeResult {
  const { uid, receivedAt } = message;
  switch (message.kind) {
    case 'app':
      return { ok: true, event: { type: 'ApplicationRequest', uid, target: message.target, payload: message.payload, receivedAt } };
    case 'tel':
      try {
        const { telemetry, unknownKeys, refused } = readTelemetry(message.payload, fields);
        const event: DeviceEvent = { type: 'TelemetryReceived', uid, telemetry, receivedAt };
        return unknownKeys.length === 0 && refused.length === 0 ? { ok: true, event } : { ok: true, event, notes: { unknownKeys, refused } };
      } catch (error) {
        return refused(error);
      }
    case 'ota':
      try {
        return { ok: true, event: { type: 'OtaRequest', uid, ...decodeOtaRequest(message.payload), receivedAt } };
      } catch (error) {
        return refused(error);
      }
  }
}

function refused(error: unknown): DecodeResult {
  if (error instanceof PayloadError) return { ok: false, reason: error.reason, message: error.message };
  throw error;
}
