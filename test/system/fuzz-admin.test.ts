// Fuzzing the admin WebSocket as an authenticated client: requests for every
// command with random arguments, mutated JSON text and CBOR frames, random
// JSON/CBOR values, hostile CBOR and deep nesting. Each frame must be answered
// (with a stable error code for bad input, never INTERNAL) or, for frames the
// WebSocket layer refuses (invalid UTF-8, oversized), the connection is closed
// with a code and the client reconnects. A canary device keeps round-tripping.
// Seeded: FUZZ_SEED / FUZZ_ITERATIONS.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Decoder } from 'cbor-x';
import WebSocket from 'ws';
import { encodeCbor, hostileCbor, mutate, randomValue } from '../helpers/fuzz-mutate.js';
import { ADMIN_KEY, Canary, fuzzSettings, Rng, RssSampler, startInstance, summary, type Instance } from '../helpers/reliability-support.js';

const RSS_BOUND_MB = 300;
const CLIENTS = 4;
const REPLY_TIMEOUT_MS = 5000;
const COMMANDS = [
  'ping',
  'images.list',
  'uploads.begin',
  'uploads.chunk',
  'uploads.abort',
  'images.add',
  'images.remove',
  'ota.link',
  'ota.unlink',
  'groups.list',
  'ingest.status',
  'acl.rules.list',
  'acl.rules.set',
  'devices.list',
  'devices.get',
  'devices.add',
  'devices.remove',
  'app.request',
  'events.subscribe',
  'events.unsubscribe',
  'auth.login',
  'nope',
  '__proto__',
  'constructor',
];
const ARG_NAMES = ['id', 'uid', 'device', 'group', 'image', 'data', 'size', 'sha256', 'uploadId', 'offset', 'target', 'payload', 'kinds', 'online', 'password', 'force', '__proto__', 'apiKey'];
const cborDecoder = new Decoder({ mapsAsObjects: true, useRecords: false });

/** JSON-safe random value (no bytes, no bigint). */
function jsonValue(rng: Rng, depth = 0): unknown {
  if (depth > 3 || rng.chance(0.5)) return rng.pick([0, -1, 1.5, 2 ** 53, '', 'x', '1.2.3-4-g965b9df', 'fuzz-dev', 'QUJD', null, true, false, 'a'.repeat(rng.int(300))]);
  if (rng.chance(0.5)) return Array.from({ length: rng.int(4) }, () => jsonValue(rng, depth + 1));
  return Object.fromEntries(Array.from({ length: rng.int(4) }, () => [rng.pick(ARG_NAMES), jsonValue(rng, depth + 1)]));
}

function request(rng: Rng, id: number): Record<string, unknown> {
  const args = Object.fromEntries(Array.from({ length: rng.int(4) }, () => [rng.pick(ARG_NAMES), jsonValue(rng)]));
  const message: Record<string, unknown> = { id: rng.chance(0.9) ? `f${id}` : id, cmd: rng.pick(COMMANDS), args };
  if (rng.chance(0.1)) message.v = rng.pick([1, 2, '1', null]);
  if (rng.chance(0.05)) delete message.args;
  return message;
}

type Frame = { data: string | Buffer; binary: boolean; shape: string };

function frame(rng: Rng, id: number): Frame {
  const roll = rng.next();
  if (roll < 0.35) return { data: JSON.stringify(request(rng, id)), binary: false, shape: 'json_request' };
  if (roll < 0.55) return { data: encodeCbor(request(rng, id)), binary: true, shape: 'cbor_request' };
  if (roll < 0.65) {
    // Byte mutations of JSON stay text frames only while they are valid UTF-8 (ws closes 1007 otherwise).
    const bytes = mutate(rng, Buffer.from(JSON.stringify(request(rng, id))), rng.pick(['bitflip', 'truncate', 'insert_bytes'] as const));
    return { data: bytes.toString('utf8'), binary: false, shape: 'json_mutated' };
  }
  if (roll < 0.75) return { data: mutate(rng, encodeCbor(request(rng, id)), rng.pick(['bitflip', 'truncate', 'insert_bytes'] as const)), binary: true, shape: 'cbor_mutated' };
  if (roll < 0.82) return { data: JSON.stringify(jsonValue(rng)) ?? 'null', binary: false, shape: 'json_value' };
  if (roll < 0.88) return { data: encodeCbor(randomValue(rng)), binary: true, shape: 'cbor_value' };
  if (roll < 0.94) return { data: hostileCbor(rng), binary: true, shape: 'cbor_hostile' };
  if (roll < 0.97) return { data: '['.repeat(10_000 + rng.int(50_000)), binary: false, shape: 'json_deep' };
  // Raw bytes as a text frame: usually invalid UTF-8, which the WebSocket layer refuses (1007).
  return { data: rng.bytes(1 + rng.int(64)), binary: false, shape: 'text_raw_bytes' };
}

interface Tally {
  frames: number;
  replies: Record<string, number>;
  closes: Record<string, number>;
  shapes: Record<string, number>;
  noReply: number;
}

class FuzzClient {
  private socket: WebSocket | undefined;
  private waiter: ((outcome: string) => void) | undefined;

  constructor(private readonly instance: Instance) {}

  private async open(): Promise<WebSocket> {
    const socket = new WebSocket(`ws://127.0.0.1:${this.instance.ports.admin}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    socket.on('error', () => undefined);
    socket.on('message', (data: Buffer, isBinary) => {
      const message = (isBinary ? cborDecoder.decode(data) : JSON.parse(data.toString('utf8'))) as { event?: string; ok?: boolean; error?: { code: string } };
      if (message.event !== undefined) return;
      this.waiter?.(message.ok === true ? 'ok' : (message.error?.code ?? 'malformed_reply'));
    });
    socket.on('close', (code) => this.waiter?.(`close_${code}`));
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    return socket;
  }

  /** Sends one frame and waits for its reply or the close it causes. */
  async send(item: Frame): Promise<string> {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) this.socket = await this.open();
    const socket = this.socket;
    const outcome = new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve('no_reply'), REPLY_TIMEOUT_MS);
      this.waiter = (value) => {
        clearTimeout(timer);
        this.waiter = undefined;
        resolve(value);
      };
    });
    socket.send(item.data, { binary: item.binary });
    return outcome;
  }

  close(): void {
    this.socket?.terminate();
  }
}

test('fuzzed admin frames (JSON and CBOR): every frame answered with a stable code or closed with a reason, never INTERNAL; the broker and the canary keep working', async (t) => {
  const fuzz = fuzzSettings('admin-frames', 8000);
  const instance = await startInstance(t, { certDevices: ['canary-admin'], extraToml: [] });
  const canary = await Canary.start(t, instance, 'canary-admin');
  await canary.roundTrip();
  const rss = new RssSampler(instance);
  const tally: Tally = { frames: 0, replies: {}, closes: {}, shapes: {}, noReply: 0 };

  const background = canary.inBackground();

  let next = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, slot) => {
      const rng = new Rng(fuzz.seed + slot * 104_729);
      const client = new FuzzClient(instance);
      t.after(() => client.close());
      while (next < fuzz.iterations && background.failure() === undefined) {
        const item = frame(rng, next++);
        tally.shapes[item.shape] = (tally.shapes[item.shape] ?? 0) + 1;
        const outcome = await client.send(item);
        tally.frames++;
        if (outcome === 'no_reply') tally.noReply++;
        else if (outcome.startsWith('close_')) tally.closes[outcome] = (tally.closes[outcome] ?? 0) + 1;
        else tally.replies[outcome] = (tally.replies[outcome] ?? 0) + 1;
      }
      client.close();
    }),
  );
  const canaryError = await background.stop();
  const memory = await rss.stop();

  assert.equal(canaryError, undefined, `the canary failed during fuzzing: ${String(canaryError)}`);
  assert.ok(instance.alive(), `the broker exited:\n${instance.process.output().slice(-3000)}`);
  assert.equal(tally.frames, fuzz.iterations);
  assert.equal(tally.replies.INTERNAL ?? 0, 0, `INTERNAL errors for fuzzed input:\n${instance.process.output().slice(-3000)}`);
  assert.equal(tally.noReply, 0, 'every frame is answered or closes the connection');
  // Closes only for what the WebSocket layer refuses: invalid UTF-8 (1007).
  assert.deepEqual(
    Object.keys(tally.closes).filter((code) => code !== 'close_1007'),
    [],
    JSON.stringify(tally.closes),
  );
  const ping = new FuzzClient(instance);
  t.after(() => ping.close());
  assert.equal(await ping.send({ data: JSON.stringify({ id: 'last', cmd: 'ping' }), binary: false, shape: 'ping' }), 'ok');
  await canary.roundTrip();
  assert.ok(memory.peakMb < RSS_BOUND_MB, `RSS peaked at ${memory.peakMb} MB, over the bound of ${RSS_BOUND_MB} MB`);
  const list = (record: Record<string, number>) =>
    Object.entries(record)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k}:${v}`)
      .join(',');
  summary('fuzz admin-frames', {
    seed: fuzz.seed,
    frames: tally.frames,
    replies: list(tally.replies),
    closes: list(tally.closes),
    shapes: list(tally.shapes),
    canaryRoundTrips: canary.roundTrips,
    rssStartMb: memory.startMb,
    rssPeakMb: memory.peakMb,
  });
});
