import { monotonicMs } from '../lib/latency.js';
import { sleep } from '../lib/net.js';
import { CpuMeter, writeSyscalls } from '../lib/proc.js';
import { metric, type ScenarioResult } from '../lib/report.js';
import type { ReceiveResult } from '../loadgen/protocol.js';
import { acrossTargets, deviceIds, US_PER_S, type Scenario, type ScenarioContext } from './context.js';

const DEVICES = 64;
const PAYLOAD = 64;
/** Responses the app may have outstanding (aedes callbacks / Mosquitto PUBACKs); Nucleon uses its broker back-pressure. */
const APP_WINDOW = 1000;

/** Waits until the devices have received `want` messages in all, or the count stops moving. */
async function received(context: ScenarioContext, group: string, want: number, maxMs: number): Promise<ReceiveResult> {
  const deadline = Date.now() + maxMs;
  let stats = await context.gen.receiveStats(group);
  let lastChange = Date.now();
  while (stats.received < want && Date.now() < deadline && Date.now() - lastChange < 3000) {
    await sleep(100);
    const next = await context.gen.receiveStats(group);
    if (next.received !== stats.received) lastChange = Date.now();
    stats = next;
  }
  return stats;
}

export const scenario3: Scenario = {
  id: 3,
  title: `server → device: app responses to ${DEVICES} subscribed devices, QoS 1 over TLS, ${PAYLOAD}-byte payloads`,
  async run(context) {
    const result: ScenarioResult = {
      id: 3,
      title: this.title,
      metrics: [
        metric('received by devices', 'msg/s', 0),
        metric('broker CPU per message', 'µs', 2),
        metric('app process CPU per message', 'µs', 2),
        metric('broker + app CPU per message', 'µs', 2),
        metric('load generator CPU per message', 'µs', 2),
        // One TLS record and syscall per message, or several messages per write (src/mqtt/aedes/write-coalescing.ts).
        metric('broker write syscalls per message', '', 2),
        metric('messages received', '', 0),
        metric('lost (sent by the app, not received)', '', 0, { kind: 'max', limit: 0 }),
      ],
      notes: [],
    };
    const perDevice = context.quick ? 300 : 2000;
    await acrossTargets(context, result, async (target) => {
      const group = 'responses';
      const uids = deviceIds('dev', DEVICES);
      const connected = await context.gen.connect({ group, host: '127.0.0.1', port: target.port, uids, keepalive: 600, concurrency: 16, subscribe: { pattern: '{uid}/app/s/#', qos: 1 }, timeoutMs: 20_000 });
      if (connected.connected !== DEVICES) throw new Error(`only ${connected.connected} of ${DEVICES} devices connected: ${connected.errors.join('; ')}`);
      try {
        // Warm-up, then the measured run; device counters are cumulative, so take differences.
        const warm = await target.respond({ uids, perDevice: Math.ceil(perDevice / 10), payloadSize: PAYLOAD, window: APP_WINDOW });
        const before = await received(context, group, warm.published, 30_000);
        const brokerCpu = new CpuMeter([target.brokerPid]);
        const appCpu = target.appPid === undefined ? undefined : new CpuMeter([target.appPid]);
        const genCpu = new CpuMeter(context.gen.pids);
        const writesBefore = writeSyscalls(target.brokerPid);
        const startedMs = monotonicMs();
        const sent = await target.respond({ uids, perDevice, payloadSize: PAYLOAD, window: APP_WINDOW });
        const after = await received(context, group, before.received + sent.published, 60_000);
        const got = after.received - before.received;
        const seconds = (after.lastMs - startedMs) / 1000;
        if (after.disconnects > 0) result.notes.push(`${target.name}: ${after.disconnects} devices were disconnected`);
        const brokerUs = (brokerCpu.elapsed() * US_PER_S) / got;
        const writes = writeSyscalls(target.brokerPid) - writesBefore;
        const appUs = appCpu ? (appCpu.elapsed() * US_PER_S) / got : undefined;
        return [
          got / seconds,
          brokerUs,
          appUs ?? 'in broker',
          brokerUs + (appUs ?? 0),
          (genCpu.elapsed() * US_PER_S) / got,
          writes / got,
          got,
          sent.published - got,
        ];
      } finally {
        await context.gen.close(group);
      }
    });
    result.notes.push(`The app sends ${perDevice} responses to each device round robin; devices subscribe to \`<uid>/app/s/#\` at QoS 1 and acknowledge every message.`);
    return result;
  },
};
