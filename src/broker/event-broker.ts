import { performance } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { DEVICE_EVENT_TYPES, EVENT_TYPES, type DeviceEvent, type Event, type EventOf, type EventType, type RunnerInbox } from '../events.js';
import { BrokerOverloadedError, BrokerStoppedError, DuplicateRunnerError } from '../errors.js';
import { deviceEvent, type Acknowledge, type DeviceMessage, type DeviceMessageKind, type IngestLog, type IngestStats } from '../ingest/index.js';
import type { Logger } from '../logger.js';
import type { TelemetryFields } from '../protocol/index.js';
import { shouldLog } from '../util/log-sampling.js';
import { WaitList } from '../util/wait-list.js';
import { DurableCursor, MAX_WAITING_IN_MEMORY } from './durable-cursor.js';
import { BoundedQueue } from './inbox.js';

export interface EventBrokerOptions {
  /** Default inbox capacity per runner (events). */
  inboxSize: number;
  /** Producers that may wait for room in one runner's inbox before `publish` rejects. */
  maxWaiters: number;
  /** Events handled back to back before the broker looks at the clock (default 256). */
  batchSize?: number;
  /** How long one runner may go on, batch after batch, while events wait for it, before it lets the loop turn (default TURN_BUDGET_MS). */
  turnBudgetMs?: number;
  logger: Logger;
  metrics: Registry;
  /**
   * The durable ingest log (`[ingest] durability` "fsync" or "write"); opened
   * before the broker starts. Without it ("memory"), device events go straight
   * into the inboxes and a full inbox holds devices back.
   */
  log?: IngestLog;
  /** Extra telemetry fields (`[[telemetry.fields]]`), for decoding replayed telemetry as it was decoded live. */
  telemetryFields?: TelemetryFields;
}

export interface RunnerStats {
  name: string;
  accepts: EventType[];
  capacity: number;
  depth: number;
  waiting: number;
  delivered: number;
  dropped: number;
  errors: number;
  /** For a durable runner: its committed position in the ingest log, events behind the head, and whether it is fed from disk now. */
  ingest?: { committed: number; lagEvents: number; lagging: boolean; replayed: number };
}

interface Waiter {
  event: Event;
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * One event in this many has its handling time observed: timing every event
 * cost more than the handler of a small one, and prom-client's observe takes
 * about 0.65 µs here. In profiles of bench scenario 8 (each telemetry point
 * reaches three runners) prom-client was 2.2-2.8 % of the broker's busy time
 * at one in 16, 1.1 % at one in 64.
 */
export const LATENCY_SAMPLE_EVERY = 64;
/** How long one runner may go on handling waiting events, batch after batch, before it lets the loop turn. */
export const TURN_BUDGET_MS = 2;

class RunnerSlot {
  readonly queue: BoundedQueue;
  readonly waiters: Waiter[] = [];
  /** Producers waiting (once each, for all they hold) until the inbox has room again. */
  readonly roomWaiters = new WaitList();
  /** Free places that wake room waiters together, so each wake-up has room for a batch, not one event. */
  readonly wakeAtFree: number;
  running = false;
  removed = false;
  /** Set for a runner that consumes device events from the ingest log with a durable cursor. */
  cursor: DurableCursor | undefined;
  delivered = 0;
  dropped = 0;
  errors = 0;
  /** Drains waiting for this runner to be idle. */
  readonly idle = new WaitList();

  constructor(
    readonly name: string,
    readonly accepts: ReadonlySet<EventType>,
    readonly inbox: RunnerInbox,
    capacity: number,
    readonly latency: Histogram.Internal<'runner'>,
  ) {
    this.queue = new BoundedQueue(capacity);
    this.wakeAtFree = Math.max(1, Math.floor(capacity / 4));
  }

  get busy(): boolean {
    return this.running || this.queue.length > 0 || this.waiters.length > 0;
  }
}

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * How far a durable runner may fall behind the head of the ingest log before
 * devices are held back (no PUBACK, sockets paused) until it is back under.
 * Without it the log absorbed a flood at full speed while the lagging runner,
 * reading from disk on the same event loop, got almost no turn: in bench
 * scenario 6 the app received 0.03 of scenario 2's rate. The log still
 * absorbs bursts and keeps what was acknowledged; it just does not let
 * ingest outrun the runners without bound.
 */
const MAX_LAG_EVENTS = MAX_WAITING_IN_MEMORY;

const DEVICE_TYPES: ReadonlySet<EventType> = new Set<EventType>(DEVICE_EVENT_TYPES);
const EVENT_OF_KIND: Record<DeviceMessageKind, DeviceEvent['type']> = { app: 'ApplicationRequest', tel: 'TelemetryReceived', ota: 'OtaRequest' };

/**
 * Fans each event out to every registered runner that accepts its type.
 *
 * Inbox policy (README "Event broker"):
 * - Every runner has a bounded inbox, handled strictly in order, one event at a time.
 * - `publish()` is the back-pressure path (device data): when an inbox is full the
 *   returned promise waits for room, so the MQTT runner holds its PUBACK and the
 *   device slows down. At most `maxWaiters` producers wait per runner; beyond that
 *   `publish()` rejects with BrokerOverloadedError and the producer must refuse the data.
 * - `whenRoom(type)` lets a producer that holds several events (the MQTT
 *   gateway, for a paused device) wait once instead of once per event; waiters
 *   are woken together when a quarter of the inbox is free again.
 * - `emit()` never waits (for producers that cannot, such as timers): when an inbox
 *   is full the event is dropped for that runner, counted and logged.
 * - A handler that throws is logged with runner and event type, counted, and the
 *   runner goes on with the next event.
 * - Events no runner accepts are counted per type and logged once per type.
 */
export class EventBroker {
  private readonly slots = new Map<string, RunnerSlot>();
  private readonly routes = new Map<EventType, RunnerSlot[]>();
  private readonly unroutedSeen = new Set<EventType>();
  /** Per type, the runners that handle it (its `accepts`, not its `observes`). */
  private readonly handlers = new Map<EventType, Set<string>>();
  /** Producers held back because a durable runner is MAX_LAG_EVENTS behind; woken as runners catch up. */
  private readonly lagRoom = new WaitList();
  private readonly retiredCursors = new Map<string, DurableCursor>();
  private readonly batchSize: number;
  private readonly turnBudgetMs: number;
  private stopped = false;
  /** Idle runners that may still start in a microtask this loop turn (see `schedule`). */
  private microtaskStarts: number;
  private refillArmed = false;

  /** Delivered counts of runners that have left, so the exported counter never goes down. */
  private readonly retiredDelivered = new Map<string, number>();
  private readonly droppedTotal: Counter<'runner' | 'reason'>;
  private readonly errorsTotal: Counter<'runner' | 'event'>;
  private readonly unroutedTotal: Counter<'event'>;
  private readonly latency: Histogram<'runner'>;

  constructor(private readonly options: EventBrokerOptions) {
    this.batchSize = options.batchSize ?? 256;
    this.turnBudgetMs = options.turnBudgetMs ?? TURN_BUDGET_MS;
    if (options.log) {
      // Producers held back for lag look again (events still being written count as lag).
      options.log.onDurable = () => {
        if (this.lagRoom.size > 0) this.lagRoom.wakeAll();
      };
      options.log.setCursorSource({ committed: () => this.durableCursors(), retired: () => this.retiredDurableCursors() });
    }
    this.microtaskStarts = this.batchSize;
    const registers = [options.metrics];
    const slots = this.slots;
    const retired = this.retiredDelivered;
    // Counted as plain numbers on the hot path and read at scrape time.
    new Counter({
      name: 'nucleon_broker_delivered_total',
      help: 'Events handled, per runner',
      labelNames: ['runner'],
      registers,
      collect() {
        this.reset();
        const totals = new Map(retired);
        for (const slot of slots.values()) totals.set(slot.name, (totals.get(slot.name) ?? 0) + slot.delivered);
        for (const [runner, value] of totals) this.inc({ runner }, value);
      },
    });
    this.droppedTotal = new Counter({ name: 'nucleon_broker_dropped_total', help: 'Events dropped, per runner and reason', labelNames: ['runner', 'reason'], registers });
    this.errorsTotal = new Counter({ name: 'nucleon_broker_handler_errors_total', help: 'Handler failures, per runner and event type', labelNames: ['runner', 'event'], registers });
    this.unroutedTotal = new Counter({ name: 'nucleon_broker_unrouted_total', help: 'Events no runner accepts, per type', labelNames: ['event'], registers });
    this.latency = new Histogram({
      name: 'nucleon_broker_handle_seconds',
      help: `Time spent handling one event, per runner (one event in ${LATENCY_SAMPLE_EVERY} is timed)`,
      labelNames: ['runner'],
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers,
    });
    new Gauge({
      name: 'nucleon_broker_inbox_depth',
      help: 'Events waiting in each runner inbox',
      labelNames: ['runner'],
      registers,
      collect() {
        for (const slot of slots.values()) this.set({ runner: slot.name }, slot.queue.length);
      },
    });
  }

  /** Registers a runner; throws DuplicateRunnerError for a name already taken. */
  register(event: EventOf<'NewRunner'>): void {
    if (this.stopped) throw new BrokerStoppedError();
    if (this.slots.has(event.name)) throw new DuplicateRunnerError(event.name);
    const known = new Set<string>(EVENT_TYPES);
    const observes = event.observes ?? [];
    const unknown = [...event.accepts, ...observes].filter((type) => !known.has(type) || type === 'NewRunner');
    if (unknown.length > 0) throw new TypeError(`runner "${event.name}" accepts unknown event types: ${unknown.join(', ')}`);
    const capacity = event.inbox.capacity ?? this.options.inboxSize;
    const slot = new RunnerSlot(event.name, new Set([...event.accepts, ...observes]), event.inbox, capacity, this.latency.labels(event.name));
    this.slots.set(event.name, slot);
    const log = this.options.log;
    if (log && event.inbox.durable && event.accepts.some((type) => DEVICE_TYPES.has(type))) {
      const cursor = new DurableCursor(event.inbox.durable, () => log.appendedSeq, (from, to) => log.distance(from, to));
      slot.cursor = cursor;
      // A runner seen before resumes after its committed position; a new one starts at the head.
      const saved = log.savedCursor(event.name);
      if (saved !== undefined && saved < log.appendedSeq) {
        cursor.reader = log.reader(saved + 1);
        this.options.logger.info({ runner: event.name, from: saved + 1, headSeq: log.headSeq }, 'runner catches up from its cursor in the ingest log');
        void this.catchUp(slot, cursor);
      }
    }
    for (const type of slot.accepts) {
      const list = this.routes.get(type) ?? [];
      list.push(slot);
      this.routes.set(type, list);
    }
    for (const type of event.accepts) {
      const names = this.handlers.get(type) ?? new Set<string>();
      names.add(event.name);
      this.handlers.set(type, names);
      this.unroutedSeen.delete(type);
    }
    this.options.logger.info({ runner: event.name, accepts: event.accepts, inbox: capacity }, 'runner registered');
  }

  /** Removes a runner. Events still queued for it are dropped and counted. */
  unregister(name: string): void {
    const slot = this.slots.get(name);
    if (!slot) return;
    this.slots.delete(name);
    slot.removed = true;
    // A runner still commits while it stops (the Influx writer's last flush): its cursor stays readable until it is saved.
    if (slot.cursor) this.retiredCursors.set(name, slot.cursor);
    this.retiredDelivered.set(name, (this.retiredDelivered.get(name) ?? 0) + slot.delivered);
    for (const [type, list] of this.routes) {
      const rest = list.filter((s) => s !== slot);
      if (rest.length === 0) this.routes.delete(type);
      else this.routes.set(type, rest);
    }
    for (const [type, names] of this.handlers) {
      names.delete(name);
      if (names.size === 0) this.handlers.delete(type);
    }
    const lost = slot.queue.clear() + slot.waiters.length;
    for (const waiter of slot.waiters.splice(0)) waiter.reject(new BrokerStoppedError());
    if (lost > 0) {
      slot.dropped += lost;
      this.droppedTotal.inc({ runner: name, reason: 'runner_stopped' }, lost);
      this.options.logger.warn({ runner: name, lost }, 'runner left with events still queued; they were dropped');
    }
    // The runner is gone: room waiters look again and find its route gone.
    slot.roomWaiters.wakeAll();
    slot.idle.wakeAll();
    this.lagRoom.wakeAll();
    this.options.logger.info({ runner: name }, 'runner unregistered');
  }

  /**
   * Delivers an event to every runner that accepts it, waiting for inbox room
   * (back-pressure). `NewRunner` registers instead.
   */
  publish(event: Event): Promise<void> {
    if (event.type === 'NewRunner') {
      try {
        this.register(event);
        return RESOLVED;
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
    }
    if (this.stopped) return Promise.reject(new BrokerStoppedError());
    const targets = this.targetsOf(event);
    if (!targets) return RESOLVED;
    let pending: Promise<void>[] | undefined;
    for (const slot of targets) {
      if (slot.waiters.length === 0 && slot.queue.push(event)) {
        this.schedule(slot);
        continue;
      }
      if (slot.waiters.length >= this.options.maxWaiters) {
        this.countDrop(slot, event, 'overloaded');
        (pending ??= []).push(Promise.reject(new BrokerOverloadedError(slot.name)));
        continue;
      }
      (pending ??= []).push(new Promise<void>((resolve, reject) => slot.waiters.push({ event, resolve, reject })));
    }
    if (!pending) return RESOLVED;
    return Promise.all(pending).then(() => undefined);
  }

  /**
   * Delivers without waiting. Returns false when some runner's inbox was full;
   * the event was then dropped for that runner, counted and logged.
   */
  emit(event: Event): boolean {
    if (event.type === 'NewRunner') {
      this.register(event);
      return true;
    }
    if (this.stopped) {
      this.options.logger.warn({ event: event.type }, 'event emitted after the broker stopped; dropped');
      this.droppedTotal.inc({ runner: '*', reason: 'broker_stopped' });
      return false;
    }
    const targets = this.targetsOf(event);
    if (!targets) return true;
    let all = true;
    for (const slot of targets) {
      if (slot.waiters.length === 0 && slot.queue.push(event)) {
        this.schedule(slot);
      } else {
        this.countDrop(slot, event, 'inbox_full');
        all = false;
      }
    }
    return all;
  }

  /**
   * Queues the event for every runner that accepts it if all of them have room
   * now (true), or does nothing (false): `hasRoomFor` + `emit` in one pass, for
   * the device ingest path, which then waits with `whenRoom`.
   */
  offer(event: Event): boolean {
    if (event.type === 'NewRunner') {
      this.register(event);
      return true;
    }
    if (this.stopped) return false;
    const targets = this.targetsOf(event);
    if (!targets) return true;
    for (const slot of targets) if (slot.waiters.length > 0 || slot.queue.full) return false;
    for (const slot of targets) {
      slot.queue.push(event);
      this.schedule(slot);
    }
    return true;
  }

  /**
   * The device data path (README "Durable ingest"): hands a decoded device
   * event, with the message it came from, to the ingest log and returns true;
   * the event goes to every runner that accepts it at once (durable runners
   * through their cursors), and `ack` runs once it is durable. Returns false,
   * doing nothing, when there is no room (the log is full or failing; without
   * a log, an inbox is full): the producer holds the device back and waits
   * with `whenIngestRoom`.
   */
  ingest(event: DeviceEvent, message: DeviceMessage, ack: Acknowledge | undefined): boolean {
    const log = this.options.log;
    if (!log) {
      if (!this.offer(event)) return false;
      ack?.();
      return true;
    }
    if (this.stopped || !log.hasRoom || this.lagFull(event.type)) return false;
    log.append(event, message, ack);
    this.deliverAppended(event, log);
    return true;
  }

  /** Whether device messages go through an ingest log: then `ingest`'s `ack` never runs before `ingest` returns. */
  get hasIngestLog(): boolean {
    return this.options.log !== undefined;
  }

  /** Device messages in the ingest log that are not durable yet (0 without a log). */
  get ingestWaitingForDisk(): number {
    const log = this.options.log;
    return log ? log.appendedSeq - log.headSeq : 0;
  }

  /** A durable runner that takes this type is MAX_LAG_EVENTS or more behind the head of the log. */
  private lagFull(type: DeviceEvent['type']): boolean {
    const targets = this.routes.get(type);
    if (!targets) return false;
    const appended = this.options.log?.appendedSeq ?? 0;
    for (const slot of targets) if (slot.cursor && slot.cursor.behind(appended) >= MAX_LAG_EVENTS) return true;
    return false;
  }

  /** Resolves when `ingest` may have room again for `type` (the caller tries again). */
  whenIngestRoom(type: DeviceEvent['type'], signal?: AbortSignal): Promise<void> {
    const log = this.options.log;
    if (!log) return this.whenRoom(type, signal);
    if (this.stopped) return Promise.reject(new BrokerStoppedError());
    if (!log.hasRoom) return log.whenRoom(signal);
    if (this.lagFull(type)) return this.lagRoom.wait(signal);
    return Promise.resolve();
  }

  /** A `manual` durable runner is done with every device event up to `seq` (its `event.log.seq`). */
  commit(runner: string, seq: number): void {
    (this.slots.get(runner)?.cursor ?? this.retiredCursors.get(runner))?.commit(seq);
  }

  /** The ingest log's state and every durable runner's place in it; undefined in "memory" durability. */
  ingestStats(): IngestStats | undefined {
    return this.options.log?.stats();
  }

  /** Committed positions of the registered durable runners (the ingest log saves them). */
  durableCursors(): Map<string, number> {
    const cursors = new Map<string, number>();
    for (const slot of this.slots.values()) if (slot.cursor) cursors.set(slot.name, slot.cursor.committed());
    return cursors;
  }

  /** Committed positions of durable runners that have unregistered (saved, but not holding the log back). */
  retiredDurableCursors(): Map<string, number> {
    const cursors = new Map<string, number>();
    for (const [name, cursor] of this.retiredCursors) if (!this.slots.has(name)) cursors.set(name, cursor.committed());
    return cursors;
  }

  /**
   * Hands an event just appended to the ingest log out, before it is
   * durable: runners do not wait for the disk (only the device's PUBACK
   * does). A durable runner with room takes it live. One without starts
   * lagging: its events wait in memory, in order (up to
   * MAX_WAITING_IN_MEMORY), and past that it is fed from disk (catchUp)
   * until it is level again. So a burst costs no disk read, and a runner far
   * behind costs no memory. A runner without a cursor gets it if it has room
   * (counted as dropped if not).
   */
  private deliverAppended(event: DeviceEvent, log: IngestLog): void {
    const targets = this.targetsOf(event);
    if (!targets) return;
    for (const slot of targets) {
      const cursor = slot.cursor;
      if (!cursor) {
        if (slot.waiters.length === 0 && slot.queue.push(event)) this.schedule(slot);
        else this.countDrop(slot, event, 'inbox_full');
        continue;
      }
      // Read from disk from here on: the reader covers this event too.
      if (cursor.reader) continue;
      if (cursor.waiting === 0 && slot.queue.push(event)) {
        cursor.delivered(event.log?.seq ?? 0);
        this.schedule(slot);
        continue;
      }
      if (cursor.waiting < MAX_WAITING_IN_MEMORY) cursor.pending.push(event);
      else cursor.reader = log.reader(event.log?.seq ?? 0);
      // Called for every event while the runner lags: a loop already running takes it (no promise per event).
      if (!cursor.catchingUp) void this.catchUp(slot, cursor);
    }
  }

  /**
   * Feeds a lagging durable runner as its inbox makes room: first the events
   * waiting in memory, then (when it fell further behind) the log on disk,
   * until it has caught up; then it is live again. One loop per runner; it
   * ends when the runner leaves or the broker stops.
   */
  private async catchUp(slot: RunnerSlot, cursor: DurableCursor): Promise<void> {
    const log = this.options.log;
    if (!log || cursor.catchingUp) return;
    cursor.catchingUp = true;
    try {
      while (!slot.removed && !this.stopped && cursor.lagging) {
        if (cursor.behind(log.appendedSeq) < MAX_LAG_EVENTS) this.lagRoom.wakeAll();
        for (;;) {
          const event = cursor.pending.peek();
          if (event === undefined || !slot.queue.push(event)) break;
          cursor.pending.shift();
          cursor.delivered(event.log?.seq ?? 0);
          if (event.log?.replay) cursor.replayed++;
          this.schedule(slot);
        }
        if (cursor.waiting > 0) {
          await slot.roomWaiters.wait();
          continue;
        }
        const reader = cursor.reader;
        // Nothing waits in memory and nothing is to be read: live again.
        if (!reader) return;
        // One read (at most 256 KB, a few thousand records) into an empty list always fits its 65,536 places.
        const records = await reader.next();
        if (slot.removed || this.stopped) return;
        if (records.length === 0) {
          // Caught up with everything appended: from here on the runner takes events live.
          if (reader.nextSeq > log.appendedSeq) {
            cursor.reader = undefined;
            return;
          }
          // What is left is still being written (the reader reads only what is durable).
          if (reader.nextSeq > log.headSeq) await log.whenDurable();
          else await new Promise((resolve) => setImmediate(resolve));
          continue;
        }
        for (const record of records) {
          if (!slot.accepts.has(EVENT_OF_KIND[record.kind])) continue;
          const decoded = deviceEvent(record, this.options.telemetryFields);
          if (!decoded.ok) {
            // Decoded once already before it was appended: only a change of the decoder can get here.
            this.countDrop(slot, { type: EVENT_OF_KIND[record.kind] } as Event, 'undecodable_replay');
            continue;
          }
          decoded.event.log = log.position(record.seq);
          cursor.pending.push(decoded.event);
        }
      }
    } catch (error) {
      if (error instanceof BrokerStoppedError || slot.removed || this.stopped) return;
      this.options.logger.error({ err: error, runner: slot.name }, 'reading the ingest log for a runner failed; retrying in a second');
      setTimeout(() => void this.catchUp(slot, cursor), 1000).unref();
    } finally {
      cursor.catchingUp = false;
      this.lagRoom.wakeAll();
    }
  }

  /**
   * True when every runner that accepts this type has room now, so a
   * `publish()` would not wait. Lets hot paths skip a promise.
   */
  hasRoomFor(type: EventType): boolean {
    const targets = this.routes.get(type);
    if (!targets) return true;
    for (const slot of targets) if (slot.waiters.length > 0 || slot.queue.full) return false;
    return true;
  }

  /**
   * Resolves when some room may have come for `type` (the caller checks
   * `hasRoomFor` again and waits again if another producer was quicker);
   * rejects with BrokerStoppedError when the broker stops. One wait per
   * producer, however many events it holds: the number of waiters is bounded
   * by the number of producers (for MQTT, connected clients), not by events.
   * `signal` takes a producer that went away (a closed connection) off the
   * list at once, so a runner that never makes room cannot collect them.
   */
  whenRoom(type: EventType, signal?: AbortSignal): Promise<void> {
    if (this.stopped) return Promise.reject(new BrokerStoppedError());
    const targets = this.routes.get(type);
    if (targets) {
      for (const slot of targets) {
        if (slot.waiters.length > 0 || slot.queue.full) return slot.roomWaiters.wait(signal);
      }
    }
    return RESOLVED;
  }

  /** Whether some runner handles this type (observers do not count). */
  accepts(type: EventType): boolean {
    return this.handlers.has(type);
  }

  /** Resolves once every inbox is empty and idle (new events may keep it busy), or false on timeout. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const busy = [...this.slots.values()].filter((slot) => slot.busy);
      if (busy.length === 0) return true;
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        this.options.logger.warn({ runners: busy.map((s) => ({ name: s.name, depth: s.queue.length })) }, 'drain timed out');
        return false;
      }
      let timer: NodeJS.Timeout | undefined;
      // Not unref'd: whoever awaits the drain needs the timeout to fire even when
      // a hung handler holds nothing else open.
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, remaining);
      });
      await Promise.race([Promise.all(busy.map((slot) => slot.idle.wait())), timeout]);
      clearTimeout(timer);
    }
  }

  start(): void {
    this.stopped = false;
  }

  /** Drains in-flight events (bounded by `timeoutMs`), then refuses new ones. */
  async stop(timeoutMs: number): Promise<boolean> {
    const drained = await this.drain(timeoutMs);
    this.stopped = true;
    for (const slot of this.slots.values()) {
      for (const waiter of slot.waiters.splice(0)) waiter.reject(new BrokerStoppedError());
      slot.roomWaiters.failAll(() => new BrokerStoppedError());
    }
    this.lagRoom.failAll(() => new BrokerStoppedError());
    return drained;
  }

  stats(): RunnerStats[] {
    return [...this.slots.values()].map((slot) => ({
      name: slot.name,
      accepts: [...slot.accepts],
      capacity: slot.queue.capacity,
      depth: slot.queue.length,
      waiting: slot.waiters.length,
      delivered: slot.delivered,
      dropped: slot.dropped,
      errors: slot.errors,
      ...(slot.cursor
        ? { ingest: { committed: slot.cursor.committed(), lagEvents: this.options.log?.distance(slot.cursor.committed(), this.options.log.headSeq) ?? 0, lagging: slot.cursor.lagging, replayed: slot.cursor.replayed } }
        : {}),
    }));
  }

  runnerNames(): string[] {
    return [...this.slots.keys()];
  }

  private targetsOf(event: Event): RunnerSlot[] | undefined {
    const targets = this.routes.get(event.type);
    if (this.handlers.has(event.type)) return targets;
    this.unroutedTotal.inc({ event: event.type });
    if (!this.unroutedSeen.has(event.type)) {
      this.unroutedSeen.add(event.type);
      this.options.logger.warn({ event: event.type }, 'no runner accepts this event type; counting further ones silently');
    }
    // Observers still see it.
    return targets;
  }

  private countDrop(slot: RunnerSlot, event: Event, reason: string): void {
    slot.dropped++;
    this.droppedTotal.inc({ runner: slot.name, reason });
    // Log the first drop and then every 1000th, so a flood cannot flood the log too.
    if (shouldLog(slot.dropped, 1000)) {
      this.options.logger.warn({ runner: slot.name, event: event.type, reason, droppedSoFar: slot.dropped }, 'event dropped');
    }
  }

  private schedule(slot: RunnerSlot): void {
    if (slot.running) return;
    slot.running = true;
    // Never run a handler on the producer's stack: a runner that emits back to
    // the producer would otherwise recurse without bound. An idle runner starts
    // in a microtask (right after the producer's I/O callback, not after every
    // other socket read of this loop turn: in bench scenario 4 that wait was
    // p50 0.1 ms, p90 up to 1.8 ms); at most `batchSize` such starts per turn,
    // so runners that keep waking each other still let I/O run.
    if (this.microtaskStarts > 0) {
      this.microtaskStarts--;
      if (!this.refillArmed) {
        this.refillArmed = true;
        setImmediate(this.refillMicrotaskStarts);
      }
      queueMicrotask(() => void this.run(slot));
      return;
    }
    setImmediate(() => void this.run(slot));
  }

  private readonly refillMicrotaskStarts = (): void => {
    this.refillArmed = false;
    this.microtaskStarts = this.batchSize;
  };

  private async run(slot: RunnerSlot): Promise<void> {
    let handled = 0;
    let turnStarted = Number.NaN;
    for (;;) {
      const event = slot.queue.shift();
      if (event === undefined) break;
      if (slot.waiters.length > 0) this.admitWaiter(slot);
      else if (slot.roomWaiters.size > 0 && slot.queue.capacity - slot.queue.length >= slot.wakeAtFree) this.wakeRoomWaiters(slot);
      const timed = slot.delivered % LATENCY_SAMPLE_EVERY === 0;
      const started = timed ? performance.now() : 0;
      try {
        const result = slot.inbox.handle(event);
        if (result !== undefined) await result;
      } catch (error) {
        slot.errors++;
        this.errorsTotal.inc({ runner: slot.name, event: event.type });
        this.options.logger.error({ err: error, runner: slot.name, event: event.type }, 'runner failed to handle an event; it keeps running');
      }
      if (timed) slot.latency.observe((performance.now() - started) / 1000);
      slot.delivered++;
      // A handler that threw is done with the event too: it was logged and counted, and replaying it would only fail again.
      if (slot.cursor?.mode === 'handled') {
        const seq = (event as { log?: { seq: number } }).log?.seq;
        if (seq !== undefined) slot.cursor.commit(seq);
      }
      if (slot.removed) return;
      if (++handled >= this.batchSize) {
        handled = 0;
        // A runner with more waiting goes on for up to turnBudgetMs after its
        // first batch, batch by batch: a fast runner fed by many devices at once otherwise fell
        // behind at one batch a turn, into back-pressure and reads from the log
        // that cost more than the events (bench scenario 10, QoS 0).
        if (Number.isNaN(turnStarted)) turnStarted = performance.now();
        if (slot.queue.length > 0 && performance.now() - turnStarted < this.turnBudgetMs) continue;
        // Let sockets and timers run between batches; continue on the next turn.
        setImmediate(() => void this.run(slot));
        return;
      }
    }
    slot.running = false;
    // An inbox with fewer places than the wake-up threshold empties before reaching it.
    if (slot.roomWaiters.size > 0) this.wakeRoomWaiters(slot);
    if (!slot.busy) slot.idle.wakeAll();
  }

  /** Wakes every room waiter; each moves what fits and waits again for the rest. */
  private wakeRoomWaiters(slot: RunnerSlot): void {
    slot.roomWaiters.wakeAll();
  }

  private admitWaiter(slot: RunnerSlot): void {
    const waiter = slot.waiters[0];
    if (waiter && slot.queue.push(waiter.event)) {
      slot.waiters.shift();
      waiter.resolve();
    }
  }
}
