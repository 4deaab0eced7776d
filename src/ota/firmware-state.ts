import type { DeviceFirmwareState } from '../events.js';
import { MAX_VERSION_LENGTH } from '../protocol/index.js';
import type { KvStore } from '../store/index.js';
import { SerialQueue } from '../util/serial-queue.js';
import { rfc3339 } from './catalog.js';

const STATE = 'ota/state/';

export interface FirmwareStatesOptions {
  store: KvStore;
  clock: () => Date;
  /** Told about every saved change (the runner turns it into DeviceFirmwareUpdated). */
  onChange: (state: DeviceFirmwareState) => void;
  /**
   * A batch saved behind the answers (progress, Checks) failed: told once per
   * batch, however many calls joined it (their promises resolve to undefined).
   */
  onBehindError: (error: unknown, uid: string) => void;
  /** Download progress is saved and announced each time it crosses another step of this many percent. */
  progressStepPercent?: number;
  /** Devices whose unsaved download progress is held in memory; beyond this the oldest is saved and dropped. */
  maxTracked?: number;
  /** Devices whose last reported version is remembered, so a repeat costs no store read (least recently reported dropped first). */
  maxRememberedVersions?: number;
}

/** Step numbers of the bytes served beyond the whole image start here, above any step within it. */
const BEYOND_WHOLE_IMAGE = 1_000_000;

interface Download {
  state: DeviceFirmwareState;
  /** The progress step last saved. */
  savedStep: number;
  dirty: boolean;
}

export interface ServedImage {
  id: string;
  size: number;
}

/**
 * What the download paths and Checks of one device left to be counted and
 * saved, waiting in the queue: callers there do not wait for the store.
 */
interface Behind {
  served?: { image: ServedImage; bytes: number };
  check?: { at: string; assignedImageId: string | undefined };
  settled: Promise<DeviceFirmwareState | undefined>;
}

/**
 * Each device's firmware state (`ota/state/<uid>`): the version it reports,
 * its last Check, bytes served of the image it downloads (by either path) and
 * its last Done.
 *
 * A chunk every few milliseconds must not cost a synced store write and an
 * admin event each, so download progress is counted in memory and saved when
 * it crosses another `progressStepPercent` of the image, when the whole image
 * has been served, when more is served after that, with any other change of
 * the device, and on `flush()`. Progress and Checks are saved behind the
 * answers (`served`, `checked`); reports and Dones are saved before their
 * event counts as handled.
 */
export class FirmwareStates {
  private readonly queue = new SerialQueue();
  private readonly downloads = new Map<string, Download>();
  /** uid → its bytes served and Check not yet counted (at most one batch per device). */
  private readonly behind = new Map<string, Behind>();
  private readonly step: number;
  private readonly maxTracked: number;
  /**
   * uid → the version of the newest `reported()` call. Set when the call is
   * queued (not when it is saved), so a later report of an older version is
   * never mistaken for a repeat of a saved one. Evicted in CLOCK order (second
   * chance): a repeat only sets `again`, because moving the entry to the end
   * of the Map (delete + set) on every telemetry message made V8 rebuild the
   * Map's table over and over (42 MB of promoted garbage in 9 s of scenario 8).
   */
  private readonly lastReported = new Map<string, { version: string; again: boolean }>();
  private readonly maxRemembered: number;

  constructor(private readonly options: FirmwareStatesOptions) {
    this.step = options.progressStepPercent ?? 10;
    this.maxTracked = options.maxTracked ?? 10_000;
    this.maxRemembered = options.maxRememberedVersions ?? 65_536;
  }

  get(uid: string): Promise<DeviceFirmwareState | undefined> {
    const tracked = this.downloads.get(uid);
    if (tracked) return Promise.resolve({ ...tracked.state });
    return this.options.store.get<DeviceFirmwareState>(STATE + uid);
  }

  /**
   * The version from telemetry key 0; saved only when it changed. Devices send
   * it with every telemetry message, so a repeat of the version this device
   * reported last is answered from memory: no queue, no store read.
   * Resolves to true when the report was checked against the store.
   */
  async reported(uid: string, version: string): Promise<boolean> {
    // The decoder refuses longer ones; this state is kept for every device and
    // shown in every fleet answer, so a caller that skipped it must not store one.
    if (version.length > MAX_VERSION_LENGTH) throw new RangeError(`version is ${version.length} characters long, at most ${MAX_VERSION_LENGTH} allowed`);
    if (this.isRepeatReport(uid, version)) return false;
    this.rememberReported(uid, version);
    try {
      await this.change(uid, (state) => {
        if (state.reportedVersion === version) return false;
        state.reportedVersion = version;
        return true;
      });
    } catch (error) {
      // Not saved: the next report of this version must try again.
      if (this.lastReported.get(uid)?.version === version) this.lastReported.delete(uid);
      throw error;
    }
    return true;
  }

  /**
   * True when `version` is what this device reported last (and marks it as
   * reported again): the caller can skip `reported()` and its promise.
   */
  isRepeatReport(uid: string, version: string): boolean {
    const remembered = this.lastReported.get(uid);
    if (remembered?.version !== version) return false;
    remembered.again = true;
    return true;
  }

  /**
   * Forgets what this device reported last, so its next report is checked
   * against the store. The runner calls it when a device connects: in a
   * cluster the device may have reported another version to another instance.
   */
  forgetReported(uid: string): void {
    this.lastReported.delete(uid);
  }

  /**
   * A Check: its time and the image assigned then. Saved behind the answer
   * like download progress (see `served`): a reconnect storm's Checks must
   * not take a synced write each before the next one is answered. A crash can
   * lose the latest Check's time; the device checks again when it reconnects.
   */
  checked(uid: string, assignedImageId: string | undefined): Promise<DeviceFirmwareState | undefined> {
    const at = this.now();
    return this.later(uid, (batch) => {
      batch.check = { at, assignedImageId };
    });
  }

  done(uid: string, imageId: string | undefined): Promise<DeviceFirmwareState> {
    return this.change(uid, (state) => {
      state.doneAt = this.now();
      if (imageId === undefined) delete state.doneImageId;
      else state.doneImageId = imageId;
      return true;
    });
  }

  /**
   * Counts `bytes` more served of `image` to this device. Callers on the
   * download paths do not wait for it (a chunk must not wait for a synced
   * store write), so calls for a device whose earlier ones are still queued
   * join them: the queue holds at most one such batch per device, and a slow
   * store means fewer, larger saves instead of a growing queue. Resolves once
   * the batch with these bytes is counted (and saved when it crossed a step).
   * Bytes of another image replace the waiting ones: that image's count would
   * be reset by these anyway.
   */
  served(uid: string, image: ServedImage, bytes: number): Promise<DeviceFirmwareState | undefined> {
    return this.later(uid, (batch) => {
      if (batch.served?.image.id === image.id) batch.served.bytes += bytes;
      else batch.served = { image, bytes };
    });
  }

  private later(uid: string, add: (batch: Behind) => void): Promise<DeviceFirmwareState | undefined> {
    const waiting = this.behind.get(uid);
    if (waiting) {
      add(waiting);
      return waiting.settled;
    }
    // The queue never runs a task at once, so `batch` is complete before its task looks.
    const batch: Behind = {
      settled: this.queue
        .run(() => {
          // From here on, newer calls for this device form the next batch.
          this.behind.delete(uid);
          return this.settle(uid, batch);
        })
        .catch((error: unknown) => {
          this.options.onBehindError(error, uid);
          return undefined;
        }),
    };
    add(batch);
    this.behind.set(uid, batch);
    return batch.settled;
  }

  private async settle(uid: string, batch: Behind): Promise<DeviceFirmwareState> {
    const download = this.downloads.get(uid) ?? (batch.served ? await this.track(uid) : undefined);
    const state = download?.state ?? (await this.load(uid));
    let save = false;
    if (batch.check) {
      state.lastCheckAt = batch.check.at;
      if (batch.check.assignedImageId === undefined) delete state.assignedImageId;
      else state.assignedImageId = batch.check.assignedImageId;
      save = true;
    }
    if (batch.served && download && this.count(download, batch.served.image, batch.served.bytes)) save = true;
    if (save) {
      if (download) await this.save(download);
      else await this.persist(state);
    }
    return { ...state };
  }

  /** Adds served bytes to a tracked download; true when they crossed into another step (to be saved and announced). */
  private count(download: Download, image: ServedImage, bytes: number): boolean {
    const state = download.state;
    if (state.downloadImageId !== image.id) {
      state.downloadImageId = image.id;
      state.bytesServed = 0;
      download.savedStep = -1;
    }
    const before = state.bytesServed;
    state.bytesServed += bytes;
    state.lastDownloadAt = this.now();
    download.dirty = true;
    const percent = (state.bytesServed * 100) / Math.max(1, image.size);
    // Bytes served after the whole image was (a lost last chunk asked again, a second download) count their
    // steps apart, so the first of them is announced: they show the device has not rebooted into the image.
    const step = before >= image.size ? BEYOND_WHOLE_IMAGE + Math.floor(percent / this.step) : Math.floor(Math.min(100, percent) / this.step);
    if (step === download.savedStep) return false;
    download.savedStep = step;
    return true;
  }

  /** Saves all progress held in memory. */
  flush(): Promise<void> {
    return this.queue.run(async () => {
      for (const download of this.downloads.values()) if (download.dirty) await this.save(download);
      this.downloads.clear();
    });
  }

  private change(uid: string, mutate: (state: DeviceFirmwareState) => boolean): Promise<DeviceFirmwareState> {
    return this.queue.run(async () => {
      const download = this.downloads.get(uid);
      const state = download?.state ?? (await this.load(uid));
      const changed = mutate(state);
      if (download) {
        if (changed || download.dirty) await this.save(download);
      } else if (changed) {
        await this.persist(state);
      }
      return { ...state };
    });
  }

  private rememberReported(uid: string, version: string): void {
    this.lastReported.delete(uid);
    this.lastReported.set(uid, { version, again: false });
    // Map order is insertion order. From the oldest entry on, one reported
    // again since it was placed gets a second chance at the end; the first
    // one that was not is dropped.
    while (this.lastReported.size > this.maxRemembered) {
      const oldest = this.lastReported.entries().next();
      if (oldest.done === true) break;
      const [oldestUid, entry] = oldest.value;
      this.lastReported.delete(oldestUid);
      if (entry.again) {
        entry.again = false;
        this.lastReported.set(oldestUid, entry);
      }
    }
  }

  private async track(uid: string): Promise<Download> {
    const state = await this.load(uid);
    const download: Download = { state, savedStep: -1, dirty: false };
    this.downloads.set(uid, download);
    // Map order is insertion order: the first entries are the longest tracked.
    for (const [key, old] of this.downloads) {
      if (this.downloads.size <= this.maxTracked) break;
      this.downloads.delete(key);
      if (old.dirty) await this.save(old);
    }
    return download;
  }

  private async load(uid: string): Promise<DeviceFirmwareState> {
    return (await this.options.store.get<DeviceFirmwareState>(STATE + uid)) ?? { uid, bytesServed: 0 };
  }

  private async save(download: Download): Promise<void> {
    await this.persist(download.state);
    download.dirty = false;
  }

  private async persist(state: DeviceFirmwareState): Promise<void> {
    await this.options.store.put(STATE + state.uid, state);
    this.options.onChange({ ...state });
  }

  private now(): string {
    return rfc3339(this.options.clock());
  }
}
