import { z } from 'zod';
import type { EventBroker } from '../broker/index.js';
import type { CredentialStore } from '../devices/index.js';
import { errorAnswer, foreignCode, NucleonError } from '../errors.js';
import type { CampaignCommandRequest, ErrorInfo, Event, EventOf, EventType } from '../events.js';
import { isValidUid, parseVersionId } from '../protocol/index.js';
import type { AuditLog, AuditVia } from './audit.js';
import type { AdminActor } from './auth.js';
import type { Subscription } from './connection.js';
import type { FleetView } from './fleet.js';
import type { AdminMetrics } from './metrics.js';
import type { PendingRequests } from './pending.js';
import { AdminError } from './protocol.js';
import type { UploadManager } from './uploads.js';
import { loadLiveRules, saveLiveRules, type AclRule, type RuleStore } from '../acl/index.js';
import { aclRuleSchema } from '../config/index.js';
import type { RevocationService } from '../revocation/index.js';
import { deviceDetail } from './device-detail.js';
import type { DeviceHistory } from './device-history.js';
import { searchArgs, searchDevices, summarize, type SearchContext } from './device-search.js';
import type { GroupMembership, OtaCatalogView } from './group-membership.js';
import type { HealthSampler } from './health.js';
import type { TelemetryRings } from './telemetry-rings.js';
import type { InfluxHistory } from './influx-history.js';
import { readDeviceTelemetry } from './device-telemetry.js';

/** What commands may use; one instance per admin runner. */
export interface CommandServices {
  broker: EventBroker;
  fleet: FleetView;
  pending: PendingRequests;
  uploads: UploadManager;
  metrics: AdminMetrics;
  /** Device passwords for MQTT logins. */
  credentials: CredentialStore;
  /** Service account passwords (README "Service accounts"). */
  serviceAccounts: CredentialStore;
  audit: AuditLog;
  /** Largest chunk a client should send in `uploads.chunk` (leaves room for base64 and framing). */
  chunkBytes: number;
  /** ACL rules: the configured ones (read-only) and the store the live ones are kept in. */
  acl: { configured: readonly AclRule[]; store: RuleStore };
  /** The instance's revocation list (README "Revocation"); absent in a bare admin runner, whose devices.revoke/unrevoke/kick answer UNAVAILABLE. */
  revocations: RevocationService | undefined;
  /** What the console's device pages and health view read (devices.search, devices.detail, health.get). */
  console: ConsoleServices;
}

export interface ConsoleServices {
  membership: GroupMembership;
  history: DeviceHistory;
  telemetry: TelemetryRings;
  /** Telemetry history from InfluxDB, with [influx] configured; the device page falls back to `telemetry` when it fails. */
  influxHistory?: InfluxHistory;
  /** Told when InfluxDB could not be asked for a device's history (the page shows the recent store instead). */
  onHistoryError?: (error: Error) => void;
  health: HealthSampler;
  /** Told when the OTA runner could not be asked for groups (the search goes on with the last known ones). */
  onMembershipError: (error: unknown) => void;
}

function revocationsOf(services: CommandServices): RevocationService {
  if (!services.revocations) throw new AdminError('UNAVAILABLE', 'this admin runner has no revocation list (it runs outside Nucleon)');
  return services.revocations;
}

/** Who changed the list, as the entry records it: the admin key's name (the audit log's actor). */
function operator(caller: CommandCaller): string {
  return `${caller.actor.name} (${caller.via})`;
}

/**
 * Who runs a command, whatever carried it (the WebSocket, a REST route): the
 * actor is what the audit log names, `id` owns uploads and pending answers.
 */
export interface CommandCaller {
  readonly id: string;
  readonly actor: AdminActor;
  readonly via: AuditVia;
  /** Sets or ends the live event stream; absent where there is none (a REST request). */
  readonly subscribe?: (subscription: Subscription | undefined) => void;
}

export interface CommandCall<A> {
  args: A;
  caller: CommandCaller;
  services: CommandServices;
  encoding: 'json' | 'cbor';
}

interface Command<S extends z.ZodType> {
  summary: string;
  args: S;
  /** Changes something: refused to read-only keys, and audited. */
  changes: boolean;
  /** What the audit line names as changed (a uid, an id); never a secret or bytes. */
  target?: (args: z.output<S>) => string | undefined;
  /** False for steps whose whole is audited elsewhere (`uploads.chunk`: `images.add` is the action). */
  audited: boolean;
  run(call: CommandCall<z.output<S>>): Promise<unknown>;
}

/** A command that only reads. */
function command<S extends z.ZodType>(args: S, summary: string, run: (call: CommandCall<z.output<S>>) => Promise<unknown>): Command<S> {
  return { summary, args, changes: false, audited: false, run };
}

/** A command that changes something: admin keys only, and every call (refusals too) is in the audit log. */
function change<S extends z.ZodType>(
  args: S,
  summary: string,
  target: ((args: z.output<S>) => string | undefined) | undefined,
  run: (call: CommandCall<z.output<S>>) => Promise<unknown>,
  options: { audited?: boolean } = {},
): Command<S> {
  return { summary, args, changes: true, ...(target ? { target } : {}), audited: options.audited ?? true, run };
}

/** `device`, `group:<name>`, or both, for the audit line of a link. */
function linkTarget(args: { device?: string | undefined; group?: string | undefined }): string {
  return [args.device, args.group === undefined ? undefined : `group:${args.group}`].filter((part) => part !== undefined).join(' ');
}

// --- argument types -------------------------------------------------------

const uid = z.string().refine(isValidUid, { message: 'expected a device uid ([A-Za-z0-9_-], 1..64 characters)' });
const groupName = z.string().min(1).max(128);
const imageId = z.string().refine((id) => parseVersionId(id) !== undefined, { message: 'expected an image id such as 1.2.3-4-g965b9df' });
const sha256 = z.string().regex(/^[0-9a-fA-F]{64}$/, { message: 'expected 64 hex digits' });
/** Bytes: a CBOR byte string, or base64 text in JSON. */
const bytes = z.union([
  z.instanceof(Uint8Array),
  z
    .string()
    .regex(/^[A-Za-z0-9+/]*={0,2}$/, { message: 'expected base64' })
    .refine((text) => text.length % 4 === 0, { message: 'expected base64 (length a multiple of 4)' })
    .transform((text) => new Uint8Array(Buffer.from(text, 'base64'))),
]);
const imageType = z.enum(['primary', 'secondary']).default('primary');
const none = z.strictObject({});

const EVENT_KINDS = ['device', 'telemetry', 'ota', 'campaign', 'health'] as const;
/** What `events.subscribe` without `kinds` streams: campaign events came later and are asked for by name. */
const DEFAULT_KINDS = ['device', 'telemetry', 'ota'] as const;
const campaignId = z.string().min(1).max(64);

// --- the commands ---------------------------------------------------------

/** Every command with its argument schema; README "Admin protocol" documents them. */
export const COMMANDS = {
  ping: command(none, 'liveness check', async () => ({ pong: true, time: new Date().toISOString() })),

  'images.list': command(none, 'firmware images', async (call) => {
    const answer = await ask(call, 'OtaImageListResponse', (correlationId) => ({ type: 'OtaImageListRequest', correlationId }));
    return { images: answer.images };
  }),

  'uploads.begin': change(
    z.strictObject({ size: z.number().int().min(1), sha256: sha256.optional() }),
    'start a chunked firmware upload; answers {uploadId, chunkBytes}',
    (args) => `${args.size} bytes`,
    async ({ args, caller, services }) => {
      const { uploadId } = await services.uploads.begin(caller.id, args.size, args.sha256);
      return { uploadId, chunkBytes: services.chunkBytes };
    },
  ),

  'uploads.chunk': change(
    z.strictObject({ uploadId: z.string().min(1), offset: z.number().int().min(0), data: bytes }),
    'append the bytes at offset (in order)',
    undefined,
    async ({ args, caller, services }) => {
      const result = await services.uploads.chunk(caller.id, args.uploadId, args.offset, args.data);
      services.metrics.uploadBytes.inc(args.data.byteLength);
      return result;
    },
    { audited: false },
  ),

  'uploads.abort': change(z.strictObject({ uploadId: z.string().min(1) }), 'drop an unfinished upload', (args) => args.uploadId, async ({ args, caller, services }) => {
    await services.uploads.abort(caller.id, args.uploadId);
    return { aborted: args.uploadId };
  }),

  'images.add': change(
    z
      .strictObject({
        id: imageId,
        imageType,
        description: z.string().max(1000).optional(),
        data: bytes.optional(),
        uploadId: z.string().min(1).optional(),
      })
      .refine((a) => (a.data === undefined) !== (a.uploadId === undefined), { message: 'give exactly one of data (small images) or uploadId (from uploads.begin)' }),
    'add a firmware image from inline data or a finished upload',
    (args) => args.id,
    async (call) => {
      const { args, caller, services } = call;
      if (args.data !== undefined) {
        services.metrics.uploadBytes.inc(args.data.byteLength);
        return commandResult(await ask(call, 'OtaCommandResult', (correlationId) => newPackage(correlationId, args, { kind: 'bytes', data: args.data ?? new Uint8Array() })));
      }
      const upload = await services.uploads.finish(caller.id, args.uploadId ?? '');
      try {
        return commandResult(await ask(call, 'OtaCommandResult', (correlationId) => newPackage(correlationId, args, { kind: 'file', path: upload.file })));
      } finally {
        // The OTA runner has stored (or refused) the image by now; the upload copy is ours to remove.
        await services.uploads.discard(upload.file);
      }
    },
  ),

  'images.remove': change(z.strictObject({ id: imageId }), 'delete an image', (args) => args.id, async (call) =>
    commandResult(await ask(call, 'OtaCommandResult', (correlationId) => ({ type: 'OtaDeletePackage', correlationId, id: call.args.id }))),
  ),

  'ota.link': change(
    z
      .strictObject({ device: uid.optional(), group: groupName.optional(), image: imageId.optional(), force: z.boolean().optional() })
      .refine((a) => a.device !== undefined || a.group !== undefined, { message: 'give a device, a group, or both' }),
    'link a device to a group and/or an image, or a group to an image',
    (args) => `${linkTarget(args)}${args.image === undefined ? '' : ` -> ${args.image}`}`,
    async (call) => {
      const { device, group, image, force } = call.args;
      return commandResult(
        await ask(call, 'OtaCommandResult', (correlationId) => ({ type: 'OtaLink', correlationId, deviceUid: device, group, imageId: image, force })),
      );
    },
  ),

  'ota.unlink': change(
    z.strictObject({ device: uid.optional(), group: groupName.optional() }).refine((a) => a.device !== undefined || a.group !== undefined, {
      message: 'give a device, a group, or both',
    }),
    'remove a device or group link',
    linkTarget,
    async (call) => commandResult(await ask(call, 'OtaCommandResult', (correlationId) => ({ type: 'OtaUnlink', correlationId, deviceUid: call.args.device, group: call.args.group }))),
  ),

  'groups.list': command(none, 'groups with their image and devices', async (call) => {
    const answer = await ask(call, 'OtaGroupListResponse', (correlationId) => ({ type: 'OtaGroupListRequest', correlationId }));
    return { groups: answer.groups };
  }),

  'ingest.status': command(none, 'the durable ingest log: size, head, and each runner\'s committed position and lag', async ({ services }) => {
    const stats = services.broker.ingestStats();
    return stats ?? { durability: 'memory' };
  }),

  'acl.rules.list': command(none, 'ACL rules: the configured ones, then the ones set live', async ({ services }) => ({
    configured: services.acl.configured,
    live: await loadLiveRules(services.acl.store),
  })),

  'acl.rules.set': change(
    z.strictObject({ rules: z.array(aclRuleSchema).max(10_000) }),
    'replace the live ACL rules (they come after the configured ones); every cluster instance takes them for new subscriptions and publishes',
    (args) => `${args.rules.length} rules`,
    async ({ args, services }) => {
      await saveLiveRules(services.acl.store, args.rules);
      services.broker.emit({ type: 'AclRulesChanged', at: Date.now() });
      return { live: args.rules };
    },
  ),

  'devices.list': command(z.strictObject({ online: z.boolean().optional() }), 'the fleet view', async ({ args, services }) => {
    const devices = services.fleet.list();
    return { devices: args.online === undefined ? devices : devices.filter((d) => d.online === args.online) };
  }),

  'devices.search': command(searchArgs, 'search the fleet: uid prefix, group, firmware, online, OTA state; sorted and paged, with facets', async ({ args, services }) =>
    searchDevices(services.fleet.all(), args, await searchContext(services)),
  ),

  'devices.detail': command(
    z.strictObject({ uid, payloads: z.boolean().optional() }),
    "one device's page: identity, sessions, firmware history, OTA progress, the last hour of telemetry (from InfluxDB when configured), last app messages",
    async ({ args, services }) => {
      const record = services.fleet.get(args.uid);
      if (!record) throw new AdminError('NOT_FOUND', `device ${args.uid} has never been seen`);
      const context = await searchContext(services);
      const revocation = services.revocations?.check({ uid: args.uid });
      const hasPassword = await services.credentials.has(args.uid);
      const { membership, history, influxHistory, onHistoryError } = services.console;
      const now = Date.now();
      const telemetry = await readDeviceTelemetry(args.uid, now, { recent: services.console.telemetry, influx: influxHistory, onError: onHistoryError ?? (() => undefined) });
      return deviceDetail(summarize(record, context), { revocation, hasPassword, payloads: args.payloads === true, now }, { history, telemetry, imageSize: (id) => membership.imageSize(id) });
    },
  ),

  'health.get': command(none, "this instance's health: connections, message and point counters, refusals, ingest lag, spool, event-loop lag, memory", async ({ services }) =>
    services.console.health.snapshot(),
  ),

  'devices.get': command(z.strictObject({ uid }), 'one device', async ({ args, services }) => {
    const device = services.fleet.get(args.uid);
    if (!device) throw new AdminError('NOT_FOUND', `device ${args.uid} has never been seen`);
    return device;
  }),

  'devices.add': change(
    z.strictObject({ uid, password: z.string().min(1).max(1024).optional() }),
    'set a device password for MQTT logins (generated when not given; answered once)',
    (args) => args.uid,
    async ({ args, services }) => {
      const password = await services.credentials.add(args.uid, args.password);
      return { uid: args.uid, password };
    },
  ),

  'devices.remove': change(z.strictObject({ uid }), "forget a device: its password and fleet record (a revocation stays, so a retired device's certificate stays refused)", (args) => args.uid, async ({ args, services }) => {
    const hadPassword = await services.credentials.remove(args.uid);
    const hadRecord = await services.fleet.forget(args.uid);
    services.console.history.forget(args.uid);
    services.console.telemetry.forget(args.uid);
    if (!hadPassword && !hadRecord) throw new AdminError('NOT_FOUND', `device ${args.uid} has no password`);
    return { uid: args.uid, removed: true, password: hadPassword, record: hadRecord };
  }),

  'devices.revoke': change(
    z.strictObject({ uid, reason: z.string().min(1).max(500).default('revoked by an operator') }),
    'revoke a device: its certificates and password are refused from now on, on every instance, and its session is closed',
    (args) => args.uid,
    async ({ args, caller, services }) => ({ revocation: await revocationsOf(services).revoke({ uid: args.uid }, { reason: args.reason, by: operator(caller) }) }),
  ),

  'devices.unrevoke': change(z.strictObject({ uid }), 'lift the revocation of a device (a certificate revoked by a rotation stays revoked)', (args) => args.uid, async ({ args, services }) => {
    if (!(await revocationsOf(services).unrevoke(args.uid))) throw new AdminError('NOT_FOUND', `device ${args.uid} is not revoked`);
    return { uid: args.uid, revoked: false };
  }),

  'devices.kick': change(z.strictObject({ uid }), "close the device's session on whichever instance holds it; it may connect again", (args) => args.uid, async ({ args, services }) => {
    await revocationsOf(services).kick(args.uid);
    return { uid: args.uid, kicked: true };
  }),

  'devices.revocations': command(none, 'the revocation list: devices (uid) and certificates (serial), with reason, time, who, and when it takes effect', async ({ services }) => ({
    revocations: revocationsOf(services).list(),
  })),

  'certs.revoke': change(
    z.strictObject({
      serial: z.string().regex(/^[0-9a-fA-F:]{1,64}$/, { message: 'expected a certificate serial in hex' }),
      uid: uid.optional(),
      reason: z.string().min(1).max(500).default('revoked by an operator'),
      effectiveAt: z.number().int().min(0).optional(),
    }),
    'revoke one certificate by serial, now or from effectiveAt (ms since the epoch) on: what `nucleon certs device --rotate` asks for the old one',
    (args) => `serial ${args.serial}`,
    async ({ args, caller, services }) => {
      const details = { reason: args.reason, by: operator(caller), ...(args.effectiveAt !== undefined ? { effectiveAt: args.effectiveAt } : {}) };
      return { revocation: await revocationsOf(services).revoke({ serial: args.serial, ...(args.uid !== undefined ? { uid: args.uid } : {}) }, details) };
    },
  ),

  // What the application does with a request is its own: counted as a change, to be safe.
  'app.request': change(z.strictObject({ target: z.string().min(1).max(256), payload: z.unknown() }), 'ask the application runner', (args) => args.target, async (call) => {
    const answer = await ask(call, 'ApplicationManagementResponse', (correlationId) => ({
      type: 'ApplicationManagementRequest',
      correlationId,
      target: call.args.target,
      payload: call.args.payload,
    }));
    if (answer.error) throw remoteError(answer.error);
    return { payload: answer.payload ?? null };
  }),

  'events.subscribe': command(
    z.strictObject({ kinds: z.array(z.enum(EVENT_KINDS)).min(1).optional(), uid: uid.optional() }),
    'live stream: device, telemetry and ota events; campaign and health events when asked for',
    async ({ args, caller, encoding }) => {
      if (!caller.subscribe) throw new AdminError('UNAVAILABLE', 'events.subscribe needs the admin WebSocket');
      const kinds = new Set<string>(args.kinds ?? DEFAULT_KINDS);
      caller.subscribe({ kinds, encoding, ...(args.uid !== undefined ? { uid: args.uid } : {}) });
      return { kinds: [...kinds], uid: args.uid ?? null };
    },
  ),

  'campaigns.create': change(
    // The campaigns runner validates the spec itself (one owner of the rules); its INVALID_ARGUMENT names the field.
    z.record(z.string(), z.unknown()),
    'create and start a staged OTA campaign (README "Campaigns"); answers its summary',
    (args) => (typeof args.id === 'string' ? args.id.slice(0, 64) : undefined),
    async (call) => commandResult(await askCampaigns(call, { command: 'create', spec: call.args })),
  ),

  'campaigns.list': command(none, 'every campaign, with its state, stage and device counts', async (call) => commandResult(await askCampaigns(call, { command: 'list' }))),

  'campaigns.show': command(z.strictObject({ id: campaignId, devices: z.boolean().optional() }), 'one campaign and its spec; with devices: true, every device record', async (call) =>
    commandResult(await askCampaigns(call, { command: 'show', id: call.args.id, ...(call.args.devices !== undefined ? { devices: call.args.devices } : {}) })),
  ),

  'campaigns.pause': change(z.strictObject({ id: campaignId }), 'stop notifying new devices; devices in progress are still watched', (args) => args.id, async (call) =>
    commandResult(await askCampaigns(call, { command: 'pause', id: call.args.id })),
  ),

  'campaigns.resume': change(z.strictObject({ id: campaignId }), 'resume a paused campaign (its stage gate is checked again at once)', (args) => args.id, async (call) =>
    commandResult(await askCampaigns(call, { command: 'resume', id: call.args.id })),
  ),

  'campaigns.abort': change(
    z.strictObject({ id: campaignId, rollback: z.boolean().optional() }),
    "stop the campaign; rollback (default: the campaign's setting) links the stage's notified devices back",
    (args) => args.id,
    async (call) => commandResult(await askCampaigns(call, { command: 'abort', id: call.args.id, ...(call.args.rollback !== undefined ? { rollback: call.args.rollback } : {}) })),
  ),

  'campaigns.promote': change(z.strictObject({ id: campaignId }), 'start the next stage now, whatever its soak time and gate say', (args) => args.id, async (call) =>
    commandResult(await askCampaigns(call, { command: 'promote', id: call.args.id })),
  ),

  'events.unsubscribe': command(none, 'stop the live stream', async ({ caller }) => {
    caller.subscribe?.(undefined);
    return { subscribed: false };
  }),

  'audit.list': command(
    z.strictObject({ limit: z.number().int().min(1).max(100_000).optional() }),
    "this instance's last admin actions (admin.audit_size of them), oldest first",
    async ({ args, services }) => ({ entries: services.audit.list(args.limit) }),
  ),

  'service-accounts.list': command(none, 'service accounts (names and when their password was set; never the password)', async ({ services }) => ({
    accounts: await services.serviceAccounts.list(),
  })),

  'service-accounts.add': change(
    z.strictObject({ name: uid, password: z.string().min(1).max(1024).optional() }),
    'set a service account password (generated when not given; answered once); it can log in at once',
    (args) => args.name,
    async ({ args, services }) => {
      const password = await services.serviceAccounts.add(args.name, args.password);
      services.broker.emit({ type: 'ServiceAccountsChanged', name: args.name, change: 'added', at: Date.now() });
      return { name: args.name, password };
    },
  ),

  'service-accounts.remove': change(z.strictObject({ name: uid }), "remove a service account; its live MQTT sessions are closed on every instance", (args) => args.name, async ({ args, services }) => {
    if (!(await services.serviceAccounts.remove(args.name))) throw new AdminError('NOT_FOUND', `service account ${args.name} does not exist`);
    services.broker.emit({ type: 'ServiceAccountsChanged', name: args.name, change: 'removed', at: Date.now() });
    return { name: args.name, removed: true };
  }),
} as const;

export type CommandName = keyof typeof COMMANDS;

/**
 * Validates the arguments, checks the caller's role and runs the command;
 * every failure is an error with a stable code. A command that changes
 * something is written to the audit log with its result, refusals included.
 */
export async function runCommand(name: string, rawArgs: Record<string, unknown>, caller: CommandCaller, services: CommandServices, encoding: 'json' | 'cbor'): Promise<unknown> {
  if (!Object.hasOwn(COMMANDS, name)) throw new AdminError('UNKNOWN_COMMAND', `unknown command "${name}"; known: ${Object.keys(COMMANDS).join(', ')}`);
  const definition = COMMANDS[name as CommandName] as Command<z.ZodType>;
  const parsed = definition.args.safeParse(rawArgs);
  const audit = auditor(name, caller, services, parsed.success ? definition.target?.(parsed.data) : undefined);
  refuseReadOnly(name, caller, audit);
  if (!parsed.success) {
    audit('INVALID_ARGUMENT');
    throw new AdminError('INVALID_ARGUMENT', describeIssues(parsed.error));
  }
  try {
    const result = await definition.run({ args: parsed.data, caller, services, encoding });
    audit('ok');
    return result;
  } catch (error) {
    audit(errorAnswer(error, 'INTERNAL').code);
    throw error;
  }
}

/**
 * The role check and audit of a command for the work a transport does before
 * running it (PUT /images/{id} streams the image to disk, then runs
 * `images.add`): a read-only key is refused before `prepare` starts, and a
 * failure of `prepare` is audited as the command's result. Its success is
 * not: the command itself is audited when it runs.
 */
export async function prepareCommand<T>(name: CommandName, caller: CommandCaller, services: CommandServices, target: string | undefined, prepare: () => Promise<T>): Promise<T> {
  const audit = auditor(name, caller, services, target);
  refuseReadOnly(name, caller, audit);
  try {
    return await prepare();
  } catch (error) {
    audit(errorAnswer(error, 'INTERNAL').code);
    throw error;
  }
}

/** Writes a result of the command to the audit log, if it is an audited change. */
function auditor(name: string, caller: CommandCaller, services: CommandServices, target: string | undefined): (result: string) => void {
  const definition = COMMANDS[name as CommandName] as Command<z.ZodType>;
  return (result) => {
    if (definition.audited) services.audit.record({ actor: caller.actor.name, via: caller.via, command: name, ...(target !== undefined ? { target } : {}), result });
  };
}

function refuseReadOnly(name: string, caller: CommandCaller, audit: (result: string) => void): void {
  if (!commandChanges(name) || caller.actor.role === 'admin') return;
  audit('FORBIDDEN');
  throw new AdminError('FORBIDDEN', `${name} changes something; the key "${caller.actor.name}" is ${caller.actor.role} (a key with role "admin" may)`);
}

/** Whether a command changes something (read-only keys may not run it); false for unknown names. */
export function commandChanges(name: string): boolean {
  return Object.hasOwn(COMMANDS, name) && (COMMANDS[name as CommandName] as Command<z.ZodType>).changes;
}

/** Zod's issues as one line that names each field: `uid: expected a device uid …; unknown argument foo`. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const at = issue.path.map(String).join('.');
      if (issue.code === 'unrecognized_keys') return `unknown argument ${issue.keys.join(', ')}`;
      return at === '' ? issue.message : `${at}: ${issue.message}`;
    })
    .join('; ');
}

// --- asking other runners -------------------------------------------------

type Answer = EventOf<'OtaCommandResult' | 'OtaImageListResponse' | 'OtaGroupListResponse' | 'ApplicationManagementResponse' | 'CampaignCommandResult'>;

/** The request type each answer type belongs to, to tell "nobody handles this" up front. */
const REQUEST_FOR: Record<Answer['type'], (event: Event) => EventType> = {
  OtaCommandResult: (event) => event.type,
  OtaImageListResponse: () => 'OtaImageListRequest',
  OtaGroupListResponse: () => 'OtaGroupListRequest',
  ApplicationManagementResponse: () => 'ApplicationManagementRequest',
  CampaignCommandResult: () => 'CampaignCommand',
};

/** Which runner a request type is for, to say what is missing when none takes it. */
function runnerFor(requestType: EventType): string {
  if (requestType.startsWith('Ota')) return 'OTA';
  if (requestType.startsWith('Campaign')) return 'campaigns';
  return 'application';
}

/**
 * Sends a request event with a fresh correlation id and waits for the answering
 * event (or a TIMEOUT). Fails fast with UNAVAILABLE when no runner takes the request.
 */
function ask<K extends Answer['type']>(call: CommandCall<unknown>, answerType: K, build: (correlationId: string) => Event): Promise<EventOf<K>> {
  return askFor(call.services, call.caller.id, answerType, build);
}

/** `ask` for a request of the admin runner itself (`owner` names it among the pending requests). */
async function askFor<K extends Answer['type']>(services: CommandServices, owner: string, answerType: K, build: (correlationId: string) => Event): Promise<EventOf<K>> {
  const { broker, pending } = services;
  const { correlationId, answer } = pending.create(owner, answerType);
  const request = build(correlationId);
  const requestType = REQUEST_FOR[answerType](request);
  if (!broker.accepts(requestType)) {
    pending.fail(correlationId, new AdminError('UNAVAILABLE', `no runner handles ${requestType} (is the ${runnerFor(requestType)} runner running?)`));
  } else {
    broker.publish(request).catch((error: unknown) => {
      pending.fail(correlationId, new AdminError('OVERLOADED', `could not hand ${requestType} to the broker: ${(error as Error).message}`, { cause: error }));
    });
  }
  const event = (await answer) as Answer;
  if (event.type !== answerType) throw new AdminError('INTERNAL', `expected ${answerType}, got ${event.type}`);
  return event as EventOf<K>;
}

/** The OTA runner's groups and images, for the console's group membership cache. */
export async function fetchOtaCatalog(services: CommandServices): Promise<OtaCatalogView> {
  const [groups, images] = await Promise.all([
    askFor(services, 'console', 'OtaGroupListResponse', (correlationId) => ({ type: 'OtaGroupListRequest', correlationId })),
    askFor(services, 'console', 'OtaImageListResponse', (correlationId) => ({ type: 'OtaImageListRequest', correlationId })),
  ]);
  return { groups: groups.groups, images: images.images };
}

/** Group membership (fresh, or the last known when the OTA runner cannot answer) and the revocation list, for search answers. */
async function searchContext(services: CommandServices): Promise<SearchContext> {
  const membership = await services.console.membership.current(services.console.onMembershipError);
  const revocations = services.revocations;
  return {
    groupsOf: (uid) => membership.groupsOf(uid),
    groups: membership.groups,
    revoked: (uid) => revocations?.check({ uid }) !== undefined,
  };
}

function askCampaigns(call: CommandCall<unknown>, request: CampaignCommandRequest): Promise<EventOf<'CampaignCommandResult'>> {
  return ask(call, 'CampaignCommandResult', (correlationId) => ({ type: 'CampaignCommand', correlationId, request }));
}

/** The result of an OTA or campaign command, or its error with the answering runner's code. */
function commandResult(answer: EventOf<'OtaCommandResult' | 'CampaignCommandResult'>): unknown {
  if (answer.error) throw remoteError(answer.error);
  return answer.result ?? null;
}

/** Another runner's error, passed to the client with its own code. */
function remoteError(error: ErrorInfo): NucleonError {
  const code = typeof error.code === 'string' && /^[A-Z][A-Z0-9_]{0,63}$/.test(error.code) ? foreignCode(error.code) : 'INTERNAL';
  return new NucleonError(code, typeof error.message === 'string' ? error.message : 'failed');
}

function newPackage(
  correlationId: string,
  args: { id: string; imageType: 'primary' | 'secondary'; description?: string | undefined },
  source: EventOf<'OtaNewPackage'>['source'],
): Event {
  const event: EventOf<'OtaNewPackage'> = { type: 'OtaNewPackage', correlationId, id: args.id, imageType: args.imageType, source };
  if (args.description !== undefined) event.description = args.description;
  return event;
}
