// README "Errors" documents every code of the catalogue (src/errors.ts) and no code that does not exist,
// each row saying what the catalogue says (as fastify's test/internals/errors.test.js does for its docs).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ADMIN_ERROR_CODES } from '../../src/admin/protocol.js';
import { codeOfHttpStatus, codesOf, ERROR_CODES, exitCodeOf, type ErrorCode, type ErrorCodeInfo } from '../../src/errors.js';
import { repoRoot } from '../helpers/index.js';

const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
const catalogue = Object.keys(ERROR_CODES) as ErrorCode[];

/** The table rows of README "## Errors", by the code in their first cell. */
function documentedRows(markdown: string): Map<string, string> {
  const start = markdown.indexOf('\n## Errors\n');
  assert.ok(start >= 0, 'README.md has a "## Errors" section');
  const end = markdown.indexOf('\n## ', start + 1);
  const rows = new Map<string, string>();
  for (const line of markdown.slice(start, end < 0 ? undefined : end).split('\n')) {
    const code = /^\| `([A-Z0-9_]+)` \|/.exec(line)?.[1];
    if (code === undefined) continue;
    assert.ok(!rows.has(code), `README "Errors" lists ${code} twice`);
    rows.set(code, line);
  }
  return rows;
}

function infoOf(code: ErrorCode): ErrorCodeInfo {
  return ERROR_CODES[code];
}

/** The row the catalogue says a code should have. */
function expectedRow(code: ErrorCode): string {
  const info = infoOf(code);
  return `| \`${code}\` | ${info.areas.join(', ')} | ${exitCodeOf(code)} | ${info.httpStatus ?? '–'} | ${info.meaning} |`;
}

test('README "Errors" lists every code of the catalogue, and no code the catalogue does not have', () => {
  const documented = [...documentedRows(readme).keys()];
  assert.deepEqual(
    catalogue.filter((code) => !documented.includes(code)),
    [],
    'codes in src/errors.ts that README "Errors" does not document',
  );
  assert.deepEqual(
    documented.filter((code) => !(catalogue as string[]).includes(code)),
    [],
    'codes README "Errors" documents that src/errors.ts does not have',
  );
});

test('each README "Errors" row says what the catalogue says: where, exit code, HTTP status, meaning', () => {
  const rows = documentedRows(readme);
  for (const code of catalogue) {
    const row = rows.get(code);
    if (row !== undefined) assert.equal(row, expectedRow(code), `README "Errors" row of ${code}; the catalogue (src/errors.ts) says the expected line`);
  }
});

test('the catalogue holds together: meanings fit a table cell, each HTTP status maps back to one code', () => {
  for (const code of catalogue) assert.ok(!ERROR_CODES[code].meaning.includes('|'), `${code}: a | would split the README row`);
  const statuses = catalogue.flatMap((code) => infoOf(code).httpStatus ?? []);
  assert.equal(new Set(statuses).size, statuses.length, 'the CLI maps an HTTP status back to one code');
  for (const code of catalogue) {
    const status = infoOf(code).httpStatus;
    if (status !== undefined) assert.equal(codeOfHttpStatus(status), code);
  }
});

test('the codes sent to admin clients and in OTA answers are the same strings as before the catalogue (clients match on them)', () => {
  // Codes are added, never renamed or removed: FORBIDDEN came with read-only admin keys, TOO_LARGE with the REST API.
  assert.deepEqual(
    [...ADMIN_ERROR_CODES].sort(),
    ['BAD_MESSAGE', 'FORBIDDEN', 'INTERNAL', 'INVALID_ARGUMENT', 'NOT_FOUND', 'OVERLOADED', 'RATE_LIMITED', 'TIMEOUT', 'TOO_LARGE', 'TOO_MANY_PENDING', 'UNAUTHENTICATED', 'UNAUTHORIZED', 'UNAVAILABLE', 'UNKNOWN_COMMAND', 'UNSUPPORTED_VERSION'],
  );
  assert.deepEqual(codesOf('ota').sort(), ['CONFLICT', 'INVALID_ARGUMENT', 'NOT_FOUND', 'STORAGE_FAILED', 'VERSION_DOWNGRADE']);
});
