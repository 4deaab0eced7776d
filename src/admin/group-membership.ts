import type { GroupInfo, ImageInfo } from '../events.js';

/** What the OTA runner knows that a fleet search needs: groups with their devices, and image sizes. */
export interface OtaCatalogView {
  groups: GroupInfo[];
  images: ImageInfo[];
}

export interface GroupMembershipOptions {
  /** Asks the OTA runner (OtaGroupListRequest and OtaImageListRequest through the broker). */
  fetch: () => Promise<OtaCatalogView>;
  /** An answer older than this is asked again: links made by library code or another instance send no event here. */
  maxAgeMs: number;
  now?: () => number;
}

const NO_GROUPS: readonly string[] = Object.freeze([]);

/**
 * A cache of the OTA runner's groups (device → groups) and image sizes for
 * devices.search and devices.detail. Marked stale by every OTA command result
 * that passes the admin runner (links, unlinks, images added or removed) and
 * after `maxAgeMs`; the next reader then asks again, and readers at the same
 * time share one request. Bounded by the catalog itself (one entry per linked
 * device and per image).
 */
export class GroupMembership {
  private byDevice = new Map<string, string[]>();
  private groupNames: string[] = [];
  private imageSizes = new Map<string, number>();
  private fetchedAt: number | undefined;
  private stale = true;
  private inFlight: Promise<void> | undefined;
  private readonly now: () => number;

  constructor(private readonly options: GroupMembershipOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Something changed in the catalog: ask again before the next read. */
  invalidate(): void {
    this.stale = true;
  }

  /**
   * The membership after every change announced so far: after an
   * invalidation (or the first time) it waits for the OTA runner's answer;
   * when the answer is only old, it answers at once and asks again in the
   * background (asking takes a few hundred ms at 10,000 members). When the
   * OTA runner cannot answer: the last known one (empty at first), with the
   * error passed to `onError`.
   */
  async current(onError: (error: unknown) => void): Promise<this> {
    // An answer already on its way when a change was announced is waited for, then asked for again (three waits at most).
    for (let attempt = 0; attempt < 3 && (this.stale || this.fetchedAt === undefined); attempt++) {
      try {
        await this.refresh();
      } catch (error) {
        onError(error);
        return this;
      }
    }
    if (this.fetchedAt !== undefined && this.now() - this.fetchedAt > this.options.maxAgeMs) this.refresh().catch(onError);
    return this;
  }

  groupsOf(uid: string): readonly string[] {
    return this.byDevice.get(uid) ?? NO_GROUPS;
  }

  inGroup(uid: string, group: string): boolean {
    return this.byDevice.get(uid)?.includes(group) ?? false;
  }

  get groups(): readonly string[] {
    return this.groupNames;
  }

  imageSize(id: string): number | undefined {
    return this.imageSizes.get(id);
  }

  private refresh(): Promise<void> {
    this.inFlight ??= this.load().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async load(): Promise<void> {
    // Cleared before asking: a change announced while the answer is on its way marks it stale again.
    this.stale = false;
    const startedAt = this.now();
    let view: OtaCatalogView;
    try {
      view = await this.options.fetch();
    } catch (error) {
      this.stale = true;
      throw error;
    }
    const byDevice = new Map<string, string[]>();
    for (const group of view.groups) {
      for (const uid of group.devices) {
        const groups = byDevice.get(uid);
        if (groups) groups.push(group.name);
        else byDevice.set(uid, [group.name]);
      }
    }
    this.byDevice = byDevice;
    this.groupNames = view.groups.map((group) => group.name).sort();
    this.imageSizes = new Map(view.images.map((image) => [image.id, image.size]));
    this.fetchedAt = startedAt;
  }
}
