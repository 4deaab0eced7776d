// What a campaign device beyond its byte budget gets from the OTA runner
// (README "Campaigns", Byte budget): a late chunk, or past maxDelayMs no MQTT
// reply (Pyrinas firmware cannot read an error on ota/s/d) and HTTP 503 with
// Retry-After; other devices, other images and ended budgets are not limited.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../helpers/index.js';
import { correlationId, downloadRequest, firmware, startOta } from '../helpers/ota-harness.js';

const ID = '4.0.0-1-gbudget2';
const SIZE = 64 * 1024;

async function harness(t: Parameters<typeof startOta>[0]) {
  const h = await startOta(t, { http: true });
  const added = await h.request({ type: 'OtaNewPackage', correlationId: correlationId(), id: ID, imageType: 'primary', source: { kind: 'bytes', data: firmware(SIZE, 5) } });
  assert.ok(added);
  // 1,024 B/s saves 256 bytes when idle: a 4 KiB chunk would wait ~3.75 s, past maxDelayMs 1 s; 200 bytes fit at once.
  await h.broker.publish({ type: 'OtaBudgetSet', budget: { campaignId: 'tight', imageId: ID, bytesPerSecond: 1024, maxDelayMs: 1000, devices: ['in-campaign'] } });
  await h.broker.drain(5000);
  return h;
}

test('MQTT: a chunk within the budget is answered, one past maxDelayMs gets no reply and is counted; another device is served at once', async (t) => {
  const h = await harness(t);
  await h.device(downloadRequest('in-campaign', ID, 0, 200));
  await waitFor(() => h.of('OtaDownloadResponse').find((e) => e.uid === 'in-campaign'), 'the chunk within the budget');

  await h.device(downloadRequest('in-campaign', ID, 200, 4296));
  await h.device(downloadRequest('outsider', ID, 0, 4096));
  await waitFor(() => h.of('OtaDownloadResponse').find((e) => e.uid === 'outsider'), 'the outsider chunk');
  await waitFor(async () => /nucleon_ota_rejected_requests_total\{reason="over_budget"\} 1/.test(await h.metrics.metrics()), 'the refusal counted');
  const text = await h.metrics.metrics();
  assert.match(text, /nucleon_ota_budget_requests_total\{path="mqtt",result="over"\} 1/);
  assert.equal(h.of('OtaDownloadResponse').filter((e) => e.uid === 'in-campaign').length, 1, 'no reply to the chunk over budget');
  assert.ok(h.logs.some((line) => line.reason === 'over_budget' && line.campaign === 'tight'));

  // Once the campaign ends its devices are free again.
  await h.broker.publish({ type: 'OtaBudgetCleared', campaignId: 'tight' });
  await h.broker.drain(5000);
  await h.device(downloadRequest('in-campaign', ID, 200, 4296));
  await waitFor(() => h.of('OtaDownloadResponse').filter((e) => e.uid === 'in-campaign').length === 2, 'the chunk after the budget ended');
});

test('MQTT: a chunk that must wait is answered late, not refused', async (t) => {
  const h = await harness(t);
  // 256 saved bytes; 512 more take ~0.5 s, within maxDelayMs.
  const asked = performance.now();
  await h.device(downloadRequest('in-campaign', ID, 0, 768));
  const answer = await waitFor(() => h.of('OtaDownloadResponse').find((e) => e.uid === 'in-campaign'), 'the late chunk', 5000);
  const waited = performance.now() - asked;
  assert.equal(answer.chunk.len, 768);
  assert.ok(waited >= 400, `answered after ${Math.round(waited)} ms`);
  assert.match(await h.metrics.metrics(), /nucleon_ota_budget_requests_total\{path="mqtt",result="delayed"\} 1/);
});

test('HTTP: a range past maxDelayMs is 503 with Retry-After; HEAD and other devices are not limited', async (t) => {
  const h = await harness(t);
  const base = h.http?.url();
  assert.ok(base);
  const url = (uid: string) => `${base}/images/${ID}?uid=${uid}`;
  const ok = await fetch(url('in-campaign'), { headers: { Range: 'bytes=0-199' } });
  assert.equal(ok.status, 206);
  assert.equal((await ok.arrayBuffer()).byteLength, 200);

  const busy = await fetch(url('in-campaign'), { headers: { Range: 'bytes=200-4295' } });
  assert.equal(busy.status, 503);
  const retryAfter = Number(busy.headers.get('retry-after'));
  assert.ok(retryAfter >= 1 && retryAfter <= 5, `Retry-After ${retryAfter}`);
  assert.equal(busy.headers.get('content-range'), null);
  await busy.arrayBuffer();

  const head = await fetch(url('in-campaign'), { method: 'HEAD' });
  assert.equal(head.status, 200);
  const outsider = await fetch(url('outsider'), { headers: { Range: 'bytes=0-4095' } });
  assert.equal(outsider.status, 206);
  assert.equal((await outsider.arrayBuffer()).byteLength, 4096);
  assert.match(await h.metrics.metrics(), /nucleon_ota_budget_requests_total\{path="http",result="over"\} 1/);
});
