import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generatePassword } from '../../src/devices/credentials.js';
import { randomSecret } from '../../src/util/secret.js';

/*
 * Generated secrets are passed on command lines (`--api-key`, `--password`):
 * base64url starts one in 64 of them with `-`, which a command line takes for
 * an option (seen in CI: "Option '--api-key' argument is ambiguous").
 */
test('a generated secret never starts with "-", is base64url and has the length its bytes give', () => {
  // Without the redraw, 20,000 draws all avoid "-" with probability (63/64)^20000, about 1e-137.
  for (let i = 0; i < 20_000; i++) {
    const secret = randomSecret(32);
    assert.equal(secret.startsWith('-'), false, secret);
    assert.match(secret, /^[A-Za-z0-9_-]{43}$/);
  }
  for (let i = 0; i < 20_000; i++) assert.equal(generatePassword().startsWith('-'), false);
  assert.equal(generatePassword().length, 32);
});
