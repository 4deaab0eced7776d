import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { z } from 'zod';
import { parse as parseToml } from 'smol-toml';
import { configSchema } from '../../src/config/schema.js';
import { validateConfig } from '../../src/config/index.js';
import { BEGIN, END, configReference, documentedKeys } from '../../scripts/config-reference.js';
import { repoRoot } from '../helpers/index.js';

const toml = readFileSync(path.join(repoRoot, 'config.toml'), 'utf8');
const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');

/** Leaf key paths of the schema, looking through optional/default/prefault wrappers. */
function schemaKeys(schema: z.ZodType, prefix = ''): string[] {
  let inner = schema as z.ZodType & { def: { innerType?: z.ZodType; type: string }; shape?: Record<string, z.ZodType> };
  while (inner.def.innerType) inner = inner.def.innerType;
  if (inner.def.type !== 'object' || !inner.shape) return [prefix];
  return Object.entries(inner.shape).flatMap(([key, value]) => schemaKeys(value, prefix ? `${prefix}.${key}` : key));
}

test('config.toml documents exactly the keys of the schema, each with a comment', () => {
  const documented = documentedKeys(toml);
  const names = documented.map((k) => `${k.section}.${k.key}`);
  assert.deepEqual([...names].sort(), schemaKeys(configSchema).sort());
  assert.deepEqual(documented.filter((k) => k.comment === '').map((k) => `${k.section}.${k.key}`), []);
});

test('config.toml with its example sections switched on is valid', () => {
  // Uncomment `# key = value` and `# [section]` lines: the examples must parse and validate.
  const uncommented = toml
    .split('\n')
    .map((line) => (/^#\s*(\[[a-z_.]+\]|[a-z0-9_]+\s*=)/.test(line) ? line.replace(/^#\s*/, '') : line))
    .join('\n');
  const config = validateConfig(parseToml(uncommented), { label: 'config.toml' });
  assert.ok(config.influx);
  assert.ok(config.cluster);
});

test('the README configuration reference is generated from config.toml and current', () => {
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  assert.ok(start >= 0 && end > start, 'README.md has the config-reference block');
  assert.equal(
    readme.slice(start, end + END.length),
    configReference(toml),
    'README is stale: run `node --import tsx scripts/config-reference.ts`',
  );
});
