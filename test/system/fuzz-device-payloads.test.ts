// Fuzzing what an authenticated device sends: plausible telemetry and OTA
// requests (integer and text keys) mutated at the byte level, random CBOR
// values, hand-made hostile CBOR (huge declared lengths, nesting thousands
// deep, bad tags, invalid UTF-8) and random bytes, on <uid>/tel/p, <uid>/ota/p
// and <uid>/app/p/<target>. Every message must be acknowledged and counted
// (ingested or refused with a reason), the device must stay connected, and a
// canary device keeps round-tripping. Seeded: FUZZ_SEED / FUZZ_ITERATIONS.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AdminTestClient } from '../helpers/admin-harness.js';
import { encodeCbor, hostileCbor, mutate, plausiblePayload, randomValue } from '../helpers/fuzz-mutate.js';
import { ADMIN_KEY, Canary, connectDevice, fuzzSettings, metricValue, RssSampler, startInstance, summary, type Rng } from '../helpers/reliability-support.js';

const RSS_BOUND_MB = 300;
const WINDOW = 50;
const IMAGE_ID = '1.0.0-1-g965b9df';

type Kind = 'tel' | 'ota' | 'app';
type Shape = 'plausible' | 'mutated' | 'random_cbor' | 'hostile_cbor' | 'random_bytes';

function message(rng: Rng, kind: Kind): { payload: Buffer; shape: Shape } {
  const roll = rng.next();
  if (roll < 0.2) return { payload: encodeCbor(plausiblePayload(rng, kind)), shape: 'plausible' };
  if (roll < 0.45) return { payload: mutate(rng, encodeCbor(plausiblePayload(rng, kind)), rng.pick(['bitflip', 'truncate', 'insert_bytes'] as const)), shape: 'mutated' };
  if (roll < 0.7) return { payload: encodeCbor(randomValue(rng)), shape: 'random_cbor' };
  if (roll < 0.88) return { payload: hostileCbor(rng), shape: 'hostile_cbor' };
  return { payload: rng.bytes(rng.int(300)), shape: 'random_bytes' };
}

test('fuzzed CBOR on tel, ota and app topics from an authenticated device: all acknowledged and counted, the device stays connected, the canary keeps working', async (t) => {
  const fuzz = fuzzSettings('device-payloads', 12000);
  const uid = 'fuzz-device';
  const instance = await startInstance(t, { certDevices: [uid, 'canary-payloads'] });

  // An image the device is linked to, so well-formed DownloadBytes requests read real bytes.
  const admin = await AdminTestClient.connect(t, `ws://127.0.0.1:${instance.ports.admin}/ws`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  const added = await admin.request('images.add', { id: IMAGE_ID, data: Buffer.alloc(8192, 7).toString('base64') });
  assert.equal(added.ok, true, JSON.stringify(added));
  const linked = await admin.request('ota.link', { device: uid, group: 'fuzz' });
  assert.equal(linked.ok, true, JSON.stringify(linked));
  const grouped = await admin.request('ota.link', { group: 'fuzz', image: IMAGE_ID });
  assert.equal(grouped.ok, true, JSON.stringify(grouped));

  const canary = await Canary.start(t, instance, 'canary-payloads');
  const device = await connectDevice(t, instance, uid, { clean: true });
  let disconnects = 0;
  device.on('close', () => disconnects++);
  let received = 0;
  device.on('message', () => received++);
  await device.subscribeAsync([`${uid}/ota/s`, `${uid}/ota/s/d`, `${uid}/app/s/#`], { qos: 1 });
  const before = await instance.metricsText();
  const rss = new RssSampler(instance);

  const background = canary.inBackground();

  const sent: Record<Kind, number> = { tel: 0, ota: 0, app: 0 };
  const shapes: Partial<Record<Shape, number>> = {};
  let acked = 0;
  let bytes = 0;
  const rng = fuzz.rng;
  for (let done = 0; done < fuzz.iterations && background.failure() === undefined && device.connected; ) {
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < WINDOW && done < fuzz.iterations; i++, done++) {
      const kind = rng.pick(['tel', 'ota', 'app'] as const);
      const { payload, shape } = message(rng, kind);
      shapes[shape] = (shapes[shape] ?? 0) + 1;
      const topic = kind === 'app' ? `${uid}/app/p/${rng.pick(['echo', 'x', 'a/b/c', 'data-1'])}` : `${uid}/${kind}/p`;
      sent[kind]++;
      bytes += payload.length;
      batch.push(device.publishAsync(topic, payload, { qos: 1 }).then(() => acked++));
    }
    await Promise.all(batch);
  }
  const canaryError = await background.stop();
  const memory = await rss.stop();

  assert.equal(canaryError, undefined, `the canary failed during fuzzing: ${String(canaryError)}`);
  assert.ok(instance.alive(), `the broker exited:\n${instance.process.output().slice(-3000)}`);
  const total = sent.tel + sent.ota + sent.app;
  assert.equal(total, fuzz.iterations);
  assert.equal(acked, total, 'every message was acknowledged');
  assert.equal(disconnects, 0, 'the fuzzing device was never disconnected');
  await canary.roundTrip();
  assert.ok(memory.peakMb < RSS_BOUND_MB, `RSS peaked at ${memory.peakMb} MB, over the bound of ${RSS_BOUND_MB} MB`);

  // Nothing lost and nothing uncounted: each message was ingested or refused with a reason.
  const after = await instance.metricsText();
  const delta = (name: string, labels: Record<string, string>) => metricValue(after, name, labels) - metricValue(before, name, labels);
  const ingested = { tel: delta('nucleon_mqtt_messages_received_total', { kind: 'tel' }), ota: delta('nucleon_mqtt_messages_received_total', { kind: 'ota' }) };
  const refused = { tel: delta('nucleon_mqtt_bad_payloads_total', { kind: 'tel' }), ota: delta('nucleon_mqtt_bad_payloads_total', { kind: 'ota' }) };
  assert.equal(ingested.tel + refused.tel, sent.tel, `tel: ${ingested.tel} ingested + ${refused.tel} refused ≠ ${sent.tel} sent`);
  assert.equal(ingested.ota + refused.ota, sent.ota, `ota: ${ingested.ota} ingested + ${refused.ota} refused ≠ ${sent.ota} sent`);
  // App payloads are opaque: all ingested (the canary's publishes are app messages too).
  assert.equal(delta('nucleon_mqtt_messages_received_total', { kind: 'app' }), sent.app + canary.roundTrips);
  const reasons = [...after.matchAll(/^nucleon_mqtt_bad_payloads_total\{kind="(\w+)",reason="(\w+)"\} (\d+)$/gm)].map((m) => `${m[1]}.${m[2]}:${m[3]}`).join(',');
  const otaRejected = [...after.matchAll(/^nucleon_ota_rejected_requests_total\{reason="(\w+)"\} (\d+)$/gm)].map((m) => `${m[1]}:${m[2]}`).join(',');
  summary('fuzz device-payloads', {
    seed: fuzz.seed,
    messages: total,
    bytes,
    tel: sent.tel,
    ota: sent.ota,
    app: sent.app,
    telIngested: ingested.tel,
    otaIngested: ingested.ota,
    shapes: Object.entries(shapes)
      .map(([k, v]) => `${k}:${v}`)
      .join(','),
    refused: reasons,
    otaRejected,
    repliesToDevice: received,
    canaryRoundTrips: canary.roundTrips,
    rssStartMb: memory.startMb,
    rssPeakMb: memory.peakMb,
  });
});
