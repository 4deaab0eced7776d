// The metric labels of the errors an MQTT connection closes with (src/mqtt/connection-errors.ts):
// Nucleon's own errors by their code, aedes' by their text, and that text is still what aedes says.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';
import { PacketTooLargeError, SendBufferFullError } from '../../src/errors.js';
import { disconnectReason, refusedReason } from '../../src/mqtt/connection-errors.js';

test("Nucleon's own connection errors are told apart by their code, with the messages they always had", () => {
  const tooLarge = new PacketTooLargeError(4096, 1024);
  assert.equal(tooLarge.message, 'packet too large: 4096 bytes, the limit is 1024');
  assert.equal(refusedReason(tooLarge), 'packet_too_large');
  assert.equal(disconnectReason(tooLarge), 'packet_too_large');
  const full = new SendBufferFullError(5_000_000, 4_194_304);
  assert.equal(full.message, 'send buffer full: 5000000 bytes unsent, the limit is 4194304 (slow consumer)');
  assert.equal(disconnectReason(full), 'slow_consumer');
  // The text alone is not enough: only the code counts.
  assert.equal(disconnectReason(new Error('packet too large: 1 bytes')), 'error');
});

test("aedes' errors are told apart by their text; anything else falls to the catch-all label", () => {
  assert.equal(refusedReason(new Error('connect did not arrive in time')), 'connect_timeout');
  assert.equal(refusedReason(new Error('keep alive limit exceeded')), 'keepalive_out_of_bounds');
  assert.equal(refusedReason(new Error('identifier rejected')), 'identifier_rejected');
  assert.equal(refusedReason(new Error('Invalid protocolId')), 'protocol_error');
  assert.equal(disconnectReason(new Error('drain timeout')), 'drain_timeout');
  assert.equal(disconnectReason(new Error('keep alive timeout')), 'error');
});

test('the aedes messages matched by text are still in the installed aedes', () => {
  const require = createRequire(import.meta.url);
  const lib = path.join(path.dirname(require.resolve('aedes')), 'lib');
  const client = readFileSync(path.join(lib, 'client.js'), 'utf8');
  const connect = readFileSync(path.join(lib, 'handlers', 'connect.js'), 'utf8');
  assert.match(client, /new Error\('connect did not arrive in time'\)/);
  assert.match(client, /new Error\('drain timeout'\)/);
  assert.match(connect, /'identifier rejected'/);
  assert.match(connect, /'keep alive limit exceeded'/);
});
