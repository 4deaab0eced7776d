// A load generator worker process: holds simulated devices and runs publish plans on command.
import { notify, serveRpc } from '../lib/ipc.js';
import { monotonicMs } from '../lib/latency.js';
import { BenchDevice } from './device.js';
import { advanceId, PublishTemplate } from './packets.js';
import { Encoder } from 'cbor-x';
import mqttPacket from 'mqtt-packet';
import { otaOverHttp, otaOverMqtt } from './ota-download.js';
import type { ConnectArgs, ConnectResult, DownloadResult, OtaHttpArgs, OtaMqttArgs, PublishArgs, PublishPlan, PublishResult, ReceiveResult } from './protocol.js';

const groups = new Map<string, BenchDevice[]>();
const cborMaps = new Encoder({ useRecords: false, mapsAsObjects: false });
const MAX_REASONS = 5;

function nowMs(): number {
  return monotonicMs();
}

async function connect(args: ConnectArgs): Promise<ConnectResult> {
  const started = nowMs();
  const devices: BenchDevice[] = [];
  const errors: string[] = [];
  let failed = 0;
  let next = 0;
  const lane = async () => {
    while (next < args.uids.length) {
      const uid = args.uids[next++] ?? '';
      const device = new BenchDevice(uid);
      try {
        await device.connect({ host: args.host, port: args.port, clientId: uid, keepalive: args.keepalive, clean: true, timeoutMs: args.timeoutMs });
        if (args.subscribe) await device.subscribe(args.subscribe.pattern.replaceAll('{uid}', uid), args.subscribe.qos, args.timeoutMs);
        devices.push(device);
      } catch (error) {
        failed++;
        device.destroy('connect failed');
        if (errors.length < MAX_REASONS) errors.push(error instanceof Error ? error.message : String(error));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(args.concurrency, args.uids.length)) }, lane));
  groups.set(args.group, [...(groups.get(args.group) ?? []), ...devices]);
  return { connected: devices.length, failed, errors, elapsedMs: nowMs() - started };
}

async function close(args: { group: string }): Promise<{ closed: number }> {
  const devices = groups.get(args.group) ?? [];
  groups.delete(args.group);
  // Bounded concurrency so closing 10,000 devices does not spike the broker either.
  for (let i = 0; i < devices.length; i += 500) await Promise.all(devices.slice(i, i + 500).map((d) => d.disconnect()));
  return { closed: devices.length };
}

function devicesOf(group: string): BenchDevice[] {
  const devices = groups.get(group);
  if (!devices || devices.length === 0) throw new Error(`no connected devices in group "${group}"`);
  return devices;
}

/** One device's part of a publish run. */
class Sender {
  readonly template: PublishTemplate;
  private nextId = 1;
  sent = 0;
  acked = 0;

  constructor(
    readonly device: BenchDevice,
    readonly plan: PublishPlan,
    payloadSize: number,
    private readonly maxMessages: number,
  ) {
    this.template =
      plan.kind === 'telemetry'
        ? new PublishTemplate(`${device.uid}/tel/p`, plan.qos, telemetryPayload())
        : new PublishTemplate(`${device.uid}/app/p/${plan.target}`, plan.qos, payloadSize);
  }

  get remaining(): number {
    return this.maxMessages - this.sent;
  }

  /** How many more may go now under the QoS 1 window. */
  get room(): number {
    if (this.plan.qos === 0) return this.remaining;
    return Math.min(this.remaining, this.plan.window - this.device.inflight);
  }

  send(count: number): boolean {
    if (count <= 0 || this.device.closed) return true;
    const batch = this.template.batch(count, this.nextId, monotonicMs());
    if (this.plan.qos === 1) {
      this.nextId = advanceId(this.nextId, count);
      this.device.inflight += count;
    }
    this.sent += count;
    return this.device.write(batch);
  }
}

const QOS0_BATCH = 64;

/** Telemetry as Pyrinas firmware sends it: integer keys 0 version, 1 rsrp, 2 rssi_hub, 3 rssi_client. */
function telemetryPayload(): Buffer {
  return cborMaps.encode(
    new Map<number, string | number>([
      [0, '1.2.3-4-g965b9df'],
      [1, 97],
      [2, -61],
      [3, -72],
    ]),
  );
}

async function publish(args: PublishArgs): Promise<PublishResult> {
  const devices = devicesOf(args.group);
  const senders = devices.map((device, i) => new Sender(device, args.plans[i % args.plans.length] ?? { qos: 0, target: 'x', window: 1 }, args.payloadSize, args.maxPerDevice));
  const disconnectedBefore = devices.filter((d) => d.closed).length;
  const startMs = nowMs();
  const deadline = Date.now() + args.durationMs;
  let sending = true;
  let skipped = 0;
  const stopSending = setTimeout(() => {
    sending = false;
  }, args.durationMs);

  for (const sender of senders) {
    sender.device.onAcks = (count) => {
      sender.acked += count;
      if (args.mode === 'unthrottled' && sending && Date.now() < deadline) sender.send(sender.room);
    };
  }

  let paced: NodeJS.Timeout | undefined;
  if (args.mode === 'unthrottled') {
    for (const sender of senders) {
      if (sender.plan.qos === 1) sender.send(sender.room);
      else void pumpQos0(sender, () => sending && Date.now() < deadline);
    }
  } else {
    const rate = args.ratePerSec ?? 1000;
    let due = 0;
    let cursor = 0;
    // A 1 ms tick: each tick sends what the rate says is due by now, spread round robin.
    paced = setInterval(() => {
      if (!sending) return;
      const target = Math.floor((rate * (nowMs() - startMs)) / 1000);
      const perDevice = new Map<Sender, number>();
      while (due < target) {
        due++;
        const sender = senders[cursor];
        cursor = (cursor + 1) % senders.length;
        if (!sender) continue;
        const planned = perDevice.get(sender) ?? 0;
        if (sender.room > planned) perDevice.set(sender, planned + 1);
        else skipped++;
      }
      for (const [sender, count] of perDevice) sender.send(count);
    }, 1);
  }

  await new Promise<void>((resolve) => {
    const check = setInterval(() => {
      const allSent = senders.every((s) => s.remaining === 0 || s.device.closed);
      if (sending && !allSent) return;
      sending = false;
      clearTimeout(stopSending);
      if (paced) clearInterval(paced);
      clearInterval(check);
      resolve();
    }, 5);
  });
  const stopMs = nowMs();
  // Wait (bounded) for PUBACKs still on their way.
  const ackDeadline = Date.now() + args.ackTimeoutMs;
  while (Date.now() < ackDeadline && senders.some((s) => s.plan.qos === 1 && !s.device.closed && s.device.inflight > 0)) await sleep(10);

  const sent: Record<string, number> = {};
  const acked: Record<string, number> = {};
  let unacked = 0;
  for (const sender of senders) {
    sender.device.onAcks = undefined;
    sent[sender.plan.target] = (sent[sender.plan.target] ?? 0) + sender.sent;
    if (sender.plan.qos === 1) {
      acked[sender.plan.target] = (acked[sender.plan.target] ?? 0) + sender.acked;
      unacked += sender.sent - sender.acked;
    }
  }
  const closed = devices.filter((d) => d.closed);
  return {
    sent,
    acked,
    unacked,
    skipped,
    startMs,
    stopMs,
    disconnects: closed.length - disconnectedBefore,
    closedAtStart: disconnectedBefore,
    reasons: [...new Set(closed.map((d) => d.closeReason ?? 'unknown'))].slice(0, MAX_REASONS),
  };
}

/** QoS 0 without a window: write batches until the socket pushes back, then wait for drain. */
async function pumpQos0(sender: Sender, keepGoing: () => boolean): Promise<void> {
  while (keepGoing() && sender.remaining > 0 && !sender.device.closed) {
    if (!sender.send(Math.min(QOS0_BATCH, sender.remaining))) await sender.device.drained();
    // Yield now and then so acks and other devices in this worker get their turn.
    else if (sender.sent % (QOS0_BATCH * 16) === 0) await new Promise((resolve) => setImmediate(resolve));
  }
}

function receiveStats(args: { group: string }): ReceiveResult {
  const devices = groups.get(args.group) ?? [];
  let received = 0;
  let first = 0;
  let last = 0;
  for (const d of devices) {
    received += d.received;
    if (d.received > 0 && (first === 0 || d.firstReceivedMs < first)) first = d.firstReceivedMs;
    if (d.lastReceivedMs > last) last = d.lastReceivedMs;
  }
  return { received, firstMs: first, lastMs: last, disconnects: devices.filter((d) => d.closed).length };
}

/** A single QoS 1 request (OTA), id per device cycling; its PUBACK is only counted. */
function publishOnce(device: BenchDevice, topic: string, payload: Buffer): void {
  const id = (device.sent % 65535) + 1;
  device.sent++;
  device.inflight++;
  device.write(mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 1, messageId: id, retain: false, dup: false }));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

serveRpc(
  {
    connect: (args: ConnectArgs) => connect(args),
    close: (args: { group: string }) => close(args),
    publish: (args: PublishArgs) => publish(args),
    receiveStats: (args: { group: string }) => receiveStats(args),
    otaMqtt: (args: OtaMqttArgs): Promise<DownloadResult> => otaOverMqtt(devicesOf(args.group), args, publishOnce),
    otaHttp: (args: OtaHttpArgs): Promise<DownloadResult> => otaOverHttp(args),
  },
  async () => {
    for (const group of [...groups.keys()]) await close({ group });
  },
);
notify('ready');
