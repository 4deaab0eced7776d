import { randomBytes } from 'node:crypto';

/**
 * A generated secret (API key, password): `bytes` random bytes, base64url.
 * It never starts with `-`, which base64url gives one draw in 64: a command
 * line reads such a value as an option (`nucleon … --api-key -x…` failed with
 * "argument is ambiguous", seen in CI). Redrawing keeps every secret uniform
 * over the allowed ones.
 */
export function randomSecret(bytes: number): string {
  for (;;) {
    const secret = randomBytes(bytes).toString('base64url');
    if (!secret.startsWith('-')) return secret;
  }
}
