// One simulated Pyrinas device over real MQTT/TLS (DESIGN.md section 1): it
// reports its version in telemetry, checks for an update when it boots, takes
// a pushed or answered package by downloading it in DownloadBytes ranges,
// "reboots" (a new MQTT connection) and reports what it runs afterwards. Its
// behaviour decides how the first update goes; later ones (a rollback) go well.
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { decodeCbor, encodeCbor } from '../../src/protocol/index.js';

export type Behaviour = 'good' | 'never_back' | 'revert' | 'boot_loop' | 'silent' | 'stall';
export const BEHAVIOURS: readonly Behaviour[] = ['good', 'never_back', 'revert', 'boot_loop', 'silent', 'stall'];

export interface DeviceTimings {
  telemetryEveryMs: number;
  /** How long a reboot keeps the device offline. */
  rebootMs: number;
  /** Bytes asked for per DownloadBytes request. */
  chunkSize: number;
  /** A chunk request not answered within this is sent again (a restarting broker loses it). */
  chunkTimeoutMs: number;
  /** Connections a boot-looping device opens (and drops) before it stays offline. */
  bootLoopConnects: number;
  /** Delay before another connection attempt (a refused or lost connection). */
  reconnectPeriodMs: number;
}

export const DEFAULT_TIMINGS: DeviceTimings = { telemetryEveryMs: 1000, rebootMs: 300, chunkSize: 4096, chunkTimeoutMs: 3000, bootLoopConnects: 5, reconnectPeriodMs: 500 };

export interface DeviceOptions {
  uid: string;
  /** mqtts://host:port */
  url: string;
  /** TLS and login: ca, and password or cert/key. */
  login: Pick<IClientOptions, 'ca' | 'cert' | 'key' | 'password'>;
  version: string;
  behaviour: Behaviour;
  timings: DeviceTimings;
}

/** What the device saw and did, for tests and the fleet report. */
export interface DeviceLog {
  /** Packages offered for another image than the one it runs (push or check answer), by image id. */
  offers: Map<string, number>;
  /**
   * Of those, the ones pushed unasked: the server telling it of a link (a
   * campaign notifying it). A package that comes while a check of its is
   * unanswered counts as that check's answer (topic order is kept, so this is
   * exact unless a push and an answer cross).
   */
  pushes: Map<string, number>;
  /** Images it downloaded completely, in order. */
  downloaded: string[];
  /** MQTT connections it opened (boots and reconnects). */
  connects: number;
  /** Connection attempts at boot that failed (and were tried again), and the last reason. */
  connectFailures: number;
  lastConnectError?: string;
  /** The last error of its connection (mqtt.js reconnects after it). */
  lastError?: string;
  chunkRequests: number;
}

type Chunk = { start: number; data: Buffer };

export class SimDevice {
  version: string;
  readonly log: DeviceLog = { offers: new Map(), pushes: new Map(), downloaded: [], connects: 0, connectFailures: 0, chunkRequests: 0 };
  /** 'gone' once it stopped for good (bricked, looped out, or stop()). */
  status: 'off' | 'running' | 'updating' | 'gone' = 'off';
  private client: MqttClient | undefined;
  private telemetryTimer: NodeJS.Timeout | undefined;
  private telemetryOn = true;
  private updates = 0;
  /** Checks sent on this connection and not answered yet. */
  private uncheckedAnswers = 0;
  private readonly reverted = new Set<string>();
  private readonly waitingChunks = new Map<number, (chunk: Chunk) => void>();
  private readonly sleeps = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  private work: Promise<void> = Promise.resolve();
  private reconnecting: Promise<void> = Promise.resolve();
  /** The first failure of its background work; the fleet reports it. */
  failure: unknown;

  constructor(private readonly options: DeviceOptions) {
    this.version = options.version;
  }

  get uid(): string {
    return this.options.uid;
  }

  get behaviour(): Behaviour {
    return this.options.behaviour;
  }

  connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Packages for `imageId` it received: pushed or answering a check. */
  offersOf(imageId: string): number {
    return this.log.offers.get(imageId) ?? 0;
  }

  /** Packages for `imageId` pushed to it unasked: how often it was notified. */
  pushesOf(imageId: string): number {
    return this.log.pushes.get(imageId) ?? 0;
  }

  /** Boots: connects, subscribes, reports its version and checks for an update. */
  async start(): Promise<void> {
    this.status = 'running';
    await this.boot();
  }

  /** Closes its connection and ends every timer; waits for work in progress to notice. */
  async stop(): Promise<void> {
    this.status = 'gone';
    this.stopTelemetry();
    for (const sleep of this.sleeps) {
      clearTimeout(sleep.timer);
      sleep.resolve();
    }
    this.sleeps.clear();
    await this.disconnect();
    await this.work;
    await this.reconnecting;
  }

  /** Power-on: connects (which checks for an update) and reports its version. */
  private async boot(): Promise<void> {
    if (!(await this.attach())) return;
    await this.sendTelemetry();
  }

  /** Check: what is linked to me? Answered on ota/s with the package or an empty payload. */
  private async check(): Promise<void> {
    if (await this.publish(`${this.uid}/ota/p`, encodeCbor(new Map<number, unknown>([[0, 0]])))) this.uncheckedAnswers++;
  }

  /**
   * Connects and subscribes; false when stopped meanwhile. A connection lost
   * without the device meaning it (a broker restart) is made again by the
   * device itself, not by mqtt.js: mqtt.js gives up after a refused CONNACK
   * (the broker sheds logins with "server unavailable" while busy), firmware
   * does not. Reconnecting is no boot, so it does not check for an update.
   */
  private async attach(telemetry = true): Promise<boolean> {
    const { uid } = this.options;
    const client = await this.connect();
    if (!client) return false;
    if (this.stopped()) {
      // stop() came while it connected: it must not leave this client open.
      await client.endAsync(true);
      return false;
    }
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    // The last error is kept for reports; what to do about it is the 'close' handler's job.
    client.on('error', (error) => {
      this.log.lastError = error.message;
    });
    client.once('close', () => {
      if (this.client !== client) return; // closed on purpose (reboot, stop)
      this.client = undefined;
      this.stopTelemetry();
      this.reconnecting = this.reattach().catch((error: unknown) => {
        this.failure ??= error;
      });
    });
    this.client = client;
    this.log.connects++;
    // mqtt.js queues a SUBSCRIBE on a closed connection for a reconnect that never comes here: the 'close'
    // handler above makes the connection again, and this attempt gives up.
    if (!(await untilClosed(client, client.subscribeAsync([`${uid}/ota/s`, `${uid}/ota/s/d`], { qos: 1 })))) return false;
    if (telemetry && this.telemetryOn) this.startTelemetry();
    // Every connection checks for an update, as Pyrinas firmware does once connected: a push sent while it
    // was offline (a link made during a broker restart) is lost, the check finds the link all the same.
    // A boot loop drops before it gets that far.
    this.uncheckedAnswers = 0;
    if (telemetry) await this.check();
    return true;
  }

  private async reattach(): Promise<void> {
    await this.sleep(this.options.timings.reconnectPeriodMs);
    if (this.stopped()) return;
    await this.attach();
  }

  /**
   * Connects as firmware does at boot: a refused or timed-out attempt (a busy
   * or restarting broker) is tried again until it works or the device is stopped.
   */
  private async connect(): Promise<MqttClient | undefined> {
    const { uid, url, login, timings } = this.options;
    while (!this.stopped()) {
      try {
        // allowRetries false: a connection closed before CONNACK (a handshake the busy broker dropped) rejects
        // instead of leaving the promise pending with nothing left to settle it.
        const client = await mqtt.connectAsync(url, { ...login, clientId: uid, username: uid, protocolVersion: 4, connectTimeout: 10_000, reconnectPeriod: 0, queueQoSZero: false }, false);
        if (client.connected) return client;
        await client.endAsync(true);
        throw new Error('the connection ended before CONNACK');
      } catch (error) {
        this.log.connectFailures++;
        this.log.lastConnectError = error instanceof Error ? error.message : String(error);
        await this.sleep(timings.reconnectPeriodMs);
      }
    }
    return undefined;
  }

  private async disconnect(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.stopTelemetry();
    if (client) await client.endAsync(true);
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic.endsWith('/ota/s/d')) {
      const chunk = decodeCbor(payload) as Map<number, unknown>;
      const start = Number(chunk.get(0));
      this.waitingChunks.get(start)?.({ start, data: Buffer.from(chunk.get(2) as Uint8Array) });
      return;
    }
    const answer = this.uncheckedAnswers > 0;
    if (answer) this.uncheckedAnswers--;
    if (payload.length === 0) return; // "no update"
    const pkg = decodeCbor(payload) as Map<number, unknown>;
    const imageId = String(pkg.get(0));
    const size = Number(pkg.get(3));
    if (imageId === this.version) return;
    this.log.offers.set(imageId, (this.log.offers.get(imageId) ?? 0) + 1);
    if (!answer) this.log.pushes.set(imageId, (this.log.pushes.get(imageId) ?? 0) + 1);
    // A reverted image is not taken again (else the check at boot would start the same failure over).
    if (this.status !== 'running' || this.reverted.has(imageId)) return;
    this.status = 'updating';
    this.work = this.update(imageId, size).catch((error: unknown) => {
      this.failure ??= error;
    });
  }

  private async update(imageId: string, size: number): Promise<void> {
    // Misbehaviour is about the update being rolled out; a later one (the rollback) goes well.
    const behaviour = this.updates++ === 0 ? this.options.behaviour : 'good';
    const complete = await this.download(imageId, size, behaviour === 'stall');
    if (!complete) return; // stalled: stays on its version, connected, still sending telemetry
    this.log.downloaded.push(imageId);
    await this.disconnect();
    await this.sleep(this.options.timings.rebootMs);
    if (this.stopped()) return;
    switch (behaviour) {
      case 'never_back':
        this.status = 'gone';
        return;
      case 'boot_loop':
        // It crashes while starting: connects, then drops, before it sends anything.
        for (let i = 0; i < this.options.timings.bootLoopConnects && !this.stopped(); i++) {
          await this.attach(false);
          await this.sleep(this.options.timings.rebootMs);
          await this.disconnect();
        }
        this.status = 'gone';
        return;
      case 'revert':
        // MCUboot found the image bad and swapped back: it boots the old version.
        this.reverted.add(imageId);
        break;
      case 'silent':
        this.version = imageId;
        this.telemetryOn = false;
        break;
      default:
        this.version = imageId;
    }
    if (this.stopped()) return;
    this.status = 'running';
    await this.boot();
    if (this.version === imageId) await this.publish(`${this.uid}/ota/p`, encodeCbor(new Map<number, unknown>([[0, 1]])));
  }

  /** DownloadBytes range by range, each asked again when its answer does not come; false when it stalls on purpose. */
  private async download(imageId: string, size: number, stall: boolean): Promise<boolean> {
    const { chunkSize, chunkTimeoutMs } = this.options.timings;
    for (let start = 0; start < size; ) {
      if (this.stopped()) return false;
      if (stall && start > 0) return false;
      const end = Math.min(start + chunkSize, size);
      const chunk = await this.requestChunk(imageId, start, end, chunkTimeoutMs);
      if (chunk) start += chunk.data.length;
    }
    return true;
  }

  private async requestChunk(imageId: string, start: number, end: number, timeoutMs: number): Promise<Chunk | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const answered = new Promise<Chunk | undefined>((resolve) => {
      this.waitingChunks.set(start, resolve);
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    try {
      this.log.chunkRequests++;
      await this.publish(`${this.uid}/ota/p`, encodeCbor(new Map<number, unknown>([[0, 2], [1, imageId], [2, start], [3, end]])));
      return await answered;
    } finally {
      clearTimeout(timer);
      this.waitingChunks.delete(start);
    }
  }

  private startTelemetry(): void {
    this.stopTelemetry();
    this.telemetryTimer = setInterval(() => {
      this.sendTelemetry().catch((error: unknown) => {
        this.failure ??= error;
      });
    }, this.options.timings.telemetryEveryMs);
  }

  private stopTelemetry(): void {
    clearInterval(this.telemetryTimer);
    this.telemetryTimer = undefined;
  }

  private async sendTelemetry(): Promise<void> {
    if (!this.telemetryOn) return;
    await this.publish(`${this.uid}/tel/p`, encodeCbor(new Map<number, unknown>([[0, this.version], [1, 44]])));
  }

  /**
   * QoS 0 while disconnected would be queued by mqtt.js and sent late; a
   * device offline loses what it meant to send, so nothing is sent then.
   */
  private async publish(topic: string, payload: Buffer): Promise<boolean> {
    const client = this.client;
    if (!client?.connected) return false;
    try {
      await client.publishAsync(topic, payload, { qos: 0 });
      return true;
    } catch (error) {
      // Lost with the connection it was sent on, as on a device; any other failure is the simulator's.
      if (client.connected) throw error;
      this.log.lastError = error instanceof Error ? error.message : String(error);
      return false;
    }
  }

  /** A method, not a field test, since stop() changes the status while an update awaits. */
  private stopped(): boolean {
    return this.status === 'gone';
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = { timer: setTimeout(() => {
        this.sleeps.delete(entry);
        resolve();
      }, ms), resolve };
      this.sleeps.add(entry);
    });
  }
}

/** Resolves true when `work` settles first, false when the connection closes first (then `work` is left to mqtt.js). */
function untilClosed(client: MqttClient, work: Promise<unknown>): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const onClose = () => resolve(false);
    client.once('close', onClose);
    work.then(
      () => {
        client.off('close', onClose);
        resolve(true);
      },
      (error: unknown) => {
        client.off('close', onClose);
        if (client.connected) reject(error instanceof Error ? error : new Error(String(error)));
        else resolve(false);
      },
    );
  });
}
