import { sleep } from '../lib/net.js';
import { CpuMeter, memoryUsage } from '../lib/proc.js';
import { metric, type ScenarioResult } from '../lib/report.js';
import { acrossTargets, deviceIds, US_PER_S, type Scenario } from './context.js';

export const scenario5: Scenario = {
  id: 5,
  title: 'idle TLS devices: connect rate, broker CPU per connect, RSS per connection',
  async run(context) {
    const count = context.quick ? 1000 : 10_000;
    const rss = metric('RSS per idle connection', 'KB', 1, { kind: 'max', limit: 20 });
    const heap = metric('JS heap per idle connection', 'KB', 2);
    // Worked out after the run from `heap` and `rss` less Node TLS alone's, not measured.
    const heapBeyond = metric('JS heap per connection beyond Node TLS alone', 'KB', 2, { kind: 'max', limit: 2 });
    const rssBeyond = metric('RSS per connection beyond Node TLS alone', 'KB', 1);
    const result: ScenarioResult = {
      id: 5,
      title: `${count.toLocaleString('en-US')} ${this.title}`,
      metrics: [
        metric('devices connected', '', 0),
        metric('connect rate', 'conn/s', 0),
        metric('broker CPU per connect', 'µs', 0),
        metric('load generator CPU per connect', 'µs', 0),
        rss,
        metric('broker RSS with all connected', 'MB', 1),
        heap,
        heapBeyond,
        rssBeyond,
      ],
      notes: [],
    };
    await acrossTargets(context, result, async (target) => {
      const group = 'idle';
      await target.gc();
      await sleep(500);
      const rssBefore = memoryUsage(target.brokerPid).rss;
      // The JS heap of the Node processes (Mosquitto has none).
      const heapUsed = async () => (target.name === 'mosquitto' ? undefined : (await target.command<NodeJS.MemoryUsage>('memory', {})).heapUsed);
      const heapBefore = await heapUsed();
      const brokerCpu = new CpuMeter([target.brokerPid]);
      const genCpu = new CpuMeter(context.gen.pids);
      try {
        const connected = await context.gen.connect({ group, host: '127.0.0.1', port: target.port, uids: deviceIds('idle', count), keepalive: 600, concurrency: 50, timeoutMs: 60_000 });
        const brokerS = brokerCpu.elapsed();
        const genS = genCpu.elapsed();
        if (connected.failed > 0) result.notes.push(`${target.name}: ${connected.failed} connects failed (${connected.errors.join('; ')})`);
        // Let the broker finish per-connection work (session setup, presence events), then collect garbage.
        await sleep(2000);
        await target.gc();
        await sleep(500);
        const rssAfter = memoryUsage(target.brokerPid).rss;
        const heapAfter = await heapUsed();
        const n = connected.connected;
        const heapPerConnection = heapBefore === undefined || heapAfter === undefined ? undefined : (heapAfter - heapBefore) / 1024 / n;
        return [n, n / (connected.elapsedMs / 1000), (brokerS * US_PER_S) / n, (genS * US_PER_S) / n, (rssAfter - rssBefore) / 1024 / n, rssAfter / 2 ** 20, heapPerConnection];
      } finally {
        await context.gen.close(group);
      }
    }, { only: ['nucleon', 'aedes', 'mosquitto', 'node-tls'] });
    // What a broker adds to each connection beyond Node's own TLS, measured in the same run.
    for (const name of ['nucleon', 'aedes'] as const) {
      for (const [own, beyond] of [
        [heap, heapBeyond],
        [rss, rssBeyond],
      ] as const) {
        const value = own.values[name];
        const floor = own.values['node-tls'];
        if (typeof value === 'number' && typeof floor === 'number') beyond.values[name] = value - floor;
      }
    }
    result.notes.push(
      "Node TLS (no broker) is bench/servers/tls-server.ts: a tls.createServer with the brokers' certificate that answers each CONNECT with a CONNACK and holds the socket. JS heap = heapUsed after − before (full GCs), per connection; \"beyond Node TLS alone\" subtracts its figure, i.e. the broker's own JavaScript per idle device (issue 16's target: under 2 KB).",
    );
    result.notes.push('RSS per connection = (broker RSS after all connected − before) / connected, each read after a full GC in the Node brokers (--expose-gc). Keepalive 600 s; 50 handshakes in flight per generator worker.');
    return result;
  },
};
