import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { finished, pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TLSSocket } from 'node:tls';
import { ensureServerTls } from '../certs/index.js';
import { deviceCredentials, loginGuard, type CredentialStore, type LoginGuard } from '../devices/index.js';
import { httpRefusedCounter } from '../http-guard.js';
import { BAD_TARGET, RequestRefusals, requestUrl } from '../http-request.js';
import type { ImageInfo } from '../events.js';
import type { Logger } from '../logger.js';
import { isValidUid, parseVersionId } from '../protocol/index.js';
import type { Presented } from '../revocation/index.js';
import type { Runner, RunnerContext } from '../runner.js';
import { deadlinesOf, guardServer, httpServerOptions, tlsServerOptions } from '../server-guard.js';
import { listenOrThrow } from '../util/listen.js';
import { decideRange, ifRangeMatches, noneMatch } from './http-range.js';
import { otaMetrics, type OtaMetrics } from './metrics.js';
import type { OtaRunner } from './runner.js';

/** Ranges up to this size are read into one buffer of their size; larger ones are streamed. */
const SMALL_RANGE_BYTES = 64 * 1024;

interface Listening {
  server: http.Server | https.Server;
  logger: Logger;
  metrics: OtaMetrics;
  tls: boolean;
  requireAuth: boolean;
  passwords: CredentialStore;
  logins: LoginGuard;
  refusals: RequestRefusals;
}

type Identified = { kind: 'device'; uid: string | undefined } | { kind: 'refused'; status: 401 | 403 | 429 | 503; reason: string; retryAfterS?: number };

/**
 * Firmware download over HTTP(S) for devices that pull (nRF9160 FOTA asks for
 * small `Range`s): `GET` / `HEAD /images/<id>`. Bytes are streamed from the blob
 * store, only the requested range; progress is reported to the OTA runner.
 *
 * Device authentication (`ota.http.require_auth`): a TLS client certificate
 * from the Nucleon CA whose CN is the device uid, or HTTP Basic with the
 * device's MQTT password (`nucleon devices add`). The uid that downloads is the
 * authenticated one, or else the `uid` query parameter of the URL the device
 * was sent (used only to attribute progress, never to grant access).
 */
export class OtaHttpRunner implements Runner {
  readonly name = 'ota-http';
  readonly listens = true;
  private listening: Listening | undefined;

  constructor(
    private readonly ota: OtaRunner,
    /** The instance's revocation list (README "Revocation"): a revoked device downloads nothing either. */
    private readonly revocations?: { check(presented: Presented): unknown },
  ) {}

  async start(context: RunnerContext): Promise<void> {
    const { config, logger } = context;
    const settings = config.ota.http;
    const requireAuth = settings.require_auth;
    const deadlines = deadlinesOf(config.limits);
    let server: http.Server | https.Server;
    if (settings.tls) {
      const tls = await ensureServerTls(config.certs, logger);
      server = https.createServer({
        cert: tls.cert,
        key: tls.key,
        ca: tls.ca,
        minVersion: 'TLSv1.2',
        // Devices without a certificate may still download when auth is off;
        // when it is on, the handler refuses them with 401 instead of a TLS alert.
        requestCert: requireAuth,
        rejectUnauthorized: false,
        ...tlsServerOptions(deadlines),
        ...httpServerOptions(deadlines),
      });
    } else {
      server = http.createServer(httpServerOptions(deadlines));
      if (requireAuth) logger.warn('ota.http.tls is false: downloads authenticate with Basic passwords only, which cross the network in the clear unless a TLS proxy is in front');
    }
    // The port is open to anyone who can reach it: idle sockets from one
    // address must not take the slots of the fleet (test/system/abuse-idle-sockets.test.ts).
    const refused = httpRefusedCounter(context.metrics);
    guardServer(server, {
      deadlines,
      maxConnections: settings.max_connections,
      connectionsPerAddress: settings.connections_per_address,
      refused: (reason) => refused.inc({ server: 'ota', reason }),
      http: { name: 'ota', metrics: context.metrics },
      logger,
    });
    const listening: Listening = { server, logger, metrics: otaMetrics(context.metrics), tls: settings.tls, requireAuth, passwords: deviceCredentials(context.store), logins: loginGuard(context), refusals: new RequestRefusals(context.metrics, 'ota', logger) };
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      this.serve(listening, request, response).catch((error: unknown) => {
        logger.error({ err: error, url: request.url }, 'OTA HTTP request failed');
        if (!response.headersSent) send(response, 500);
        else response.destroy();
      });
    });
    await listenOrThrow(server, settings.host, settings.port, 'OTA HTTP downloads');
    server.on('error', (error) => logger.error({ err: error }, 'OTA HTTP server error'));
    this.listening = listening;
    logger.info({ url: this.url(), requireAuth }, 'OTA downloads listening');
  }

  async stop(): Promise<void> {
    const listening = this.listening;
    if (!listening) return;
    this.listening = undefined;
    const closed = new Promise<void>((resolve) => listening.server.close(() => resolve()));
    // Downloads in progress end now; devices resume with a Range request.
    listening.server.closeAllConnections();
    await closed;
  }

  address(): AddressInfo | undefined {
    const address = this.listening?.server.address();
    return typeof address === 'object' && address !== null ? address : undefined;
  }

  /** The base URL this server answers on (loopback when bound to all addresses). */
  url(): string | undefined {
    const address = this.address();
    if (!address || !this.listening) return undefined;
    const host = address.address === '0.0.0.0' || address.address === '::' ? '127.0.0.1' : address.address;
    return `${this.listening.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
  }

  private async serve(listening: Listening, request: IncomingMessage, response: ServerResponse): Promise<void> {
    const method = request.method ?? 'GET';
    response.on('finish', () => listening.metrics.httpRequests.inc({ method: metricMethod(method), status: String(response.statusCode) }));
    const url = requestUrl(request);
    if (url === undefined) return listening.refusals.respond(request, response, BAD_TARGET);
    const id = imageIdOf(url.pathname);
    if (id === undefined) return send(response, 404, 'not found: use /images/<id>');
    if (method !== 'GET' && method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      return send(response, 405, 'method not allowed');
    }
    const device = await this.identify(listening, request, url);
    if (device.kind === 'refused') {
      if (device.status === 401) response.setHeader('WWW-Authenticate', 'Basic realm="nucleon-ota", charset="UTF-8"');
      if (device.retryAfterS !== undefined) response.setHeader('Retry-After', String(device.retryAfterS));
      return send(response, device.status, device.reason);
    }
    const image = await this.ota.image(id);
    if (!image) return send(response, 404, `no image ${id}`);
    return this.sendImage(listening, request, response, image, device.uid);
  }

  private async sendImage(listening: Listening, request: IncomingMessage, response: ServerResponse, image: ImageInfo, uid: string | undefined): Promise<void> {
    const etag = `"${image.sha256}"`;
    const lastModified = new Date(image.dateAdded).toUTCString();
    response.setHeader('Accept-Ranges', 'bytes');
    response.setHeader('ETag', etag);
    response.setHeader('Last-Modified', lastModified);
    // Ids can be deleted and added again with other bytes: caches must revalidate.
    response.setHeader('Cache-Control', 'no-cache');
    if (noneMatch(request.headers['if-none-match'], etag)) {
      response.writeHead(304).end();
      return;
    }
    const rangeHeader = ifRangeMatches(header(request, 'if-range'), etag, lastModified) ? request.headers.range : undefined;
    const decision = decideRange(rangeHeader, image.size);
    if (decision.kind === 'unsatisfiable') {
      response.setHeader('Content-Range', `bytes */${image.size}`);
      return send(response, 416, 'range not satisfiable');
    }
    const start = decision.kind === 'partial' ? decision.start : 0;
    const end = decision.kind === 'partial' ? decision.end : image.size;
    // A campaign's byte budget: the first piece is counted before the status line, so a spent budget can still say 503.
    const firstPiece = Math.min(end - start, SMALL_RANGE_BYTES);
    const budget = request.method === 'HEAD' ? undefined : await this.ota.budgetFor(uid, image.id, firstPiece, 'http');
    if (budget?.kind === 'over') {
      response.removeHeader('Accept-Ranges');
      response.setHeader('Retry-After', String(Math.max(1, Math.ceil(budget.retryAfterMs / 1000))));
      return send(response, 503, 'the download budget of this campaign is spent; try again later');
    }
    if (budget?.kind === 'wait' && budget.ms > 0) await sleep(budget.ms);
    response.setHeader('Content-Type', 'application/octet-stream');
    response.setHeader('Content-Length', end - start);
    if (decision.kind === 'partial') response.setHeader('Content-Range', `bytes ${start}-${end - 1}/${image.size}`);
    const status = decision.kind === 'partial' ? 206 : 200;
    if (request.method === 'HEAD') {
      response.writeHead(status).end();
      return;
    }
    if (end - start <= SMALL_RANGE_BYTES) return this.sendSmallRange(response, status, image, uid, start, end);
    response.writeHead(status);
    const stream = this.ota.blobStore().createReadStream(image.sha256, { start, end });
    let sent = 0;
    stream.on('data', (chunk: Buffer) => (sent += chunk.length));
    try {
      // Only a campaign's download goes through the pacing stage; every other one is piped straight.
      if (budget?.kind === 'wait') await pipeline(stream, paceBytes(this.ota, uid, image.id, firstPiece), response);
      else await pipeline(stream, response);
    } finally {
      // Count what left, also when the device hung up part-way.
      if (sent > 0) {
        this.ota.recordServed(uid, image, sent, 'http');
      }
    }
  }

  /**
   * nRF9160 FOTA asks for a few KiB at a time. A read stream per request
   * would open the file and allocate a 64 KiB read buffer for 2 KiB of data
   * (200 devices downloading at once grew the process by ~110 MB); one read of
   * exactly the range through the blob store's cached file handle costs the
   * range's size. Read before the status line, so a failed read is a 500.
   */
  private async sendSmallRange(response: ServerResponse, status: number, image: ImageInfo, uid: string | undefined, start: number, end: number): Promise<void> {
    const data = await this.ota.blobStore().readRange(image.sha256, start, end);
    response.writeHead(status);
    response.end(data);
    await finished(response);
    this.ota.recordServed(uid, image, data.length, 'http');
  }

  private async identify(listening: Listening, request: IncomingMessage, url: URL): Promise<Identified> {
    const claimed = url.searchParams.get('uid') ?? undefined;
    const hinted = claimed !== undefined && isValidUid(claimed) ? claimed : undefined;
    if (!listening.requireAuth) return { kind: 'device', uid: hinted };
    const uid = certificateUid(request) ?? (await this.passwordUid(listening, request));
    if (typeof uid === 'object') return uid;
    if (uid === undefined) return { kind: 'refused', status: 401, reason: 'a device certificate from the Nucleon CA or the device password (HTTP Basic) is required' };
    if (claimed !== undefined && claimed !== uid) return { kind: 'refused', status: 403, reason: 'the uid parameter does not name the authenticated device' };
    if (this.revocations?.check({ uid, ...certificateSerial(request) }) !== undefined) return { kind: 'refused', status: 403, reason: 'this device is revoked' };
    return { kind: 'device', uid };
  }

  /**
   * HTTP Basic `uid:password`, checked by the credentials store (hashed,
   * constant-time) within the instance's login limits, shared with MQTT.
   */
  private async passwordUid(listening: Listening, request: IncomingMessage): Promise<string | undefined | Extract<Identified, { kind: 'refused' }>> {
    const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header(request, 'authorization') ?? '');
    if (!match?.[1]) return undefined;
    const decoded = Buffer.from(match[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) return undefined;
    const uid = decoded.slice(0, colon);
    if (!isValidUid(uid)) return undefined;
    const checked = await listening.logins.check(request.socket.remoteAddress, `device:${uid}`, () => listening.passwords.verify(uid, decoded.slice(colon + 1)));
    if (checked.ok) return uid;
    if (checked.reason === 'wrong_password') return undefined;
    if (checked.reason === 'password_checks_busy') return { kind: 'refused', status: 503, reason: 'too many logins at once; try again later', retryAfterS: 1 };
    return { kind: 'refused', status: 429, reason: 'too many failed logins; try again later', retryAfterS: listening.logins.retryAfterSeconds() };
  }
}

/** Rounds a streamed range may wait for its budget per piece before the download is cut (the device resumes with a Range). */
const MAX_BUDGET_ROUNDS = 100;

/**
 * Streams a large range at the campaign's byte budget: each piece read is
 * counted and waited for; the first `prepaid` bytes were counted before the
 * status line. After the headers a 503 is no longer possible, so a spent
 * budget means waiting, a bounded number of times.
 */
function paceBytes(ota: OtaRunner, uid: string | undefined, imageId: string, prepaid: number) {
  return async function* pace(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    let credit = prepaid;
    for await (const chunk of source) {
      const owed = chunk.length - Math.min(credit, chunk.length);
      credit -= chunk.length - owed;
      for (let round = 0; owed > 0; round++) {
        if (round >= MAX_BUDGET_ROUNDS) throw new Error(`the campaign budget stayed spent for ${MAX_BUDGET_ROUNDS} rounds`);
        const decision = await ota.budgetFor(uid, imageId, owed, 'http');
        if (decision.kind === 'free') break;
        if (decision.kind === 'wait') {
          if (decision.ms > 0) await sleep(decision.ms);
          break;
        }
        await sleep(decision.retryAfterMs);
      }
      yield chunk;
    }
  };
}

/** The CN of a client certificate the TLS layer verified against our CA. */
function certificateUid(request: IncomingMessage): string | undefined {
  const socket = request.socket as Partial<TLSSocket>;
  if (socket.authorized !== true || typeof socket.getPeerCertificate !== 'function') return undefined;
  const commonName = socket.getPeerCertificate().subject?.CN;
  return typeof commonName === 'string' && isValidUid(commonName) ? commonName : undefined;
}

/** The serial of a verified client certificate, for the revocation check. */
function certificateSerial(request: IncomingMessage): { serial?: string } {
  const socket = request.socket as Partial<TLSSocket>;
  if (socket.authorized !== true || typeof socket.getPeerCertificate !== 'function') return {};
  const serial = socket.getPeerCertificate().serialNumber;
  return typeof serial === 'string' ? { serial } : {};
}

/** `/images/<id>`; the id must parse as a version, which also rules out path tricks. */
function imageIdOf(pathname: string): string | undefined {
  const match = /^\/images\/([^/]+)$/.exec(pathname);
  if (!match?.[1]) return undefined;
  let id: string;
  try {
    id = decodeURIComponent(match[1]);
  } catch (error) {
    if (error instanceof URIError) return undefined;
    throw error;
  }
  return parseVersionId(id) ? id : undefined;
}

function header(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function send(response: ServerResponse, status: number, message = ''): void {
  const body = message === '' ? '' : `${message}\n`;
  response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  response.end(body);
}

/** Bounded label values: anything unusual is "other". */
function metricMethod(method: string): string {
  return method === 'GET' || method === 'HEAD' ? method : 'other';
}
