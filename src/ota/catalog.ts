import { open } from 'node:fs/promises';
import type { GroupInfo, ImageInfo, ImageSource, ImageType, OtaVersion } from '../events.js';
import { compareVersions, isValidUid, parseVersionId } from '../protocol/index.js';
import type { BlobStore } from '../store/blob.js';
import type { KvOperation, KvStore } from '../store/index.js';
import { SerialQueue } from '../util/serial-queue.js';
import { OtaError } from './errors.js';

/**
 * Images, groups and links (device → group → image, as in Pyrinas), kept in the
 * KvStore; image bytes in the BlobStore. Every change is one atomic KvStore
 * batch, and changes run one at a time.
 *
 * Keys:
 * - `ota/image/<id>`           ImageInfo
 * - `ota/group/<name>`         { name, imageId? }
 * - `ota/device/<uid>`         { group }        (a device is in at most one group)
 * - `ota/member/<group>/<uid>` true             (index: the members of a group)
 */
const IMAGE = 'ota/image/';
const GROUP = 'ota/group/';
const DEVICE = 'ota/device/';
const MEMBER = 'ota/member/';

const GROUP_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const IMAGE_TYPES: readonly ImageType[] = ['primary', 'secondary'];
const MAX_DESCRIPTION = 1024;
/** Devices named in a VERSION_DOWNGRADE message; the rest are counted. */
const MAX_NAMED = 10;

export interface NewImage {
  id: string;
  imageType: ImageType;
  description?: string;
  source: ImageSource;
}

export interface AddImageResult {
  image: ImageInfo;
  /** False when the same id with the same bytes was already stored (a retried upload). */
  created: boolean;
}

export interface DeleteResult {
  deleted: string[];
  /** Groups that pointed at a deleted image and now point at none. */
  unlinkedGroups: string[];
}

export interface LinkRequest {
  deviceUid?: string;
  group?: string;
  imageId?: string;
  /** Allow a device to be linked to an older image than it reports running. */
  force?: boolean;
}

export interface LinkResult {
  group: string;
  /** The image the group now points at, if any. */
  imageId?: string;
  /** The device linked by this request, if any. */
  deviceUid?: string;
  /** Devices whose assigned image may have changed (the linked device first). */
  affected: string[];
}

export interface UnlinkRequest {
  deviceUid?: string;
  group?: string;
}

export interface UnlinkResult {
  deviceUid?: string;
  group?: string;
  /** The image the group pointed at before an unlink by group. */
  imageId?: string;
}

interface GroupRecord {
  name: string;
  imageId?: string;
}

interface DeviceRecord {
  group: string;
}

export interface OtaCatalogOptions {
  store: KvStore;
  blobs: BlobStore;
  clock: () => Date;
  /** The version a device runs, when known (from telemetry or its last Done). */
  runningVersion: (uid: string) => Promise<OtaVersion | undefined>;
}

export class OtaCatalog {
  private readonly queue = new SerialQueue();

  constructor(private readonly options: OtaCatalogOptions) {}

  async image(id: string): Promise<ImageInfo | undefined> {
    if (!parseVersionId(id)) return undefined;
    return this.options.store.get<ImageInfo>(IMAGE + id);
  }

  async images(): Promise<ImageInfo[]> {
    const images: ImageInfo[] = [];
    for await (const [, image] of this.options.store.entries<ImageInfo>(IMAGE)) images.push(image);
    return images;
  }

  async groups(): Promise<GroupInfo[]> {
    const members = new Map<string, string[]>();
    for await (const [key] of this.options.store.entries<true>(MEMBER)) {
      const [group, uid] = key.slice(MEMBER.length).split('/') as [string, string];
      const list = members.get(group) ?? [];
      list.push(uid);
      members.set(group, list);
    }
    const groups: GroupInfo[] = [];
    for await (const [, record] of this.options.store.entries<GroupRecord>(GROUP)) {
      const info: GroupInfo = { name: record.name, devices: members.get(record.name) ?? [] };
      if (record.imageId !== undefined) info.imageId = record.imageId;
      groups.push(info);
    }
    return groups;
  }

  async groupOf(uid: string): Promise<string | undefined> {
    return (await this.options.store.get<DeviceRecord>(DEVICE + uid))?.group;
  }

  async members(group: string): Promise<string[]> {
    const prefix = `${MEMBER}${group}/`;
    const uids: string[] = [];
    for await (const [key] of this.options.store.entries<true>(prefix)) uids.push(key.slice(prefix.length));
    return uids;
  }

  /** The image a device should run: device → group → image. */
  async assignedImage(uid: string): Promise<ImageInfo | undefined> {
    const group = await this.groupOf(uid);
    if (group === undefined) return undefined;
    const imageId = (await this.options.store.get<GroupRecord>(GROUP + group))?.imageId;
    return imageId === undefined ? undefined : this.image(imageId);
  }

  addImage(request: NewImage): Promise<AddImageResult> {
    return this.queue.run(() => this.doAddImage(request));
  }

  deleteImages(id: string): Promise<DeleteResult> {
    return this.queue.run(() => this.doDeleteImages(id));
  }

  link(request: LinkRequest): Promise<LinkResult> {
    return this.queue.run(() => this.doLink(request));
  }

  unlink(request: UnlinkRequest): Promise<UnlinkResult> {
    return this.queue.run(() => this.doUnlink(request));
  }

  /**
   * Removes blobs no image references: what an upload left when the process
   * died between storing the bytes and recording the image. Run at start.
   */
  sweepUnreferencedBlobs(): Promise<number> {
    return this.queue.run(async () => {
      const referenced = new Set((await this.images()).map((image) => image.sha256));
      let removed = 0;
      for await (const sha256 of this.options.blobs.list()) {
        if (referenced.has(sha256)) continue;
        await this.options.blobs.delete(sha256);
        removed++;
      }
      return removed;
    });
  }

  private async doAddImage(request: NewImage): Promise<AddImageResult> {
    const version = parseVersionId(request.id);
    if (!version) throw new OtaError('INVALID_ARGUMENT', `image id ${JSON.stringify(request.id)} is not major.minor.patch-commit-hash (e.g. 1.2.3-4-g965b9df)`);
    if (!IMAGE_TYPES.includes(request.imageType)) throw new OtaError('INVALID_ARGUMENT', `image type must be primary or secondary, got ${JSON.stringify(request.imageType)}`);
    if (request.description !== undefined && (typeof request.description !== 'string' || request.description.length > MAX_DESCRIPTION)) {
      throw new OtaError('INVALID_ARGUMENT', `description must be text of at most ${MAX_DESCRIPTION} characters`);
    }
    const blob = await this.storeBytes(request.source);
    const existing = await this.image(request.id);
    if (existing) {
      if (existing.sha256 === blob.sha256) return { image: existing, created: false };
      await this.deleteBlobIfUnused(blob.sha256);
      throw new OtaError('CONFLICT', `image ${request.id} already exists with different bytes (sha256 ${existing.sha256}); delete it first`);
    }
    if (blob.size === 0) {
      await this.deleteBlobIfUnused(blob.sha256);
      throw new OtaError('INVALID_ARGUMENT', `image ${request.id} is empty`);
    }
    const image: ImageInfo = {
      id: request.id,
      version,
      size: blob.size,
      sha256: blob.sha256,
      imageType: request.imageType,
      dateAdded: rfc3339(this.options.clock()),
    };
    if (request.description !== undefined && request.description !== '') image.description = request.description;
    try {
      await this.options.store.put(IMAGE + image.id, image);
    } catch (error) {
      throw new OtaError('STORAGE_FAILED', `recording image ${image.id} failed: ${(error as Error).message}`, { cause: error });
    }
    return { image, created: true };
  }

  private async storeBytes(source: ImageSource): Promise<{ sha256: string; size: number }> {
    let bytes: AsyncIterable<Uint8Array> | Uint8Array;
    if (source.kind === 'bytes') {
      if (!(source.data instanceof Uint8Array)) throw new OtaError('INVALID_ARGUMENT', 'image source bytes must be a Uint8Array');
      bytes = source.data;
    } else {
      if (typeof source.path !== 'string' || source.path === '') throw new OtaError('INVALID_ARGUMENT', 'image source file path is empty');
      // The sender keeps its file: we copy it, hashing on the way.
      bytes = readFileChunks(source.path);
    }
    try {
      return await this.options.blobs.put(bytes);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (source.kind === 'file' && (code === 'ENOENT' || code === 'EISDIR' || code === 'EACCES')) {
        throw new OtaError('INVALID_ARGUMENT', `cannot read image source file ${source.path}: ${code}`, { cause: error });
      }
      throw new OtaError('STORAGE_FAILED', `storing the image bytes failed: ${(error as Error).message}`, { cause: error });
    }
  }

  private async doDeleteImages(id: string): Promise<DeleteResult> {
    let targets: ImageInfo[];
    if (id === '*') {
      targets = await this.images();
    } else {
      const image = await this.image(id);
      if (!image) throw new OtaError('NOT_FOUND', `no image ${JSON.stringify(id)}`);
      targets = [image];
    }
    const ids = new Set(targets.map((image) => image.id));
    const operations: KvOperation[] = targets.map((image) => ({ type: 'del', key: IMAGE + image.id }));
    const unlinkedGroups: string[] = [];
    for await (const [key, group] of this.options.store.entries<GroupRecord>(GROUP)) {
      if (group.imageId === undefined || !ids.has(group.imageId)) continue;
      unlinkedGroups.push(group.name);
      operations.push({ type: 'put', key, value: { name: group.name } satisfies GroupRecord });
    }
    await this.options.store.batch(operations);
    // Bytes go after the records: a crash in between leaves only unreferenced
    // bytes, which the sweep at start removes.
    for (const image of targets) await this.deleteBlobIfUnused(image.sha256);
    return { deleted: [...ids], unlinkedGroups };
  }

  private async doLink(request: LinkRequest): Promise<LinkResult> {
    const { deviceUid, imageId } = request;
    if (deviceUid !== undefined && !isValidUid(deviceUid)) throw new OtaError('INVALID_ARGUMENT', `device uid ${JSON.stringify(deviceUid)} is not valid ([A-Za-z0-9_-]{1,64})`);
    // A device linked straight to an image gets a group of its own, named after it.
    const group = request.group ?? (deviceUid !== undefined && imageId !== undefined ? deviceUid : undefined);
    if (group === undefined) throw new OtaError('INVALID_ARGUMENT', 'a link needs (group, image), (device, group), (device, image) or (device, group, image)');
    if (!GROUP_NAME.test(group)) throw new OtaError('INVALID_ARGUMENT', `group name ${JSON.stringify(group)} is not valid ([A-Za-z0-9_.-]{1,64})`);
    if (deviceUid === undefined && imageId === undefined) throw new OtaError('INVALID_ARGUMENT', `linking group ${group} needs an image or a device`);

    let image: ImageInfo | undefined;
    if (imageId !== undefined) {
      image = await this.image(imageId);
      if (!image) throw new OtaError('NOT_FOUND', `no image ${JSON.stringify(imageId)}`);
    }
    const existingGroup = await this.options.store.get<GroupRecord>(GROUP + group);
    const groupImageId = image?.id ?? existingGroup?.imageId;
    const finalImage = image ?? (groupImageId === undefined ? undefined : await this.image(groupImageId));

    // Who gets a new assignment: the linked device, and every member when the group's image changes.
    const affected = new Set<string>();
    if (deviceUid !== undefined) affected.add(deviceUid);
    if (image && image.id !== existingGroup?.imageId) for (const uid of await this.members(group)) affected.add(uid);

    if (finalImage && request.force !== true) await this.refuseDowngrades(finalImage, [...affected]);

    const operations: KvOperation[] = [];
    const record: GroupRecord = groupImageId === undefined ? { name: group } : { name: group, imageId: groupImageId };
    operations.push({ type: 'put', key: GROUP + group, value: record });
    if (deviceUid !== undefined) {
      const previous = await this.groupOf(deviceUid);
      if (previous !== undefined && previous !== group) operations.push({ type: 'del', key: `${MEMBER}${previous}/${deviceUid}` });
      operations.push({ type: 'put', key: DEVICE + deviceUid, value: { group } satisfies DeviceRecord });
      operations.push({ type: 'put', key: `${MEMBER}${group}/${deviceUid}`, value: true });
    }
    await this.options.store.batch(operations);
    const result: LinkResult = { group, affected: [...affected] };
    if (groupImageId !== undefined) result.imageId = groupImageId;
    if (deviceUid !== undefined) result.deviceUid = deviceUid;
    return result;
  }

  private async refuseDowngrades(image: ImageInfo, uids: string[]): Promise<void> {
    const older: string[] = [];
    for (const uid of uids) {
      const running = await this.options.runningVersion(uid);
      if (running && compareVersions(image.version, running) < 0) older.push(uid);
    }
    if (older.length === 0) return;
    const named = older.slice(0, MAX_NAMED).join(', ');
    const more = older.length > MAX_NAMED ? ` and ${older.length - MAX_NAMED} more` : '';
    throw new OtaError('VERSION_DOWNGRADE', `image ${image.id} is older than what ${named}${more} run(s); link with force to downgrade`);
  }

  private async doUnlink(request: UnlinkRequest): Promise<UnlinkResult> {
    const { deviceUid, group } = request;
    if (deviceUid !== undefined) {
      const record = await this.options.store.get<DeviceRecord>(DEVICE + deviceUid);
      if (!record) throw new OtaError('NOT_FOUND', `device ${JSON.stringify(deviceUid)} is in no group`);
      if (group !== undefined && record.group !== group) throw new OtaError('NOT_FOUND', `device ${deviceUid} is in group ${record.group}, not ${group}`);
      await this.options.store.batch([
        { type: 'del', key: DEVICE + deviceUid },
        { type: 'del', key: `${MEMBER}${record.group}/${deviceUid}` },
      ]);
      return { deviceUid, group: record.group };
    }
    if (group !== undefined) {
      const record = await this.options.store.get<GroupRecord>(GROUP + group);
      if (!record) throw new OtaError('NOT_FOUND', `no group ${JSON.stringify(group)}`);
      // The members stay in the group: link an image to it again and they all get it.
      await this.options.store.put(GROUP + group, { name: group } satisfies GroupRecord);
      const result: UnlinkResult = { group };
      if (record.imageId !== undefined) result.imageId = record.imageId;
      return result;
    }
    throw new OtaError('INVALID_ARGUMENT', 'an unlink needs a device, a group, or both');
  }

  private async deleteBlobIfUnused(sha256: string): Promise<void> {
    for await (const [, image] of this.options.store.entries<ImageInfo>(IMAGE)) if (image.sha256 === sha256) return;
    await this.options.blobs.delete(sha256);
  }
}

/**
 * The file's bytes, opened only once iterated: a missing file then fails the
 * iteration (reported to whoever reads), never as a stray stream 'error' event,
 * and the handle is closed however the reader stops.
 */
async function* readFileChunks(file: string): AsyncGenerator<Buffer> {
  const handle = await open(file, 'r');
  try {
    for await (const chunk of handle.createReadStream({ autoClose: false })) yield chunk as Buffer;
  } finally {
    await handle.close();
  }
}

/** RFC 3339 in UTC without fractions, as Pyrinas writes `date_added` (e.g. `2026-11-01T12:00:00Z`). */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
