import type { Event } from '../events.js';
import { decodeOtaRequest, decodeTelemetry, PayloadError, type DeviceTopic } from '../protocol/index.js';

/** The event a device message becomes, or why its payload was refused. */
export type IngestResult = { ok: true; event: Event } | { ok: false; reason: string; message: string };

/**
 * Turns an authorised device publish into its event (DESIGN.md section 1):
 * `app` → ApplicationRequest (payload copied, so the socket's read buffer is
 * not held while the event waits in an inbox), `tel` → TelemetryReceived,
 * `ota` → OtaRequest. Telemetry only becomes TelemetryReceived: the Influx
 * runner turns it into points itself.
 */
export function deviceEvent(topic: DeviceTopic, payload: Buffer, receivedAt: number): IngestResult {
  switch (topic.kind) {
    case 'app':
      return { ok: true, event: { type: 'ApplicationRequest', uid: topic.uid, target: topic.target, payload: Uint8Array.prototype.slice.call(payload), receivedAt } };
    case 'tel':
      try {
        return { ok: true, event: { type: 'TelemetryReceived', uid: topic.uid, telemetry: decodeTelemetry(payload), receivedAt } };
      } catch (error) {
        return refused(error);
      }
    case 'ota':
      try {
        return { ok: true, event: { type: 'OtaRequest', uid: topic.uid, ...decodeOtaRequest(payload), receivedAt } };
      } catch (error) {
        return refused(error);
      }
  }
}

function refused(error: unknown): IngestResult {
  if (error instanceof PayloadError) return { ok: false, reason: error.reason, message: error.message };
  throw error;
}
