import type { Client, PublishPacket } from 'aedes';
import type { EventBroker } from '../broker/index.js';
import type { DeviceEvent } from '../events.js';
import { deviceEvent, type DeviceMessage, type TelemetryNotes } from '../ingest/index.js';
import type { Logger } from '../logger.js';
import type { TelemetryFields } from '../protocol/index.js';
import { everyNth, FirstSeen } from '../util/log-sampling.js';
import { WaitList } from '../util/wait-list.js';
import { decidePublish, type Principal, type PublishVerdict } from './acl.js';
import type { AclRules } from './acl-rules.js';
import { markHandled, readAhead, type NucleonAedes } from './aedes/index.js';
import { DEFAULT_DISK_WAITS, DiskWaits, type DiskWaiter, type DiskWaitsOptions } from './disk-waits.js';
import type { MqttMetrics } from './metrics.js';
import { HeldPublishes, principalOfStaleWill, type PublishCallback, type Session } from './sessions.js';

/** At most this many publishes held per paused client (one socket read of 64-byte messages is a few hundred). */
export const MAX_HELD_PER_CLIENT = 8192;
/**
 * A connection reads on past a message waiting for the disk (readAhead) only
 * while fewer messages than this wait for the disk in all: the light load
 * below which device messages also route at once (disk-waits.ts). Under light load a
 * write holds a few messages and the device's next ones need not wait for
 * it; under full load thousands wait, and reading further ahead only put
 * more messages in the heap: bench scenario 2 (QoS 0 floods into the app
 * runner), quick runs interleaved with the build before, 8.4–10.7 µs of
 * broker CPU per message against 6.8–7.7 with read-ahead at any load.
 */
export const READ_AHEAD_BELOW = DEFAULT_DISK_WAITS.routeAtOnceBelow;

/** Client ids with QoS 2 publishes ingested and not yet in aedes' incoming store; the oldest is forgotten first. */
const MAX_QOS2_CLIENTS = 100_000;

/** What one PUBLISH becomes, decided once. */
type Outcome =
  /** Device data: through the ingest log, then acknowledged; also routed into MQTT when `route`. */
  | { kind: 'ingest'; event: DeviceEvent; message: DeviceMessage }
  /** A service account speaking for the server: routed into MQTT (stored for offline sessions) before the acknowledgement. */
  | { kind: 'route' }
  /** Acknowledged and not passed on: a payload that does not decode, or a duplicate of a QoS 2 publish already taken. */
  | { kind: 'drop'; reason: 'bad_payload' | 'duplicate' }
  /** Not allowed by the ACL: acknowledged and not passed on [MQTT-3.3.5-2], or the connection closed after too many. */
  | { kind: 'deny'; reason: string };

export interface PublishPathOptions {
  broker: EventBroker;
  metrics: MqttMetrics;
  logger: Logger;
  maxAclViolations: number;
  /**
   * Whether device messages also go into MQTT routing, so that service
   * accounts' subscriptions (online, and persistent ones while offline) get
   * them: true as soon as any service account exists.
   */
  routeDeviceMessages: () => boolean;
  /** Records why a client is about to be disconnected. */
  noteReason: (client: Client, reason: string) => void;
  /** The configured ACL rules now (they can change while running). */
  rules: () => AclRules;
  /** Extra telemetry fields (`[[telemetry.fields]]`); none when absent. */
  telemetryFields?: TelemetryFields;
  /** When a device message routes before it is durable (tests set a clock). */
  diskWaits?: DiskWaitsOptions;
  /** Lets a client's connection read on past a message the log took (default: bounded-reads.ts' readAhead; tests record it). */
  readAhead?: (client: Client) => unknown;
}

/** Distinct unknown telemetry keys logged (once each) per process. */
const MAX_LOGGED_UNKNOWN_KEYS = 256;

/**
 * The device data path, one step after another for every PUBLISH a client
 * sends (aedes' `authorizePublish`, which runs before aedes acknowledges) and
 * for every will:
 *
 *   authorize (ACL) → decode → append to the ingest log → fan out to the
 *   runners; (durable) → route into MQTT when service accounts exist →
 *   acknowledge
 *
 * The acknowledgement (aedes' callback, which sends the PUBACK or PUBREC)
 * leaves only once the message is in the ingest log and, when routed, stored
 * for persistent sessions. Routing happens here, before the acknowledgement,
 * never in aedes' own publish step afterwards (NucleonAedes skips client
 * publishes). Under light load, while a message the log took waits for the
 * disk, its connection reads on (bounded-reads.ts' readAhead), so the
 * device's next messages do not wait in the socket for this one's write;
 * only its acknowledgement waits. While the log (or, in "memory" durability, a runner's inbox)
 * has no room, the device's publishes are held in order, unacknowledged, and
 * aedes reads nothing more from its socket: back-pressure, never loss.
 */
export class PublishPath {
  private aedes: NucleonAedes | undefined;
  /** client id → message ids of QoS 2 publishes ingested that aedes has not stored yet (see `duplicateQos2`). */
  private readonly qos2Ingested = new Map<string, Set<number>>();
  private paused = 0;
  /** Wills of an earlier run (aedes' will sweep) being published now. */
  private staleWillsRunning = 0;
  private readonly staleWillsDone = new WaitList();
  private readonly unknownKeysLogged = new FirstSeen<number | string>(MAX_LOGGED_UNKNOWN_KEYS);
  private readonly refusedLogged = everyNth(100);
  private readonly diskWaits: DiskWaits;
  private readonly routing: Routing;
  private readonly readAhead: (client: Client) => unknown;

  constructor(private readonly options: PublishPathOptions) {
    this.diskWaits = new DiskWaits(options.diskWaits ?? DEFAULT_DISK_WAITS);
    this.readAhead = options.readAhead ?? readAhead;
    this.routing = {
      route: (client, packet, callback) => this.routeThenAck(client, packet, callback),
      waits: this.diskWaits,
      routedAhead: options.metrics.routedBeforeDurable,
    };
  }

  attach(aedes: NucleonAedes): void {
    this.aedes = aedes;
  }

  /** Clients held back for ingest room now. */
  get pausedClients(): number {
    return this.paused;
  }

  /**
   * Resolves true once no will of an earlier run is being published (false
   * after `timeoutMs`). aedes' will sweep deletes a will from the session
   * store right after its publish is done here; a stop that closed the store
   * in between left the will stored, and it was published a second time
   * after the next start (test/system/faults-stale-wills.test.ts, seen in CI).
   */
  staleWillsIdle(timeoutMs: number): Promise<boolean> {
    return this.staleWillsDone.until(() => this.staleWillsRunning === 0, timeoutMs);
  }

  /** A client's publish, or a will (`client` null: a will of a client from an earlier run). */
  handle(client: Client | null, session: Session | undefined, packet: PublishPacket, callback: PublishCallback): void {
    this.options.metrics.publishesIn++;
    if (client === null) {
      this.staleWillsRunning++;
      this.staleWill(packet, (error) => {
        this.staleWillsRunning--;
        if (this.staleWillsRunning === 0) this.staleWillsDone.wakeAll();
        callback(error);
      });
      return;
    }
    if (!session) {
      callback(new Error('not authorized'));
      return;
    }
    if (packet.qos === 2) {
      this.duplicateQos2(client, packet).then(
        (duplicate) => {
          if (duplicate) this.apply(client, session, packet, { kind: 'drop', reason: 'duplicate' }, callback);
          else this.apply(client, session, packet, this.decide(session.principal, client.id, packet, session), callback);
        },
        (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))),
      );
      return;
    }
    this.apply(client, session, packet, this.decide(session.principal, client.id, packet, session), callback);
  }

  /** aedes has stored a QoS 2 publish in its incoming store: from now on the store answers for its duplicates. */
  stored(client: Client, packet: PublishPacket): void {
    const ids = this.qos2Ingested.get(client.id);
    if (!ids) return;
    ids.delete(packet.messageId ?? 0);
    if (ids.size === 0) this.qos2Ingested.delete(client.id);
  }

  // ---- deciding ------------------------------------------------------------

  private decide(principal: Principal, clientId: string, packet: PublishPacket, session: Session | undefined): Outcome {
    const rules = this.options.rules();
    let verdict: PublishVerdict | undefined = session?.lastTopic === packet.topic && session.lastRulesVersion === rules.version ? session.lastVerdict : undefined;
    if (verdict === undefined) {
      verdict = decidePublish({ principal, clientId }, packet.topic, rules);
      if (session) {
        session.lastTopic = packet.topic;
        session.lastVerdict = verdict;
        session.lastRulesVersion = rules.version;
      }
    }
    if (verdict.kind === 'route') return { kind: 'route' };
    if (verdict.kind === 'deny') return { kind: 'deny', reason: verdict.reason };
    const topic = verdict.topic;
    const raw = packet.payload as Buffer;
    // An app payload stays with its event (and waits in inboxes): copied, so the socket's read buffer is not held.
    const payload = topic.kind === 'app' ? Uint8Array.prototype.slice.call(raw) : raw;
    const message: DeviceMessage = { kind: topic.kind, uid: topic.uid, target: topic.target, payload, receivedAt: Date.now(), qos: packet.qos };
    const decoded = deviceEvent(message, this.options.telemetryFields);
    if (!decoded.ok) {
      // Logged with uid and topic, counted; acknowledged, so the device does not resend it forever.
      this.options.metrics.badPayloads.inc({ kind: topic.kind, reason: decoded.reason });
      this.options.logger.warn({ uid: topic.uid, topic: packet.topic, reason: decoded.reason, error: decoded.message }, 'device payload refused');
      return { kind: 'drop', reason: 'bad_payload' };
    }
    if (decoded.notes) this.reportTelemetryNotes(topic.uid, decoded.notes);
    return { kind: 'ingest', event: decoded.event, message };
  }

  /** Only the live path reports: a replay from the ingest log decodes the same message again. */
  private reportTelemetryNotes(uid: string, notes: TelemetryNotes): void {
    const { metrics, logger } = this.options;
    for (const key of notes.unknownKeys) {
      metrics.telemetryUnknownKeys.inc();
      const seen = this.unknownKeysLogged.note(key);
      if (seen === 'new') logger.warn({ uid, key }, 'telemetry key not built in and not in [[telemetry.fields]]: left out of the point (logged once per key)');
      else if (seen === 'full') logger.warn({ uid, key, remembered: MAX_LOGGED_UNKNOWN_KEYS }, 'many distinct unknown telemetry keys: further new ones are counted, not logged');
    }
    for (const refused of notes.refused) {
      metrics.telemetryFieldsRefused.inc({ field: refused.name });
      if (this.refusedLogged()) {
        logger.warn({ uid, key: refused.key, field: refused.name, expected: refused.type, got: refused.value }, `telemetry field ${refused.name} (key ${JSON.stringify(refused.key)}) must be ${refused.type}, got ${refused.value}: left out of the point`);
      }
    }
  }

  /**
   * Whether a QoS 2 publish was taken already [MQTT-4.3.3-2]: aedes checks
   * its incoming store only after this hook ran, so a resend with DUP (after a
   * reconnect, say) became a second event. Ingested ids are remembered per
   * client id until aedes has stored the packet; from then on the store knows
   * it, across reconnects of a persistent session, until PUBREL.
   */
  private async duplicateQos2(client: Client, packet: PublishPacket): Promise<boolean> {
    const id = packet.messageId ?? 0;
    if (this.qos2Ingested.get(client.id)?.has(id)) return true;
    const persistence = (this.aedes as { persistence?: unknown } | undefined)?.persistence as { incomingGetPacket(client: Client, packet: PublishPacket): Promise<unknown> } | undefined;
    if (!persistence) return false;
    return persistence.incomingGetPacket(client, packet).then(
      () => true,
      () => false,
    );
  }

  // ---- acting --------------------------------------------------------------

  private apply(client: Client, session: Session, packet: PublishPacket, outcome: Outcome, callback: PublishCallback): void {
    switch (outcome.kind) {
      case 'ingest':
        if (packet.qos === 2) this.rememberQos2(client, packet);
        this.ingest(client, session, packet, outcome.event, outcome.message, callback);
        return;
      case 'route':
        if (packet.qos === 2) this.rememberQos2(client, packet);
        this.routeThenAck(client, packet, callback);
        return;
      case 'drop':
        callback(null);
        return;
      case 'deny':
        this.deny(client, session, packet, outcome.reason, callback);
        return;
    }
  }

  private ingest(client: Client, session: Session, packet: PublishPacket, event: DeviceEvent, message: DeviceMessage, callback: PublishCallback): void {
    this.options.metrics.received[message.kind]++;
    if (!this.options.routeDeviceMessages()) {
      // Nothing of this device waits before it: straight into the log (or, in "memory" mode, the inboxes).
      // aedes' callback is the acknowledgement itself (the log calls it without an error): no closure per message.
      if (session.held === undefined && this.options.broker.ingest(event, message, callback)) {
        this.readOnUnderLightLoad(client);
        return;
      }
      this.hold(client, session, event, () => this.options.broker.ingest(event, message, callback), callback);
      return;
    }
    // Into the log; once durable, routed into MQTT and acknowledged. Under light load, or once it has waited for the disk
    // much longer than usual, it routes before (disk-waits.ts); its acknowledgement still waits for the disk.
    const waiter = new RouteAfterDisk(this.routing, client, packet, message.receivedAt, callback);
    if (session.held === undefined && this.takeRouted(event, message, waiter)) {
      this.readOnUnderLightLoad(client);
      return;
    }
    this.hold(client, session, event, () => {
      // After a wait for room (back-pressure), the wait for the disk starts now, not when the message came.
      waiter.since = Date.now();
      return this.takeRouted(event, message, waiter);
    }, callback);
  }

  /**
   * After the log took a message: with a log its acknowledgement always waits for a write (without one, "memory",
   * it came already), so its connection reads on meanwhile while few messages wait (READ_AHEAD_BELOW).
   */
  private readOnUnderLightLoad(client: Client): void {
    const broker = this.options.broker;
    if (broker.hasIngestLog && broker.ingestWaitingForDisk < READ_AHEAD_BELOW) this.readAhead(client);
  }

  private takeRouted(event: DeviceEvent, message: DeviceMessage, waiter: RouteAfterDisk): boolean {
    if (!this.options.broker.ingest(event, message, waiter.onDurable)) return false;
    // In "memory" durability the log acknowledges at once.
    if (waiter.waiting) this.diskWaits.add(waiter);
    return true;
  }

  /** No more routing ahead of the disk (the broker is stopping). */
  stop(): void {
    this.diskWaits.stop();
  }

  /** Runs once the message is durable: route it into MQTT when service accounts may want it, then acknowledge. */
  private acknowledgement(client: Client | null, packet: PublishPacket, callback: PublishCallback): () => void {
    if (!this.options.routeDeviceMessages()) return () => callback(null);
    return () => this.routeThenAck(client, packet, callback);
  }

  /**
   * aedes acknowledges a QoS 1 publish before its own publish step stores it
   * for offline sessions; a crash in between lost an acknowledged message.
   * Routing here, before the callback, closes that window.
   */
  private routeThenAck(client: Client | null, packet: PublishPacket, callback: PublishCallback): void {
    const aedes = this.aedes;
    if (!aedes) {
      callback(new Error('not attached'));
      return;
    }
    aedes.route(packet, client, (error?: Error) => {
      if (error && client === null) {
        // A will: never an error back to aedes' will sweep (two in one batch became an unhandled rejection).
        this.options.logger.warn({ err: error, topic: packet.topic }, 'a will could not be routed');
        callback(null);
        return;
      }
      callback(error ?? null);
    });
  }

  private deny(client: Client, session: Session, packet: PublishPacket, reason: string, callback: PublishCallback): void {
    session.violations++;
    this.countDenied(reason);
    if (session.violations === 1) this.options.logger.warn({ clientId: client.id, topic: packet.topic, reason }, 'publish denied');
    if (session.violations >= this.options.maxAclViolations) {
      this.options.logger.warn({ clientId: client.id, violations: session.violations }, 'too many denied publishes; closing the connection');
      this.options.noteReason(client, 'acl_violations');
      callback(new Error('too many denied publishes'));
      return;
    }
    // MQTT 3.1.1 [MQTT-3.3.5-2]: acknowledge as usual; the message itself goes nowhere.
    callback(null);
  }

  private countDenied(reason: string): void {
    const metrics = this.options.metrics;
    if (reason === 'not_own_uid' || reason === 'wrong_direction' || reason === 'reserved' || reason === 'device_topic' || reason === 'denied_by_rule' || reason === 'no_rule') metrics.aclDenied.inc({ action: 'publish', reason });
    else metrics.malformedTopics.inc({ reason });
  }

  private rememberQos2(client: Client, packet: PublishPacket): void {
    let ids = this.qos2Ingested.get(client.id);
    if (!ids) {
      if (this.qos2Ingested.size >= MAX_QOS2_CLIENTS) {
        const oldest = this.qos2Ingested.keys().next();
        if (oldest.done !== true) this.qos2Ingested.delete(oldest.value);
      }
      ids = new Set();
      this.qos2Ingested.set(client.id, ids);
    }
    ids.add(packet.messageId ?? 0);
  }

  /**
   * A will of a client from an earlier run (aedes' will sweep publishes it
   * with no client): published under the identity its client id names, with
   * the same ACL as a live publish, as MQTT expects. Never an error back to
   * aedes (see routeThenAck); a will that is not allowed is logged and dropped.
   */
  private staleWill(packet: PublishPacket, callback: PublishCallback): void {
    markHandled(packet);
    const principal = principalOfStaleWill(packet);
    const clientId = (packet as { clientId?: unknown }).clientId;
    const outcome = principal ? this.decide(principal, String(clientId), packet, undefined) : ({ kind: 'deny', reason: 'unknown_client' } as const);
    this.options.metrics.staleWills.inc({ result: outcome.kind === 'route' || outcome.kind === 'ingest' ? 'published' : outcome.kind === 'deny' ? 'denied' : 'bad_payload' });
    switch (outcome.kind) {
      case 'route':
        this.routeThenAck(null, packet, callback);
        return;
      case 'ingest': {
        this.options.metrics.received[outcome.message.kind]++;
        const acknowledge = this.acknowledgement(null, packet, callback);
        const tryIngest = (): void => {
          if (this.options.broker.ingest(outcome.event, outcome.message, acknowledge)) return;
          // No socket to pause: wait for room. If the broker stops first, the will stays stored for the next start.
          this.options.broker.whenIngestRoom(outcome.event.type).then(tryIngest, (error: unknown) => {
            this.options.logger.warn({ err: error, clientId }, 'a will of an earlier run was not published before the stop; it stays stored');
          });
        };
        tryIngest();
        return;
      }
      case 'drop':
        callback(null);
        return;
      case 'deny':
        this.countDenied(outcome.reason);
        this.options.logger.warn({ clientId, topic: packet.topic, reason: outcome.reason }, 'a will of an earlier run was not allowed; dropped it');
        callback(null);
        return;
    }
  }

  // ---- back-pressure -----------------------------------------------------

  /**
   * Back-pressure for a device that out-runs the log or a runner: its
   * publishes wait here in order, unacknowledged, with one wait for all of
   * them; aedes does not read the socket meanwhile, so the device's TCP window
   * fills and it slows down. Nothing is refused and the connection stays up
   * (until the broker stops: then the held publishes fail unacknowledged and
   * the device sends them again after reconnecting).
   */
  private hold(client: Client, session: Session, event: DeviceEvent, resume: () => boolean, callback: PublishCallback): void {
    const fail = (error: Error) => callback(error);
    if (session.held === undefined) {
      const held = new HeldPublishes();
      held.items.push({ event, resume, fail });
      session.held = held;
      this.paused++;
      this.waitForRoom(client, session, held);
      return;
    }
    if (session.held.size >= MAX_HELD_PER_CLIENT) {
      this.options.metrics.overloaded.inc({ where: 'held_per_client' });
      this.options.noteReason(client, 'overloaded');
      callback(new Error('too many publishes waiting for room'));
      return;
    }
    session.held.items.push({ event, resume, fail });
  }

  private waitForRoom(client: Client, session: Session, held: HeldPublishes): void {
    const first = held.items[held.head];
    if (first === undefined) {
      this.release(session);
      return;
    }
    this.options.broker.whenIngestRoom(first.event.type, held.gone.signal).then(
      () => {
        if (client.closed) {
          // Gone while paused: nothing was acknowledged, so nothing is handed
          // on either (the device sends it again, and it is not doubled).
          this.failHeld(session, held, new Error('connection closed'));
          return;
        }
        // Move what fits, in order; wait again for the rest.
        while (held.size > 0) {
          const item = held.items[held.head];
          if (item === undefined || !item.resume()) break;
          held.head++;
        }
        if (held.size > 0) this.waitForRoom(client, session, held);
        else this.release(session);
      },
      (error: unknown) => this.failHeld(session, held, error instanceof Error ? error : new Error(String(error))),
    );
  }

  /** The broker stopped or the client went: no acknowledgement for what is held; the device sends it again. */
  private failHeld(session: Session, held: HeldPublishes, error: Error): void {
    const rest = held.items.slice(held.head);
    this.release(session);
    for (const item of rest) item.fail(error);
  }

  private release(session: Session): void {
    session.held = undefined;
    this.paused--;
  }
}

/** What a RouteAfterDisk needs of its PublishPath. */
interface Routing {
  route(client: Client, packet: PublishPacket, callback: PublishCallback): void;
  readonly waits: DiskWaits;
  readonly routedAhead: { inc(): void };
}

/**
 * One device message from the log to MQTT: routed once durable, or before
 * that when DiskWaits says it has waited too long; acknowledged once durable
 * and routed. One object and one bound function per message (closures for
 * each step kept more alive per message waiting for the disk).
 */
class RouteAfterDisk implements DiskWaiter {
  waiting = true;
  next: DiskWaiter | undefined = undefined;
  private durable = false;
  private routedAhead = false;
  private aheadResult: Error | null = null;

  constructor(
    private readonly routing: Routing,
    private readonly client: Client,
    private readonly packet: PublishPacket,
    public since: number,
    private readonly callback: PublishCallback,
  ) {}

  /** The log's acknowledgement: the message is durable. */
  readonly onDurable = (): void => {
    const stillWaiting = this.waiting;
    this.durable = true;
    this.waiting = false;
    this.routing.waits.durable(this);
    if (stillWaiting) this.routing.route(this.client, this.packet, this.callback);
    // Routed ahead: acknowledged once that route is done too.
    else if (this.routedAhead) this.callback(this.aheadResult);
  };

  routeAhead(slowDisk: boolean): void {
    this.waiting = false;
    if (slowDisk) this.routing.routedAhead.inc();
    this.routing.route(this.client, this.packet, (error) => {
      this.routedAhead = true;
      this.aheadResult = error ?? null;
      if (this.durable) this.callback(this.aheadResult);
    });
  }
}
