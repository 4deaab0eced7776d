import { hasCode } from '../errors.js';

/*
 * The metric labels of the errors an MQTT connection is closed with: the one
 * place that tells them apart. Nucleon's own errors are recognised by their
 * code (src/errors.ts). aedes 1.2.0 (pinned in package.json) creates its
 * errors with `new Error(text)` and nothing else to tell them by, so those
 * are recognised here by their text, each line naming the message it matches;
 * an aedes upgrade that rewords one only moves its count to the catch-all
 * label (`protocol_error`, `error`), it breaks nothing.
 */

/** `nucleon_mqtt_refused_total{reason}` for an error before the CONNECT was accepted (aedes 'connectionError'). */
export function refusedReason(error: Error): string {
  if (hasCode(error, 'PACKET_TOO_LARGE')) return 'packet_too_large';
  // aedes lib/client.js, the connect timer: new Error('connect did not arrive in time')
  if (error.message.includes('connect did not arrive in time')) return 'connect_timeout';
  // aedes lib/handlers/connect.js errorMessages[6] (CONNACK 6): 'keep alive limit exceeded'
  if (error.message.includes('keep alive limit')) return 'keepalive_out_of_bounds';
  // aedes lib/handlers/connect.js errorMessages[2] (CONNACK 2): 'identifier rejected'
  if (error.message.includes('identifier rejected')) return 'identifier_rejected';
  return 'protocol_error';
}

/** `nucleon_mqtt_disconnects_total{reason}` for an error that closed a connected client (aedes 'clientError'). */
export function disconnectReason(error: Error): string {
  // aedes lib/client.js _handleDrainTimeout: new Error('drain timeout')
  if (error.message.includes('drain timeout')) return 'drain_timeout';
  if (hasCode(error, 'SEND_BUFFER_FULL')) return 'slow_consumer';
  if (hasCode(error, 'PACKET_TOO_LARGE')) return 'packet_too_large';
  return 'error';
}
