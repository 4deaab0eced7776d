// A damaged ingest log at start: device messages in the log that the app
// runner had not handled, then the last segment torn (cut in the middle of its
// last record) and a byte flipped in a record before it. The server starts,
// the good records are handed to the app runner, the damaged ones are counted
// (nucleon_ingest_damaged_total) and logged, and new messages go on.
import assert from 'node:assert/strict';
import { readdir, readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import type { EventOf } from '../../src/events.js';
import { decodeRecord } from '../../src/ingest/record.js';
import { EventRunner } from '../../src/runner.js';
import { tempDir, waitFor } from '../helpers/index.js';
import { connect, startBroker } from '../helpers/mqtt-support.js';

class App extends EventRunner<'ApplicationRequest'> {
  readonly handled: string[] = [];

  constructor(private readonly hold: boolean) {
    super('damage-app', ['ApplicationRequest']);
  }

  protected async handle(event: EventOf<'ApplicationRequest'>): Promise<void> {
    // Held: the event stays uncommitted, so it is in the log at the next start.
    if (this.hold) await new Promise<void>(() => undefined);
    this.handled.push(Buffer.from(event.payload).toString());
  }
}

test('a torn tail and a flipped byte in the ingest log: the server starts, the good records replay, the bad ones are counted', async (t) => {
  const dir = await tempDir(t);
  const config = { mqtt: { auth: { anonymous: true } } };
  const first = await startBroker(t, { dir, config });
  await first.nucleon.addRunner(new App(true));
  const device = await connect(t, first, { clientId: 'damage-dev' });
  for (let n = 1; n <= 40; n++) await device.publishAsync('damage-dev/app/p/x', `m${n}`, { qos: 1 });
  await device.endAsync();
  await first.nucleon.stop();

  const ingestDir = path.join(dir, 'data', 'ingest');
  const [segment] = (await readdir(ingestDir)).filter((name) => name.endsWith('.seg'));
  const file = path.join(ingestDir, segment ?? '');
  const bytes = await readFile(file);
  // The record of message 10: flip a byte of its payload.
  let at = 0;
  for (let i = 0; i < 9; i++) {
    const record = decodeRecord(bytes, at, bytes.length);
    assert.equal(record.kind, 'record');
    if (record.kind === 'record') at += record.size;
  }
  const tenth = decodeRecord(bytes, at, bytes.length);
  assert.ok(tenth.kind === 'record' && Buffer.from(tenth.record.payload).toString() === 'm10');
  // Where the records end, found before any damage is made (the file may go on with zeros: a segment prepared ahead).
  let end = at;
  for (;;) {
    const record = decodeRecord(bytes, end, bytes.length);
    if (record.kind !== 'record') break;
    end += record.size;
  }
  const flip = at + tenth.size - 1;
  bytes[flip] = (bytes[flip] ?? 0) ^ 0xff;
  await writeFile(file, bytes);
  // Cut the last record (message 40) short, as a crash in the middle of a write would.
  await truncate(file, end - 3);

  const second = await startBroker(t, { dir, config });
  const app = new App(false);
  await second.nucleon.addRunner(app);
  await waitFor(() => app.handled.length >= 38, 'the good records handed to the app runner');
  const expected = Array.from({ length: 39 }, (_, i) => `m${i + 1}`).filter((m) => m !== 'm10');
  assert.deepEqual(app.handled, expected);
  const metrics = await second.nucleon.metrics.metrics();
  assert.match(metrics, /nucleon_ingest_damaged_total\{what="torn_tail"\} 1/);
  assert.match(metrics, /nucleon_ingest_damaged_total\{what="record"\} 1/);
  // And the log takes new messages after the cut.
  const again = await connect(t, second, { clientId: 'damage-dev' });
  await again.publishAsync('damage-dev/app/p/x', 'after', { qos: 1 });
  await waitFor(() => app.handled.at(-1) === 'after', 'a new message');
});
