import { sleep } from '../lib/net.js';
import { CpuMeter, memoryUsage, RssWatcher } from '../lib/proc.js';
import { metric, type Metric, type ScenarioResult } from '../lib/report.js';
import type { DownloadResult } from '../loadgen/protocol.js';
import type { Target } from '../targets/index.js';
import { freePort } from '../lib/net.js';
import { acrossTargets, deviceIds, type Scenario } from './context.js';

const IMAGE_ID = '1.0.0-1-gbe0c401';
const IMAGE_SIZE = 1024 * 1024;
const MQTT_CHUNK = 4096;
const HTTP_RANGE = 2048;
const MIB = 2 ** 20;

/** The figures of one download path, in the order of `pathMetrics`. */
interface PathFigures {
  result: DownloadResult;
  rssGrowth: number;
  rssBefore: number;
  rssPeak: number;
  cpuS: number;
}

function pathMetrics(name: string): Metric[] {
  return [
    metric(`${name}: throughput`, 'MB/s', 1),
    metric(`${name}: requests served`, 'req/s', 0),
    metric(`${name}: devices with the whole image`, '', 0),
    metric(`${name}: broker RSS growth`, 'MB', 1, { kind: 'max', limit: 100 }),
    metric(`${name}: broker RSS before / peak`, 'MB', 0),
    metric(`${name}: broker CPU per MiB`, 'ms', 1),
  ];
}

function pathValues(figures: PathFigures): (number | string)[] {
  const { result } = figures;
  const seconds = (result.endMs - result.startMs) / 1000;
  return [
    result.bytes / MIB / seconds,
    result.requests / seconds,
    result.completed,
    figures.rssGrowth / MIB,
    `${(figures.rssBefore / MIB).toFixed(0)} / ${(figures.rssPeak / MIB).toFixed(0)}`,
    (figures.cpuS * 1000) / (result.bytes / MIB),
  ];
}

/** Runs one download wave, metering the broker's CPU and its RSS peak above the level before. */
async function measure(target: Target, download: () => Promise<DownloadResult>): Promise<PathFigures> {
  await target.gc();
  await sleep(300);
  const before = memoryUsage(target.brokerPid).rss;
  const watcher = new RssWatcher(target.brokerPid, 100);
  watcher.start();
  const cpu = new CpuMeter([target.brokerPid]);
  const result = await download();
  const cpuS = cpu.elapsed();
  const peak = watcher.stop();
  // A wave that stays within memory the process already holds grows it by 0.
  return { result, rssGrowth: Math.max(0, peak - before), rssBefore: before, rssPeak: peak, cpuS };
}

export const scenario7: Scenario = {
  id: 7,
  title: 'OTA: devices download a 1 MiB image at once, in 4 KiB MQTT chunks and in 2 KiB HTTPS ranges',
  async run(context) {
    const devices = context.quick ? 20 : 200;
    const result: ScenarioResult = {
      id: 7,
      title: `OTA: ${devices} devices download a 1 MiB image at once in 4 KiB MQTT chunks, then ${devices} over HTTPS in 2 KiB ranges (Nucleon only: the baselines have no OTA)`,
      metrics: [...pathMetrics('MQTT'), ...pathMetrics('HTTPS')],
      notes: [],
    };
    const otaHttpPort = await freePort();
    await acrossTargets(
      context,
      result,
      async (target) => {
        await target.command('otaAddImage', { id: IMAGE_ID, size: IMAGE_SIZE }, 60_000);
        const group = 'ota';
        const uids = deviceIds('ota', devices);
        const connected = await context.gen.connect({ group, host: '127.0.0.1', port: target.port, uids, keepalive: 600, concurrency: 25, subscribe: { pattern: '{uid}/ota/s/#', qos: 1 }, timeoutMs: 30_000 });
        if (connected.connected !== devices) throw new Error(`only ${connected.connected} of ${devices} devices connected: ${connected.errors.join('; ')}`);
        let mqtt: PathFigures;
        try {
          mqtt = await measure(target, () => context.gen.otaMqtt({ group, imageId: IMAGE_ID, size: IMAGE_SIZE, chunkSize: MQTT_CHUNK, chunkTimeoutMs: 30_000 }, 600_000));
        } finally {
          await context.gen.close(group);
        }
        const https = await measure(target, () =>
          context.gen.otaHttp({ uids, url: `https://127.0.0.1:${otaHttpPort}/images/${IMAGE_ID}`, size: IMAGE_SIZE, rangeSize: HTTP_RANGE, requestTimeoutMs: 30_000 }, 600_000),
        );
        for (const [name, figures] of [['MQTT', mqtt] as const, ['HTTPS', https] as const]) {
          if (figures.result.errors.length > 0) result.notes.push(`${name}: ${figures.result.devices - figures.result.completed} devices failed: ${figures.result.errors.join('; ')}`);
        }
        return [...pathValues(mqtt), ...pathValues(https)];
      },
      { only: ['nucleon'], extra: { otaHttpPort } },
    );
    result.notes.push(
      `Each device fetches the whole image one request at a time (MQTT: Pyrinas DownloadBytes on \`<uid>/ota/p\`, answer on \`<uid>/ota/s/d\` at QoS 1; HTTPS: Range GETs on one keep-alive connection per device), checking every chunk's position and length. RSS growth = peak during the wave − RSS before it (after a GC).`,
    );
    return result;
  },
};
