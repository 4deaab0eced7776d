// Fuzzing the OTA HTTP download server: random Range headers (valid, open,
// suffix, past the end, reversed, several, garbage, huge numbers), If-Range and
// If-None-Match validators, Authorization garbage, random extra headers, odd
// paths and methods, plus raw malformed requests on a socket. Every answer is
// checked against an independent model: the status is one the server documents,
// a 206 carries exactly the bytes its Content-Range names, a 200 the whole
// image. A canary device keeps round-tripping. Seeded: FUZZ_SEED / FUZZ_ITERATIONS.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { delay } from '../helpers/index.js';
import { AdminTestClient } from '../helpers/admin-harness.js';
import { ADMIN_KEY, Canary, fuzzSettings, Rng, RssSampler, startInstance, summary, type Instance } from '../helpers/reliability-support.js';

const RSS_BOUND_MB = 300;
const PARALLEL = 8;
const IMAGE_ID = '2.0.0-3-g965b9df';
const ALLOWED = new Set([200, 206, 304, 400, 404, 405, 416, 431]);

interface Expectation {
  /** The exact status the model predicts, when it predicts one. */
  status?: number;
  range?: [number, number];
}

function rangeHeader(rng: Rng, size: number): { header: string; model?: Expectation } {
  const a = rng.int(size + 100);
  const b = a + rng.int(5000) - 500;
  switch (rng.int(10)) {
    case 0:
    case 1: {
      const start = rng.int(size);
      const last = start + rng.int(4096);
      return { header: `bytes=${start}-${last}`, model: { status: 206, range: [start, Math.min(last + 1, size)] } };
    }
    case 2:
      return { header: `bytes=${a}-`, model: a < size ? { status: 206, range: [a, size] } : { status: 416 } };
    case 3: {
      const n = rng.int(size * 2);
      return { header: `bytes=-${n}`, model: n === 0 ? { status: 416 } : { status: 206, range: [Math.max(0, size - n), size] } };
    }
    case 4:
      return b >= a ? { header: `bytes=${a}-${b}`, model: a >= size ? { status: 416 } : { status: 206, range: [a, Math.min(b + 1, size)] } } : { header: `bytes=${a}-${b}`, model: { status: 200 } };
    case 5:
      return { header: `bytes=0-1,${a}-${a + 10}`, model: { status: 200 } };
    case 6:
      return { header: rng.pick(['bytes=', 'bytes=-', 'bytes=--1', 'items=0-1', 'bytes=99999999999999999999999-', 'bytes=0-99999999999999999999999', 'bytes= 1 - 2', 'BYTES=1-2', 'bytes=1.5-2', 'bytes=0x10-20']) };
    case 7:
      return { header: `bytes=${'9'.repeat(1 + rng.int(400))}-` };
    default:
      return { header: printable(rng, rng.int(80)) };
  }
}

function printable(rng: Rng, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += String.fromCharCode(0x20 + rng.int(0x5f));
  return out;
}

interface Outcome {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function get(instance: Instance, agent: http.Agent, method: string, path: string, headers: Record<string, string>): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port: instance.ports.ota, method, path, headers, agent }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
      response.on('error', reject);
    });
    request.setTimeout(10_000, () => request.destroy(new Error(`no answer to ${method} ${path}`)));
    request.on('error', reject);
    request.end();
  });
}

/** A malformed request on a raw socket: the server answers 4xx or closes; either way it goes on. */
async function raw(instance: Instance, rng: Rng): Promise<string> {
  const payloads = [
    () => Buffer.from(`GET /images/${IMAGE_ID} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\nContent-Length: -1\r\n\r\n`),
    () => Buffer.from(`GET /images/${IMAGE_ID} HTTP/9.9\r\n\r\n`),
    () => Buffer.from(`GET /images/${IMAGE_ID} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n`),
    () => Buffer.from(`GET /images/${IMAGE_ID} HTTP/1.1\r\nHo\0st: x\r\n\r\n`),
    () => Buffer.from(`GET /images/${IMAGE_ID} HTTP/1.1\r\nHost: x\r\nRange: bytes=\r\n 0-1\r\n\r\n`),
    () => Buffer.concat([Buffer.from('GET / HTTP/1.1\r\n'), rng.bytes(64), Buffer.from('\r\n\r\n')]),
    () => rng.bytes(1 + rng.int(200)),
    () => Buffer.from(`${printable(rng, 20)} /images/${IMAGE_ID} HTTP/1.1\r\nHost: x\r\n\r\n`),
  ];
  const socket = net.connect(instance.ports.ota, '127.0.0.1');
  socket.on('error', () => undefined);
  let answer = '';
  socket.on('data', (data: Buffer) => (answer += data.toString('latin1')));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(rng.pick(payloads)());
  const closed = await Promise.race([new Promise<boolean>((resolve) => socket.once('close', () => resolve(true))), delay(300).then(() => false)]);
  socket.destroy();
  const status = /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1];
  return status ? `raw_${status}` : closed ? 'raw_closed' : 'raw_no_answer';
}

test('fuzzed HTTP ranges, validators, headers, paths and methods on the OTA endpoint: answers match the model, the server and the canary keep working', async (t) => {
  const fuzz = fuzzSettings('ota-http', 8000);
  const instance = await startInstance(t, { certDevices: ['canary-http'] });
  const image = new Rng(fuzz.seed ^ 0x5eed).bytes(20_000 + new Rng(fuzz.seed).int(20_000));
  const sha256 = createHash('sha256').update(image).digest('hex');
  const admin = await AdminTestClient.connect(t, `ws://127.0.0.1:${instance.ports.admin}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  const added = await admin.request('images.add', { id: IMAGE_ID, data: image.toString('base64') });
  assert.equal(added.ok, true, JSON.stringify(added));
  const etag = `"${sha256}"`;

  const canary = await Canary.start(t, instance, 'canary-http');
  const rss = new RssSampler(instance);
  const background = canary.inBackground();

  const statuses: Record<string, number> = {};
  const problems: string[] = [];
  let modelChecked = 0;
  let bytesChecked = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: PARALLEL }, async (_, slot) => {
      const rng = new Rng(fuzz.seed + slot * 15_485_863);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      t.after(() => agent.destroy());
      while (next < fuzz.iterations && background.failure() === undefined && problems.length < 10) {
        next++;
        if (rng.chance(0.1)) {
          const outcome = await raw(instance, rng);
          statuses[outcome] = (statuses[outcome] ?? 0) + 1;
          continue;
        }
        const method = rng.chance(0.9) ? 'GET' : rng.pick(['HEAD', 'POST', 'DELETE', 'OPTIONS', 'PUT']);
        const path = rng.chance(0.8)
          ? `/images/${IMAGE_ID}${rng.chance(0.2) ? `?uid=${rng.pick(['dev-1', '../x', '%00', ''])}` : ''}`
          : rng.pick(['/', '/images/', '/images/%ZZ', '/images/..%2F..%2Fetc%2Fpasswd', `/images/${IMAGE_ID}/x`, '/images/9.9.9-9-g0000000', `/${'a'.repeat(rng.int(20_000))}`, '/metrics']);
        const headers: Record<string, string> = {};
        const range = rng.chance(0.8) ? rangeHeader(rng, image.length) : undefined;
        if (range) headers.range = range.header;
        const ifRange = rng.chance(0.15) ? rng.pick([etag, `W/${etag}`, '"0000"', new Date(0).toUTCString(), printable(rng, 10)]) : undefined;
        if (ifRange !== undefined) headers['if-range'] = ifRange;
        const ifNoneMatch = rng.chance(0.05) ? rng.pick([etag, '*', '"nope"']) : undefined;
        if (ifNoneMatch !== undefined) headers['if-none-match'] = ifNoneMatch;
        if (rng.chance(0.1)) headers.authorization = rng.pick(['Basic', 'Basic !!!', `Basic ${Buffer.from('dev:pw').toString('base64')}`, `Bearer ${printable(rng, 30)}`]);
        if (rng.chance(0.1)) headers[`x-${printable(rng, 8).replace(/[^a-z]/gi, 'a')}`] = printable(rng, rng.int(200));
        if (rng.chance(0.02)) headers['x-big'] = 'b'.repeat(20_000);

        let outcome: Outcome;
        try {
          outcome = await get(instance, agent, method, path, headers);
        } catch (error) {
          problems.push(`${method} ${path.slice(0, 80)} ${JSON.stringify(headers).slice(0, 200)}: ${(error as Error).message}`);
          continue;
        }
        statuses[outcome.status] = (statuses[outcome.status] ?? 0) + 1;
        const what = `${method} ${path.slice(0, 80)} ${JSON.stringify(headers).slice(0, 300)} → ${outcome.status}`;
        if (!ALLOWED.has(outcome.status)) problems.push(`unexpected status: ${what}`);
        // Over Node's 16 KiB header limit: 431 (answered and counted, never a silent hang-up).
        const headerBytes = path.length + Object.entries(headers).reduce((sum, [name, value]) => sum + name.length + value.length + 4, 0);
        if (headerBytes > 16_384 && outcome.status !== 431) problems.push(`expected 431 for ${headerBytes} header bytes: ${what}`);
        if (headerBytes < 16_000 && outcome.status === 431) problems.push(`431 for only ${headerBytes} header bytes: ${what}`);
        if (outcome.status === 431) continue;
        if (method !== 'GET' || !path.startsWith(`/images/${IMAGE_ID}`) || path.includes('/x')) continue;
        // The model: what a correct server must send for this request.
        if (ifNoneMatch === etag || ifNoneMatch === '*') {
          if (outcome.status !== 304) problems.push(`expected 304: ${what}`);
          continue;
        }
        if (headers.authorization !== undefined) continue;
        const rangeApplies = range !== undefined && (ifRange === undefined || ifRange === etag);
        const expected: Expectation = !rangeApplies ? { status: 200 } : (range.model ?? {});
        if (expected.status !== undefined && outcome.status !== expected.status) problems.push(`expected ${expected.status}: ${what}`);
        if (outcome.status === 200 && !outcome.body.equals(image)) problems.push(`200 without the whole image: ${what}`);
        if (outcome.status === 206) {
          const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(outcome.headers['content-range']));
          const [start, last, size] = [Number(match?.[1]), Number(match?.[2]), Number(match?.[3])];
          if (!match || size !== image.length || !outcome.body.equals(image.subarray(start, last + 1))) problems.push(`206 bytes do not match Content-Range: ${what}`);
          if (expected.range && (start !== expected.range[0] || last + 1 !== expected.range[1])) problems.push(`206 for the wrong range (${start}-${last}): ${what}`);
        }
        if (outcome.status === 416 && outcome.headers['content-range'] !== `bytes */${image.length}`) problems.push(`416 without Content-Range: ${what}`);
        modelChecked++;
        bytesChecked += outcome.body.length;
      }
      agent.destroy();
    }),
  );
  const canaryError = await background.stop();
  const memory = await rss.stop();

  assert.deepEqual(problems, []);
  assert.equal(canaryError, undefined, `the canary failed during fuzzing: ${String(canaryError)}`);
  assert.ok(instance.alive(), `the broker exited:\n${instance.process.output().slice(-3000)}`);
  await canary.roundTrip();
  const whole = await fetch(`http://127.0.0.1:${instance.ports.ota}/images/${IMAGE_ID}`);
  assert.equal(whole.status, 200);
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(image));
  assert.ok(memory.peakMb < RSS_BOUND_MB, `RSS peaked at ${memory.peakMb} MB, over the bound of ${RSS_BOUND_MB} MB`);
  summary('fuzz ota-http', {
    seed: fuzz.seed,
    requests: next,
    statuses: Object.entries(statuses)
      .map(([k, v]) => `${k}:${v}`)
      .join(','),
    checkedAgainstModel: modelChecked,
    bytesChecked,
    canaryRoundTrips: canary.roundTrips,
    rssStartMb: memory.startMb,
    rssPeakMb: memory.peakMb,
  });
});
