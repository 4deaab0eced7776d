import path from 'node:path';
import type { DeviceFirmwareState, EventOf, GroupInfo, ImageInfo, OtaPackage, OtaVersion } from '../events.js';
import { assertNever } from '../events.js';
import type { Logger } from '../logger.js';
import type { Presence } from '../presence/index.js';
import { parseVersionId } from '../protocol/index.js';
import { EventRunner, type RunnerContext } from '../runner.js';
import { FileBlobStore } from '../store/blob-file.js';
import type { BlobStore } from '../store/blob.js';
import { EveryNthPerKey, everyNth } from '../util/log-sampling.js';
import { WorkBehind } from '../util/work-behind.js';
import { DownloadBudgets, type BudgetDecision, type SharedByteBuckets } from './budget.js';
import { OtaCatalog, type AddImageResult, type DeleteResult, type LinkRequest, type LinkResult, type NewImage, type UnlinkRequest, type UnlinkResult } from './catalog.js';
import { OtaError, toErrorInfo } from './errors.js';
import { FirmwareStates } from './firmware-state.js';
import { otaMetrics, type OtaMetrics } from './metrics.js';

const ACCEPTS = [
  'OtaRequest',
  'OtaNewPackage',
  'OtaDeletePackage',
  'OtaLink',
  'OtaUnlink',
  'OtaImageListRequest',
  'OtaGroupListRequest',
  'TelemetryReceived',
  // Not for presence (that is context.presence): after a connect the device's next version report is checked against the store again.
  'DeviceConnected',
  // Byte budgets of running campaigns (src/ota/budget.ts).
  'OtaBudgetSet',
  'OtaBudgetCleared',
] as const;

type OtaEvent = EventOf<(typeof ACCEPTS)[number]>;

/** `major.minor.patch-commit-hash` with 9-digit numbers and an 8-character hash is at most 48 characters. */
const MAX_VERSION_LENGTH = 64;

export type DownloadPath = 'mqtt' | 'http';

export interface OtaRunnerOptions {
  /** Injectable for tests: dates written into images and device state. */
  clock?: () => Date;
  /** Replaces the embedded `<store.path>/firmware` file store (cluster mode: Redis). */
  blobs?: BlobStore;
  /** Cluster mode: campaign byte budgets shared by every instance (Redis). */
  budgetBuckets?: SharedByteBuckets;
}

/** Everything that exists only while the runner runs. */
interface Running {
  catalog: OtaCatalog;
  states: FirmwareStates;
  blobs: BlobStore;
  metrics: OtaMetrics;
  logger: Logger;
  /** Who is online (on any instance in cluster mode), for pushes to the online members of a group. */
  presence: Presence;
  maxChunk: number;
  publicUrl: string;
  budgets: DownloadBudgets;
  /** Chunk answers held back by a byte budget; cleared on stop (the devices ask again). */
  held: Set<NodeJS.Timeout>;
  /** Management commands being carried out off the inbox (see `offInbox`); waited for on stop. */
  commands: WorkBehind;
}

/**
 * Management commands carried out at once off the inbox; one more waits for
 * one of them to end (the inbox then holds the events behind it).
 */
const MAX_COMMANDS_IN_FLIGHT = 16;

/** Why a DownloadBytes request got no reply; the README lists them. */
type RejectReason = 'missing_id' | 'unknown_image' | 'missing_range' | 'empty_range' | 'beyond_image' | 'chunk_too_large' | 'read_failed' | 'over_budget';

/**
 * The OTA worker: images, groups and links, the device side of the Pyrinas OTA
 * protocol (Check, DownloadBytes, Done), and device firmware state.
 *
 * Management events are answered with `OtaCommandResult` or a list response
 * carrying the request's correlation id. The same operations are public methods
 * for library users (`addImage`, `link`, ...), which throw `OtaError`.
 */
export class OtaRunner extends EventRunner<(typeof ACCEPTS)[number]> {
  private running: Running | undefined;
  private readonly rejectLog = new EveryNthPerKey<RejectReason>(1000, 20);

  constructor(private readonly options: OtaRunnerOptions = {}) {
    super('ota', ACCEPTS);
  }

  protected override async onStart(context: RunnerContext): Promise<void> {
    const { config, logger } = context;
    const clock = this.options.clock ?? (() => new Date());
    const blobs =
      this.options.blobs ??
      new FileBlobStore(path.join(config.store.path, 'firmware'), {
        onCleanup: (removed) => {
          if (removed > 0) logger.warn({ removed }, 'removed temporary files of interrupted image uploads');
        },
        onError: (error, what) => logger.error({ err: error }, what),
      });
    await blobs.open();
    await this.options.budgetBuckets?.open();
    const states = new FirmwareStates({
      store: context.store,
      clock,
      onChange: (state) => this.announce(state),
      onBehindError: (error, uid) => logger.error({ err: error, uid }, 'saving OTA download progress or a Check failed'),
    });
    const catalog = new OtaCatalog({
      store: context.store,
      blobs,
      clock,
      runningVersion: (uid) => this.runningVersion(states, uid),
    });
    const logSharedFailure = everyNth(100);
    const swept = await catalog.sweepUnreferencedBlobs();
    if (swept > 0) logger.warn({ swept }, 'removed firmware bytes no image refers to (an upload was interrupted)');
    this.running = {
      catalog,
      states,
      blobs,
      metrics: otaMetrics(context.metrics),
      logger,
      presence: context.presence,
      maxChunk: config.ota.max_chunk_size,
      publicUrl: config.ota.http.public_url.replace(/\/+$/, ''),
      budgets: new DownloadBudgets({
        ...(this.options.budgetBuckets ? { shared: this.options.budgetBuckets } : {}),
        onSharedError: (error, campaignId) => {
          if (logSharedFailure()) logger.warn({ err: error, campaign: campaignId }, "the cluster's shared byte budget could not be asked; this instance holds the budget alone meanwhile (logged first, then every 100th)");
        },
      }),
      held: new Set(),
      commands: new WorkBehind(MAX_COMMANDS_IN_FLIGHT),
    };
  }

  protected override async onStop(): Promise<void> {
    const running = this.running;
    if (!running) return;
    // Commands under way finish first: their store writes and blob files are what stop must not cut.
    await running.commands.settled();
    this.running = undefined;
    for (const timer of running.held) clearTimeout(timer);
    running.held.clear();
    try {
      await running.states.flush();
    } finally {
      await running.blobs.close();
      await this.options.budgetBuckets?.close();
    }
  }

  /** Management commands being carried out off the inbox now. */
  get commandsInFlight(): number {
    return this.running?.commands.size ?? 0;
  }

  /** Resolves once no management command is being carried out off the inbox (tests: "everything sent was handled"). */
  async commandsSettled(): Promise<void> {
    await this.running?.commands.settled();
  }

  // ---- library API -------------------------------------------------------

  /** Stores an image (bytes are copied into the content-addressed store). */
  async addImage(request: NewImage): Promise<AddImageResult> {
    return this.require().catalog.addImage(request);
  }

  /** Deletes an image by id, or every image with `*`; groups pointing at it then point at none. */
  async deleteImage(id: string): Promise<DeleteResult> {
    const { catalog } = this.require();
    if (id !== '*' && !parseVersionId(id)) throw new OtaError('INVALID_ARGUMENT', `image id ${JSON.stringify(id)} is not major.minor.patch-commit-hash`);
    return catalog.deleteImages(id);
  }

  /** Links and pushes the package to the linked device and to online members of a relinked group. */
  async link(request: LinkRequest): Promise<LinkResult> {
    const running = this.require();
    const result = await running.catalog.link(request);
    const image = result.imageId === undefined ? undefined : await running.catalog.image(result.imageId);
    if (image) {
      for (const uid of result.affected) {
        // Offline members ask with Check when they connect; the linked device is told in any case.
        if (uid === result.deviceUid || running.presence.isOnline(uid)) await this.publish({ type: 'OtaResponse', uid, package: this.packageFor(image, uid) });
      }
    }
    return result;
  }

  async unlink(request: UnlinkRequest): Promise<UnlinkResult> {
    return this.require().catalog.unlink(request);
  }

  async images(): Promise<ImageInfo[]> {
    return this.require().catalog.images();
  }

  async image(id: string): Promise<ImageInfo | undefined> {
    return this.require().catalog.image(id);
  }

  async groups(): Promise<GroupInfo[]> {
    return this.require().catalog.groups();
  }

  async deviceState(uid: string): Promise<DeviceFirmwareState | undefined> {
    return this.require().states.get(uid);
  }

  /** For the HTTP download runner: the blob store the bytes live in. */
  blobStore(): BlobStore {
    return this.require().blobs;
  }

  /**
   * What the byte budget of the device's campaign says about serving it
   * `bytes` of `imageId` (the HTTP download runner asks here; MQTT chunks
   * internally). `wait` has counted the bytes already: serve them after it.
   */
  async budgetFor(uid: string | undefined, imageId: string, bytes: number, via: DownloadPath): Promise<BudgetDecision> {
    const running = this.require();
    const decision = await running.budgets.request(uid, imageId, bytes);
    if (decision.kind === 'over') running.metrics.budget.inc({ path: via, result: 'over' });
    else if (decision.kind === 'wait' && decision.ms > 0) running.metrics.budget.inc({ path: via, result: 'delayed' });
    return decision;
  }

  /**
   * Counts bytes served to a device (HTTP downloads report here; MQTT chunks
   * internally). The device's progress is saved behind the answer, never
   * before the next one: a download does not wait for the store.
   */
  recordServed(uid: string | undefined, image: ImageInfo, bytes: number, via: DownloadPath): void {
    // A response that ends after the runner stopped (its progress was flushed) has nowhere to be counted.
    const running = this.running;
    if (!running) return;
    running.metrics.bytesServed.inc({ path: via }, bytes);
    if (uid === undefined) return;
    // Never rejects: a failed save is logged once per batch (onBehindError).
    void running.states.served(uid, image, bytes);
  }

  // ---- events ------------------------------------------------------------

  protected handle(event: OtaEvent): void | Promise<void> {
    // Every telemetry message passes here; a repeat of the known version returns without a promise.
    if (event.type === 'TelemetryReceived') return this.onTelemetry(event);
    return this.handleOther(event);
  }

  private onTelemetry(event: EventOf<'TelemetryReceived'>): void | Promise<void> {
    const version = event.telemetry.version;
    // Version ids are short; anything longer is not one and is not worth a store write per device.
    if (version === undefined || version.length > MAX_VERSION_LENGTH) return;
    const { states } = this.require();
    if (states.isRepeatReport(event.uid, version)) return;
    return states.reported(event.uid, version).then(() => undefined);
  }

  private async handleOther(event: Exclude<OtaEvent, { type: 'TelemetryReceived' }>): Promise<void> {
    switch (event.type) {
      case 'OtaRequest':
        return this.onDeviceRequest(event);
      case 'DeviceConnected':
        this.running?.states.forgetReported(event.uid);
        return;
      case 'OtaBudgetSet':
        this.require().budgets.set(event.budget);
        return;
      case 'OtaBudgetCleared':
        this.require().budgets.clear(event.campaignId);
        return;
      case 'OtaNewPackage':
        return this.offInbox(() =>
          this.answer(event.type, event.correlationId, async () => {
            const request: NewImage = { id: event.id, imageType: event.imageType, source: event.source };
            if (event.description !== undefined) request.description = event.description;
            return this.addImage(request);
          }),
        );
      case 'OtaDeletePackage':
        return this.offInbox(() => this.answer(event.type, event.correlationId, () => this.deleteImage(event.id)));
      case 'OtaLink':
        return this.offInbox(() => this.answer(event.type, event.correlationId, () => this.link(pickDefined(event, ['deviceUid', 'group', 'imageId', 'force']))));
      case 'OtaUnlink':
        return this.offInbox(() => this.answer(event.type, event.correlationId, () => this.unlink(pickDefined(event, ['deviceUid', 'group']))));
      case 'OtaImageListRequest':
        return this.answerList(event.type, event.correlationId, async () => ({ type: 'OtaImageListResponse', correlationId: event.correlationId, images: await this.images() }));
      case 'OtaGroupListRequest':
        return this.answerList(event.type, event.correlationId, async () => ({ type: 'OtaGroupListResponse', correlationId: event.correlationId, groups: await this.groups() }));
      default:
        return assertNever(event);
    }
  }

  private async onDeviceRequest(event: EventOf<'OtaRequest'>): Promise<void> {
    const running = this.require();
    running.metrics.requests.inc({ cmd: event.cmd });
    // A request read back from the ingest log after a restart updates the device's state,
    // but gets no answer: the connection that asked is gone, and the device asks again.
    const replay = event.log?.replay === true;
    switch (event.cmd) {
      case 'Check': {
        const image = await running.catalog.assignedImage(event.uid);
        // An empty payload on <uid>/ota/s (package null) means "no update".
        if (!replay) await this.publish({ type: 'OtaResponse', uid: event.uid, package: image ? this.packageFor(image, event.uid) : null });
        // Saved behind the answer, and the next event does not wait for it (FirmwareStates.checked).
        void running.states.checked(event.uid, image?.id);
        return;
      }
      case 'Done': {
        const assigned = await running.catalog.assignedImage(event.uid);
        const previous = await running.states.get(event.uid);
        await running.states.done(event.uid, assigned?.id ?? previous?.downloadImageId);
        return;
      }
      case 'DownloadBytes':
        if (replay) return;
        return this.serveChunk(running, event);
      default:
        return assertNever(event.cmd);
    }
  }

  /** One `DownloadBytes`: reads only the requested range and answers on `<uid>/ota/s/d`. */
  private async serveChunk(running: Running, event: EventOf<'OtaRequest'>): Promise<void> {
    const { uid, id, startPos: start, endPos: end } = event;
    const details = { uid, id, start, end };
    if (id === undefined) return this.reject(running, 'missing_id', details);
    const image = await running.catalog.image(id);
    if (!image) return this.reject(running, 'unknown_image', details);
    if (start === undefined || end === undefined) return this.reject(running, 'missing_range', details);
    if (end <= start) return this.reject(running, 'empty_range', details);
    if (end > image.size) return this.reject(running, 'beyond_image', { ...details, size: image.size });
    if (end - start > running.maxChunk) return this.reject(running, 'chunk_too_large', { ...details, maxChunk: running.maxChunk });
    const budget = await this.budgetFor(uid, image.id, end - start, 'mqtt');
    // Over budget: no reply, as for any refused range; Pyrinas firmware asks again (README "Campaigns").
    if (budget.kind === 'over') return this.reject(running, 'over_budget', { ...details, campaign: budget.campaignId });
    if (budget.kind === 'wait' && budget.ms > 0) return this.holdChunk(running, budget.ms, event, image);
    return this.sendChunk(running, event, image);
  }

  /**
   * Answers the chunk after `ms`, off the inbox: one device's wait must not
   * hold up the OTA events of every other device. Bounded by the budget's
   * `maxDelayMs` (a longer wait is refused instead), so at most that many
   * milliseconds of the budget's bytes wait here.
   */
  private holdChunk(running: Running, ms: number, event: EventOf<'OtaRequest'>, image: ImageInfo): void {
    const timer = setTimeout(() => {
      running.held.delete(timer);
      if (this.running !== running) return;
      this.sendChunk(running, event, image).catch((error: unknown) => running.logger.error({ err: error, uid: event.uid, id: image.id }, 'answering a held OTA chunk failed'));
    }, Math.ceil(ms));
    running.held.add(timer);
  }

  private async sendChunk(running: Running, event: EventOf<'OtaRequest'>, image: ImageInfo): Promise<void> {
    const { uid, id, startPos: start = 0, endPos: end = 0 } = event;
    const details = { uid, id, start, end };
    let data: Buffer;
    try {
      data = await running.blobs.readRange(image.sha256, start, end);
    } catch (error) {
      running.logger.error({ err: error, ...details, sha256: image.sha256 }, 'reading firmware bytes failed');
      return this.reject(running, 'read_failed', details);
    }
    await this.publish({ type: 'OtaDownloadResponse', uid, chunk: { startPos: start, endPos: end, data, len: data.length } });
    this.recordServed(uid, image, data.length, 'mqtt');
  }

  /**
   * Pyrinas firmware cannot read an error on `<uid>/ota/s/d` (it would take it
   * for a chunk), so a refused range gets no reply: it is logged with its
   * reason and counted. After 20 per reason, only every 1000th is logged.
   */
  private reject(running: Running, reason: RejectReason, details: Record<string, unknown>): void {
    running.metrics.rejected.inc({ reason });
    const { count, log } = this.rejectLog.note(reason);
    if (log) running.logger.warn({ ...details, reason, count }, `OTA download request refused: ${describeReject(reason)}`);
  }

  /**
   * Carries out a management command without holding the inbox: storing a
   * 100 MB image or a link's synced writes must not hold up every device's
   * Check and chunk behind it. Commands still take effect in the order they
   * came, as each one queues its work on the catalog before this returns.
   * Answers are by correlation id, so their order does not matter.
   */
  private offInbox(command: () => Promise<void>): void | Promise<void> {
    const running = this.require();
    return running.commands.start(command, (error) => running.logger.error({ err: error }, 'an OTA command failed to answer'));
  }

  private async answer(command: string, correlationId: string, work: () => Promise<unknown>): Promise<void> {
    const metrics = this.require().metrics;
    try {
      const result = await work();
      metrics.commands.inc({ command, result: 'ok' });
      await this.publish({ type: 'OtaCommandResult', correlationId, result });
    } catch (error) {
      const info = toErrorInfo(error);
      metrics.commands.inc({ command, result: info.code });
      if (info.code === 'STORAGE_FAILED') this.require().logger.error({ err: error, command, correlationId }, 'OTA command failed');
      await this.publish({ type: 'OtaCommandResult', correlationId, error: info });
    }
  }

  private async answerList(
    command: string,
    correlationId: string,
    list: () => Promise<EventOf<'OtaImageListResponse'> | EventOf<'OtaGroupListResponse'>>,
  ): Promise<void> {
    let response: EventOf<'OtaImageListResponse'> | EventOf<'OtaGroupListResponse'>;
    try {
      response = await list();
    } catch (error) {
      // A list that cannot be read still gets an answer, so the caller does not wait for nothing.
      return this.answer(command, correlationId, () => Promise.reject(error instanceof Error ? error : new Error(String(error))));
    }
    this.require().metrics.commands.inc({ command, result: 'ok' });
    await this.publish(response);
  }

  private packageFor(image: ImageInfo, uid: string): OtaPackage {
    const pkg: OtaPackage = { id: image.id, version: image.version, size: image.size, dateAdded: image.dateAdded };
    const base = this.require().publicUrl;
    if (base !== '') pkg.url = `${base}/images/${encodeURIComponent(image.id)}?uid=${encodeURIComponent(uid)}`;
    return pkg;
  }

  /** State changes are notices: never wait for the admin runner (it may be waiting on us). */
  private announce(state: DeviceFirmwareState): void {
    const context = this.context;
    if (context) context.broker.emit({ type: 'DeviceFirmwareUpdated', state });
  }

  private async runningVersion(states: FirmwareStates, uid: string): Promise<OtaVersion | undefined> {
    const state = await states.get(uid);
    if (!state) return undefined;
    return (state.reportedVersion !== undefined ? parseVersionId(state.reportedVersion) : undefined) ?? (state.doneImageId !== undefined ? parseVersionId(state.doneImageId) : undefined);
  }

  private require(): Running {
    if (!this.running) throw new Error('the ota runner is not started');
    return this.running;
  }
}

function describeReject(reason: RejectReason): string {
  switch (reason) {
    case 'missing_id':
      return 'no image id';
    case 'unknown_image':
      return 'no such image';
    case 'missing_range':
      return 'start_pos or end_pos missing';
    case 'empty_range':
      return 'end_pos is not after start_pos';
    case 'beyond_image':
      return 'range reaches beyond the end of the image';
    case 'chunk_too_large':
      return 'range is larger than ota.max_chunk_size';
    case 'read_failed':
      return 'the bytes could not be read';
    case 'over_budget':
      return "the campaign's byte budget is spent for longer than its maxDelayMs";
    default:
      return assertNever(reason);
  }
}

/** Copies the named fields that are present (events may carry explicit undefined). */
function pickDefined<T extends object, K extends keyof T>(source: T, keys: readonly K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const key of keys) if (source[key] !== undefined) out[key] = source[key];
  return out;
}
