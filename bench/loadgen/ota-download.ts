import https from 'node:https';
import { decode, Encoder } from 'cbor-x';
import { monotonicMs } from '../lib/latency.js';
import type { BenchDevice } from './device.js';
import type { DownloadResult, OtaHttpArgs, OtaMqttArgs } from './protocol.js';

/**
 * Devices downloading firmware the two ways Nucleon serves it (scenario 7):
 * Pyrinas DownloadBytes over MQTT, and HTTPS Range requests (nRF9160 FOTA).
 * Every chunk's length and position are checked; a device stops at its first error.
 */

// Integer-keyed CBOR maps, as Pyrinas firmware sends them (DESIGN.md section 1).
const cbor = new Encoder({ useRecords: false, mapsAsObjects: false });
const MAX_ERRORS = 5;

function nowMs(): number {
  return monotonicMs();
}

function downloadRequest(id: string, start: number, end: number): Buffer {
  return cbor.encode(
    new Map<number, number | string>([
      [0, 2],
      [1, id],
      [2, start],
      [3, end],
    ]),
  );
}

/** One device: request a chunk on `<uid>/ota/p`, wait for it on `<uid>/ota/s/d`, repeat. */
async function mqttDevice(device: BenchDevice, args: OtaMqttArgs, publish: (device: BenchDevice, topic: string, payload: Buffer) => void): Promise<{ bytes: number; requests: number }> {
  let bytes = 0;
  let requests = 0;
  try {
    for (let start = 0; start < args.size; start += args.chunkSize) {
      const end = Math.min(args.size, start + args.chunkSize);
      const chunk = new Promise<Buffer>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${device.uid}: no chunk [${start}, ${end}) within ${args.chunkTimeoutMs} ms`)), args.chunkTimeoutMs);
        device.onPublish = (topic, payload) => {
          if (!topic.endsWith('/ota/s/d')) return;
          clearTimeout(timer);
          resolve(payload);
        };
      });
      publish(device, `${device.uid}/ota/p`, downloadRequest(args.imageId, start, end));
      requests++;
      const decoded = decode(await chunk) as Record<string, unknown>;
      const data = decoded['2'];
      if (decoded['0'] !== start || !(data instanceof Uint8Array) || data.length !== end - start) {
        throw new Error(`${device.uid}: chunk [${start}, ${end}) came back as start ${String(decoded['0'])}, ${data instanceof Uint8Array ? data.length : 'no'} bytes`);
      }
      bytes += data.length;
    }
  } finally {
    device.onPublish = undefined;
  }
  return { bytes, requests };
}

export async function otaOverMqtt(devices: BenchDevice[], args: OtaMqttArgs, publish: (device: BenchDevice, topic: string, payload: Buffer) => void): Promise<DownloadResult> {
  const startMs = nowMs();
  const errors: string[] = [];
  const results = await Promise.all(
    devices.map((device) =>
      mqttDevice(device, args, publish).then(
        (r) => ({ ...r, ok: true }),
        (error: unknown) => {
          if (errors.length < MAX_ERRORS) errors.push(error instanceof Error ? error.message : String(error));
          return { bytes: 0, requests: 0, ok: false };
        },
      ),
    ),
  );
  return summarize(devices.length, results, errors, startMs);
}

function get(agent: https.Agent, url: string, start: number, end: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = https.get(url, { agent, headers: { Range: `bytes=${start}-${end - 1}` }, timeout: timeoutMs }, (response) => {
      let length = 0;
      response.on('data', (chunk: Buffer) => (length += chunk.length));
      response.on('end', () => {
        if (response.statusCode !== 206) reject(new Error(`GET ${url} bytes ${start}-${end - 1}: status ${response.statusCode}`));
        else if (length !== end - start) reject(new Error(`GET ${url} bytes ${start}-${end - 1}: ${length} bytes`));
        else resolve(length);
      });
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    request.on('error', reject);
  });
}

async function httpDevice(uid: string, args: OtaHttpArgs): Promise<{ bytes: number; requests: number }> {
  // One keep-alive TLS connection per device, as a modem holds it.
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
  const url = `${args.url}?uid=${encodeURIComponent(uid)}`;
  let bytes = 0;
  let requests = 0;
  try {
    for (let start = 0; start < args.size; start += args.rangeSize) {
      const end = Math.min(args.size, start + args.rangeSize);
      bytes += await get(agent, url, start, end, args.requestTimeoutMs);
      requests++;
    }
  } finally {
    agent.destroy();
  }
  return { bytes, requests };
}

export async function otaOverHttp(args: OtaHttpArgs): Promise<DownloadResult> {
  const startMs = nowMs();
  const errors: string[] = [];
  const results = await Promise.all(
    args.uids.map((uid) =>
      httpDevice(uid, args).then(
        (r) => ({ ...r, ok: true }),
        (error: unknown) => {
          if (errors.length < MAX_ERRORS) errors.push(error instanceof Error ? error.message : String(error));
          return { bytes: 0, requests: 0, ok: false };
        },
      ),
    ),
  );
  return summarize(args.uids.length, results, errors, startMs);
}

function summarize(devices: number, results: { bytes: number; requests: number; ok: boolean }[], errors: string[], startMs: number): DownloadResult {
  return {
    devices,
    completed: results.filter((r) => r.ok).length,
    bytes: results.reduce((n, r) => n + r.bytes, 0),
    requests: results.reduce((n, r) => n + r.requests, 0),
    errors,
    startMs,
    endMs: nowMs(),
  };
}
