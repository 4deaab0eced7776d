// The line protocol serialiser against the official client's Point class: same
// bytes for the same point, over seeded random points with every character the
// line protocol escapes, all four precisions, and the errors for bad input.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Point, dateToProtocolTimestamp } from '@influxdata/influxdb-client';
import type { InfluxPoint, Telemetry } from '../../src/events.js';
import { InvalidPointError, influxPointToLine, telemetryToLine, type Precision } from '../../src/influx/index.js';
import { seeded as random } from '../helpers/rng.js';

const PRECISIONS: Precision[] = ['ns', 'us', 'ms', 's'];
const ALPHABET = ['a', 'Z', '0', '_', ',', ' ', '=', '"', '\\', '\n', '\r', '\t', 'é', '😀', '-', '.'];
const ITERATIONS = 3000;

function text(next: () => number, min = 1): string {
  const length = min + Math.floor(next() * 8);
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET[Math.floor(next() * ALPHABET.length)] ?? 'a';
  // A trailing backslash is refused by both paths; keep the comparison to valid points.
  return out.endsWith('\\') ? `${out}x` : out;
}

function number(next: () => number): number {
  const pick = next();
  if (pick < 0.2) return Math.floor(next() * 2000) - 1000;
  if (pick < 0.3) return -0;
  if (pick < 0.4) return (next() - 0.5) * 1e25;
  if (pick < 0.5) return next() * 1e-9;
  return (next() - 0.5) * 1000;
}

/**
 * The client leaves a raw newline inside a quoted string value; ours writes
 * it as `\\n` (points.ts says why). A stand-in character the alphabet never
 * has goes through the client in its place and becomes `\\n` after.
 */
const NEWLINE_STAND_IN = '\uE000';
const clientString = (value: string): string => value.replaceAll('\n', NEWLINE_STAND_IN);
const ourNewlines = (line: string | undefined): string | undefined => line?.replaceAll(NEWLINE_STAND_IN, '\\n');

function convertTime(precision: Precision) {
  return (value: string | number | Date | undefined) => (value instanceof Date ? dateToProtocolTimestamp[precision](value) : undefined);
}

/** What the client writes for an application point (the serialiser this one replaced). */
function clientLine(input: InfluxPoint, nowMs: number, precision: Precision): string | undefined {
  const point = new Point(input.measurement);
  for (const [key, value] of Object.entries(input.tags)) if (value !== '') point.tag(key, value);
  for (const [key, value] of Object.entries(input.fields)) {
    if (typeof value === 'number') point.floatField(key, value);
    else if (typeof value === 'boolean') point.booleanField(key, value);
    else point.stringField(key, clientString(value));
  }
  return ourNewlines(point.timestamp(new Date(input.timestampMs ?? nowMs)).toLineProtocol({ convertTime: convertTime(precision) }));
}

function clientTelemetryLine(uid: string, telemetry: Telemetry, ms: number, precision: Precision): string | undefined {
  const point = new Point('telemetry').tag('id', uid);
  if (telemetry.version !== undefined) point.stringField('version', clientString(telemetry.version));
  for (const name of ['rsrp', 'rssi_hub', 'rssi_client'] as const) {
    const value = telemetry[name];
    if (value !== undefined) point.intField(name, value);
  }
  return ourNewlines(point.timestamp(new Date(ms)).toLineProtocol({ convertTime: convertTime(precision) }));
}

test('application points: byte for byte what the client Point class writes', () => {
  const next = random(8);
  for (let i = 0; i < ITERATIONS; i++) {
    const tags: Record<string, string> = {};
    const fields: Record<string, number | string | boolean> = {};
    for (let k = Math.floor(next() * 4); k > 0; k--) tags[text(next)] = next() < 0.2 ? '' : text(next);
    for (let k = 1 + Math.floor(next() * 4); k > 0; k--) {
      const kind = next();
      fields[text(next)] = kind < 0.5 ? number(next) : kind < 0.7 ? next() < 0.5 : text(next, 0);
    }
    const point: InfluxPoint = { measurement: text(next), tags, fields };
    if (next() < 0.8) point.timestampMs = Math.floor(next() * 2e12) + (next() < 0.1 ? 0.75 : 0);
    const precision = PRECISIONS[i % PRECISIONS.length] ?? 'ms';
    const now = 1_700_000_000_123;
    assert.equal(influxPointToLine(point, now, precision), clientLine(point, now, precision), JSON.stringify({ point, precision }));
  }
});

test('telemetry: byte for byte what the client Point class writes, fields in the client order', () => {
  const next = random(9);
  for (let i = 0; i < ITERATIONS; i++) {
    const telemetry: Telemetry = {};
    if (next() < 0.8) telemetry.version = text(next, 0);
    if (next() < 0.8) telemetry.rsrp = Math.floor(next() * 100);
    if (next() < 0.7) telemetry.rssi_hub = -Math.floor(next() * 100);
    if (next() < 0.7) telemetry.rssi_client = next() < 0.1 ? -0 : -Math.floor(next() * 100);
    if (Object.keys(telemetry).length === 0) telemetry.rsrp = 1;
    const uid = next() < 0.8 ? `35045779${i}` : text(next);
    const precision = PRECISIONS[i % PRECISIONS.length] ?? 'ms';
    const ms = Math.floor(next() * 2e12);
    assert.equal(telemetryToLine(uid, telemetry, ms, precision), clientTelemetryLine(uid, telemetry, ms, precision), JSON.stringify({ uid, telemetry, precision }));
  }
  assert.equal(
    telemetryToLine('350457791234567', { version: '1.2.3-4-g965b9df', rsrp: 40, rssi_hub: -60, rssi_client: -70 }, 1_700_000_000_123, 'ms'),
    'telemetry,id=350457791234567 rsrp=40i,rssi_client=-70i,rssi_hub=-60i,version="1.2.3-4-g965b9df" 1700000000123',
  );
});

test('a newline in a string value stays inside its line: a firmware version cannot add a line of its own', async () => {
  const { LineBuffer } = await import('../../src/influx/line-buffer.js');
  const version = '1.0"\ncrafted,id=other rsrp=99i 1\nx';
  const line = telemetryToLine('dev-1', { version, rsrp: 1 }, 1_764_000_000_123, 'ms');
  assert.equal(line, 'telemetry,id=dev-1 rsrp=1i,version="1.0\\"\\ncrafted,id=other rsrp=99i 1\\nx" 1764000000123');
  const appLine = influxPointToLine({ measurement: 'm', tags: {}, fields: { note: 'a\nb' } }, 0, 'ms');
  assert.equal(appLine, 'm note="a\\nb" 0');
  for (const viaBytes of [true, false]) {
    const buffer = new LineBuffer(10);
    if (viaBytes) assert.equal(buffer.pushTelemetry('dev-1', { version, rsrp: 1 }, 1_764_000_000_123, 'ms'), true);
    else buffer.push([line, appLine]);
    // What a rejected batch is split into, and what the spool reads back: the lines pushed, no more.
    assert.deepEqual(buffer.takeBatch().lines(), viaBytes ? [line] : [line, appLine]);
  }
});

test('bad points are InvalidPointError with a reason, never a malformed line', () => {
  const invalid = (work: () => string, reason: RegExp) =>
    assert.throws(work, (error: unknown) => error instanceof InvalidPointError && reason.test(error.reason), reason.source);
  invalid(() => telemetryToLine('', { rsrp: 1 }, 0, 'ms'), /device uid must be a non-empty string/);
  invalid(() => telemetryToLine('dev\\', { rsrp: 1 }, 0, 'ms'), /must not end with a backslash/);
  invalid(() => telemetryToLine('dev', {}, 0, 'ms'), /no fields/);
  invalid(() => telemetryToLine('dev', { rsrp: 1.5 }, 0, 'ms'), /rsrp must be an integer/);
  invalid(() => telemetryToLine('dev', { rsrp: 1 }, -1, 'ms'), /timestamp/);
  invalid(() => telemetryToLine('dev', { rsrp: 1 }, Number.NaN, 'ms'), /timestamp/);
  // Beyond the Date range the client would write "NaN" as the timestamp.
  invalid(() => telemetryToLine('dev', { rsrp: 1 }, 9e15, 'ms'), /timestamp/);
  invalid(() => influxPointToLine({ measurement: '', tags: {}, fields: { v: 1 } }, 0, 'ms'), /measurement must be a non-empty string/);
  invalid(() => influxPointToLine({ measurement: 'm', tags: {}, fields: {} }, 0, 'ms'), /has no fields/);
  invalid(() => influxPointToLine({ measurement: 'm', tags: {}, fields: { v: Number.POSITIVE_INFINITY } }, 0, 'ms'), /finite number/);
  invalid(() => influxPointToLine({ measurement: 'm', tags: { t: 1 as unknown as string }, fields: { v: 1 } }, 0, 'ms'), /tag t must be a string/);
  invalid(() => influxPointToLine({ measurement: 'm', tags: {}, fields: { v: null as unknown as number } }, 0, 'ms'), /number, string or boolean/);
  invalid(() => influxPointToLine({ measurement: 'm', tags: { '': 'x' }, fields: { v: 1 } }, 0, 'ms'), /tag name/);
  invalid(() => influxPointToLine({ measurement: 'm', tags: {}, fields: { 'v\\': 1 } }, 0, 'ms'), /field name must not end with a backslash/);
});

test('timestamps: the same millisecond at another precision is written at that precision, and a bad one after a good one still fails', () => {
  const at = Date.UTC(2026, 11, 2, 1, 2, 3, 456);
  const texts = (['ms', 'us', 'ns', 's', 'ms'] as Precision[]).map((precision) => telemetryToLine('352656100000001', { rsrp: 1 }, at, precision).split(' ').at(-1));
  assert.deepEqual(texts, [String(at), `${at}000`, `${at}000000`, String(Math.floor(at / 1000)), String(at)]);
  assert.equal(telemetryToLine('352656100000001', { rsrp: 1 }, at + 1, 'ms').split(' ').at(-1), String(at + 1));
  assert.throws(() => telemetryToLine('352656100000001', { rsrp: 1 }, -1, 'ms'), InvalidPointError);
  assert.throws(() => telemetryToLine('352656100000001', { rsrp: 1 }, Number.NaN, 'ms'), InvalidPointError);
});

test('telemetry written as bytes into the line buffer equals telemetryToLine, or takes its string path, and refuses what it refuses', async () => {
  const { LineBuffer } = await import('../../src/influx/line-buffer.js');
  const shapes: Telemetry[] = [
    { version: '1.2.3-4-gabcdef', rsrp: 80, rssi_hub: -60, rssi_client: -55 },
    { rsrp: 0 },
    { rssi_client: -0 },
    { rssi_hub: -2147483648, rssi_client: 2147483647 },
    { rsrp: 4294967295, version: '' },
    { version: 'only' },
    { version: 'with "quote" and \\ backslash', rsrp: 1 },
    { version: 'ünïcødé ✓', rssi_hub: 3 },
    { version: 'line\nbreak', rsrp: 9 },
    { rsrp: 10, extra: { temp: { type: 'float', value: 21.5 }, up: { type: 'bool', value: true } } },
    { rsrp: 123456789012345 },
    { rsrp: 1.5 },
    { rsrp: Number.NaN },
    {},
  ];
  const uids = ['dev-1', 'A_b-9', 'u'.repeat(64), 'with space', 'comma,uid', 'eq=uid', 'tail\\', '', 'ünï'];
  const precisions: Precision[] = ['ns', 'us', 'ms', 's'];
  let bytePath = 0;
  for (const telemetry of shapes) {
    for (const uid of uids) {
      for (const precision of precisions) {
        for (const ms of [1_764_000_000_123, 0, -1]) {
          let expected: string | InvalidPointError;
          try {
            expected = telemetryToLine(uid, telemetry, ms, precision);
          } catch (error) {
            assert.ok(error instanceof InvalidPointError);
            expected = error;
          }
          const buffer = new LineBuffer(10);
          buffer.push(['first line']);
          const before = buffer.length;
          let pushed: boolean | InvalidPointError;
          try {
            pushed = buffer.pushTelemetry(uid, telemetry, ms, precision);
          } catch (error) {
            assert.ok(error instanceof InvalidPointError);
            pushed = error;
          }
          const where = `${JSON.stringify(telemetry)} ${JSON.stringify(uid)} ${precision} ${ms}`;
          if (expected instanceof InvalidPointError) {
            // Refused: either the byte path declines (the string path then throws) or throws the same error itself.
            if (pushed instanceof InvalidPointError) assert.equal(pushed.message, expected.message, where);
            else assert.equal(pushed, false, where);
            assert.equal(buffer.length, before, `nothing pushed: ${where}`);
            continue;
          }
          assert.ok(!(pushed instanceof InvalidPointError), `not refused: ${where}`);
          if (pushed === false) continue;
          bytePath++;
          // The bytes of the batch: a raw newline inside a quoted version would split takeAll()'s lines on both paths.
          assert.equal(buffer.takeBatch().body(), `first line\n${expected}`, where);
        }
      }
    }
  }
  assert.ok(bytePath >= 6 * 3 * 4 * 2, `the byte path wrote ${bytePath} of the valid points`);
});
