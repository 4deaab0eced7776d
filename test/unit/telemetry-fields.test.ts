// Custom telemetry fields ([[telemetry.fields]]): config validation, decoding
// next to the fixed Pyrinas fields, and the line protocol each type becomes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Point } from '@influxdata/influxdb-client';
import { ConfigError } from '../../src/errors.js';
import { validateConfig } from '../../src/config/index.js';
import { telemetryToLine } from '../../src/influx/index.js';
import { decodeTelemetry, encodeCbor, PayloadError, readTelemetry, TelemetryFields, type TelemetryFieldSpec } from '../../src/protocol/index.js';
import { FirstSeen } from '../../src/util/log-sampling.js';

const SPECS: TelemetryFieldSpec[] = [
  { key: 10, name: 'temperature', type: 'float' },
  { key: 11, name: 'battery_mv', type: 'int' },
  { key: 'charging', name: 'charging', type: 'bool' },
  { key: 'cell', name: 'cell_id', type: 'string' },
];
const FIELDS = new TelemetryFields(SPECS);

function problems(fields: unknown): string[] {
  try {
    validateConfig({ telemetry: { fields } }, { label: 'config.toml' });
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems;
  }
  return [];
}

test('a valid [[telemetry.fields]] list loads', () => {
  assert.deepEqual(problems(SPECS), []);
  assert.deepEqual(validateConfig({}).telemetry.fields, []);
});

test('config refuses clashes, duplicates and bad names, naming the entry, the key and the problem', () => {
  assert.deepEqual(problems([{ key: 1, name: 'signal', type: 'float' }]), [
    'config.toml: telemetry.fields.0: key 1 is the built-in Pyrinas field rsrp; choose another key',
  ]);
  assert.deepEqual(problems([{ key: 'rssi_hub', name: 'hub', type: 'int' }]), [
    'config.toml: telemetry.fields.0: key "rssi_hub" is the built-in Pyrinas field rssi_hub; choose another key',
  ]);
  assert.deepEqual(problems([{ key: 10, name: 'rsrp', type: 'float' }]), ['config.toml: telemetry.fields.0: key 10: name "rsrp" is the built-in Pyrinas field of that name']);
  assert.deepEqual(
    problems([
      { key: 10, name: 'a', type: 'int' },
      { key: 10, name: 'a', type: 'int' },
    ]),
    ['config.toml: telemetry.fields.1: key 10 is already mapped by telemetry.fields[0]', 'config.toml: telemetry.fields.1: key 10: name "a" is already used by telemetry.fields[0]'],
  );
  assert.deepEqual(problems([{ key: 12, name: 'bad name', type: 'int' }]), [
    'config.toml: telemetry.fields.0: key 12: name "bad name" must be 1..64 of A-Z a-z 0-9 _, not starting with a digit',
  ]);
  assert.deepEqual(problems([{ key: 12, name: 'time', type: 'int' }]), ['config.toml: telemetry.fields.0: key 12: name "time" is reserved in InfluxDB points (time, id)']);
  assert.deepEqual(problems([{ key: 12, name: 'x', type: 'double' }]), ['config.toml: telemetry.fields.0.type: expected "int", "float", "bool" or "string", got "double"']);
  assert.deepEqual(problems([{ key: 1.5, name: 'x', type: 'int' }]), [
    'config.toml: telemetry.fields.0.key: expected an integer key 0..4294967295 or a text key of 1..64 characters, got 1.5',
  ]);
});

test('built-in fields decode exactly as before; configured keys become typed extra fields', () => {
  const bytes = encodeCbor(
    new Map<unknown, unknown>([
      [0, '1.2.3-4-g965b9df'],
      [1, 45],
      [10, 21.5],
      [11, 3700],
      ['charging', true],
      ['cell', 'ab12'],
    ]),
  );
  assert.deepEqual(decodeTelemetry(bytes, FIELDS), {
    version: '1.2.3-4-g965b9df',
    rsrp: 45,
    extra: { temperature: { type: 'float', value: 21.5 }, battery_mv: { type: 'int', value: 3700 }, charging: { type: 'bool', value: true }, cell_id: { type: 'string', value: 'ab12' } },
  });
  // Without configuration the same payload keeps only the Pyrinas fields, and says what it left out.
  const plain = readTelemetry(bytes);
  assert.deepEqual(plain.telemetry, { version: '1.2.3-4-g965b9df', rsrp: 45 });
  assert.deepEqual(plain.unknownKeys, [10, 11, 'charging', 'cell']);
});

test('an int is fine in a float field; other types are refused with the value shown, the rest of the point kept', () => {
  const decoded = readTelemetry(encodeCbor(new Map<unknown, unknown>([[1, 50], [10, 21], [11, 'high'], ['charging', 1], [12, 7]])), FIELDS);
  assert.deepEqual(decoded.telemetry, { rsrp: 50, extra: { temperature: { type: 'float', value: 21 } } });
  assert.deepEqual(decoded.refused, [
    { key: 11, name: 'battery_mv', type: 'int', value: 'text "high"' },
    { key: 'charging', name: 'charging', type: 'bool', value: '1' },
  ]);
  assert.deepEqual(decoded.unknownKeys, [12]);
  // A float in an int field is refused too, with its value.
  assert.equal(readTelemetry(encodeCbor(new Map([[11, 3.25]])), FIELDS).refused[0]?.value, '3.25');
});

test('a float rsrp is still refused (Pyrinas sends a u32), and the message shows the value', () => {
  assert.throws(
    () => decodeTelemetry(encodeCbor(new Map([[1, -95.5]])), FIELDS),
    (error: unknown) => error instanceof PayloadError && error.reason === 'bad_field' && error.message === 'telemetry: field rsrp must be an integer 0..4294967295, got -95.5',
  );
  assert.throws(() => decodeTelemetry(encodeCbor(new Map([['rsrp', 'strong']]))), /field rsrp must be an integer 0\.\.4294967295, got text "strong"$/);
});

test('extra fields go to line protocol in their configured types, sorted with the built-in fields as the client sorts them', () => {
  const telemetry = decodeTelemetry(encodeCbor(new Map<unknown, unknown>([[0, 'v"1'], [1, 45], [10, 21], [11, 3700], ['charging', false], ['cell', 'a b,"c"']])), FIELDS);
  const line = telemetryToLine('dev-1', telemetry, 1_700_000_000_123, 'ms');
  assert.equal(line, 'telemetry,id=dev-1 battery_mv=3700i,cell_id="a b,\\"c\\"",charging=F,rsrp=45i,temperature=21,version="v\\"1" 1700000000123');
  // The same bytes as the official client writes for the same typed fields.
  const point = new Point('telemetry')
    .tag('id', 'dev-1')
    .intField('battery_mv', 3700)
    .stringField('cell_id', 'a b,"c"')
    .booleanField('charging', false)
    .intField('rsrp', 45)
    .floatField('temperature', 21)
    .stringField('version', 'v"1')
    .timestamp('1700000000123');
  assert.equal(line, point.toLineProtocol());
});

test('FirstSeen reports each key once and stops remembering at its capacity', () => {
  const seen = new FirstSeen<number>(2);
  assert.deepEqual([1, 1, 2, 3, 4, 2].map((k) => seen.note(k)), ['new', 'seen', 'new', 'full', 'seen', 'seen']);
});
