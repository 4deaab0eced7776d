// The InfluxQL the device page's history sends and how its answer is read
// (src/admin/influx-history.ts); against a real influxd in
// test/integration/influx-history.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { historyQuery, influxqlString, parseHistory } from '../../src/admin/influx-history.js';
import { readDeviceTelemetry } from '../../src/admin/device-telemetry.js';
import type { InfluxHistory } from '../../src/admin/influx-history.js';
import { TelemetryRings } from '../../src/admin/telemetry-rings.js';

const bounds = { pointsPerField: 2, fieldsPerDevice: 2 };

test('influxqlString escapes the quote and the backslash; the query selects last(*) per slot for the one device', () => {
  assert.equal(influxqlString(`a'b\\c`), `'a\\'b\\\\c'`);
  assert.equal(
    historyQuery(`x' OR 1=1 --`, 1000.7, 3601000, 10_000),
    `SELECT last(*) FROM "telemetry" WHERE "id" = 'x\\' OR 1=1 --' AND time > 1000ms AND time <= 3601000ms GROUP BY time(10000ms) fill(none)`,
  );
});

test('parseHistory: numeric columns without the last_ prefix, oldest first, cut to the newest points and the first fields by name', () => {
  const answer = {
    results: [
      {
        statement_id: 0,
        series: [
          {
            name: 'telemetry',
            columns: ['time', 'last_rsrp', 'last_version', 'last_door', 'last_a', 'last_z'],
            values: [
              [40, -4, '1.0.0', true, 1, 9],
              [10, -1, null, false, null, 9],
              [30, -3, null, null, null, 9],
              [20, null, null, null, 2, 9],
            ],
          },
        ],
      },
    ],
  };
  // Fields by name: a, rsrp (z is the third numeric one); rsrp cut to its newest 2.
  assert.deepEqual(parseHistory(answer, bounds), {
    a: [
      [20, 2],
      [40, 1],
    ],
    rsrp: [
      [30, -3],
      [40, -4],
    ],
  });
  assert.deepEqual(parseHistory({ results: [{ statement_id: 0 }] }, bounds), {}, 'no series: no data in the hour');
  assert.throws(() => parseHistory({ results: [{ statement_id: 0, error: 'database not found: x' }] }, bounds), /database not found: x/);
  assert.throws(() => parseHistory({ error: 'authorization failed' }, bounds), /authorization failed/);
  assert.throws(() => parseHistory({}, bounds), /without results/);
  assert.throws(() => parseHistory({ results: [{ series: [{ columns: ['time', 'last_a'], values: [['2026-01-01T00:00:00Z', 1]] }] }] }, bounds), /not a number/);
});

test('readDeviceTelemetry: influx when it answers, the recent store with the error when it fails, recent without influx', async () => {
  const recent = new TelemetryRings();
  recent.record('dev-1', { rsrp: 70 }, 1_000_000);
  const errors: string[] = [];
  const onError = (error: Error) => errors.push(error.message);
  const answering = { read: async () => ({ from: 1, to: 2, fields: { rsrp: [[1, 5]] } }) } as unknown as InfluxHistory;
  const failing = {
    read: async () => {
      throw new Error('InfluxDB query failed: no answer within 100 ms');
    },
  } as unknown as InfluxHistory;
  assert.deepEqual(await readDeviceTelemetry('dev-1', 1_000_500, { recent, influx: answering, onError }), { from: 1, to: 2, fields: { rsrp: [[1, 5]] }, source: 'influx' });
  assert.deepEqual(await readDeviceTelemetry('dev-1', 1_000_500, { recent, influx: failing, onError }), {
    from: 1_000_500 - 3_600_000,
    to: 1_000_500,
    fields: { rsrp: [[1_000_000, 70]] },
    source: 'recent',
    error: 'InfluxDB query failed: no answer within 100 ms',
  });
  assert.deepEqual(errors, ['InfluxDB query failed: no answer within 100 ms']);
  assert.deepEqual(await readDeviceTelemetry('dev-1', 1_000_500, { recent, influx: undefined, onError }), {
    from: 1_000_500 - 3_600_000,
    to: 1_000_500,
    fields: { rsrp: [[1_000_000, 70]] },
    source: 'recent',
  });
});
