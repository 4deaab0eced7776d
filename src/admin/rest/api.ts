import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { errorAnswer } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { keyFromHeaders, type AdminActor, type AdminKeys, type AuthLimiter } from '../auth.js';
import { describeIssues, prepareCommand, runCommand, type CommandCaller, type CommandServices } from '../commands.js';
import { AdminError, isPlainObject, toJson } from '../protocol.js';
import { argsSchemaOf, jsonSchemaOf, openApiDocument } from './openapi.js';
import { API_PREFIX, argsInQuery, fastifyPath, pathParams, REST_ROUTES, type RestRoute } from './routes.js';
import { imageUploadArgs } from './upload-args.js';

export interface RestApiOptions {
  services: CommandServices;
  /** The admin keys; the one that matched names the actor of each request (README "Admin keys and roles"). */
  keys: AdminKeys;
  limiter: AuthLimiter;
  /** Largest JSON body (`admin.max_message_bytes`, the WebSocket's frame limit). */
  jsonBodyLimit: number;
  /** Largest streamed image (`admin.max_upload_bytes`). */
  maxUploadBytes: number;
  /** Commands running at once over REST, all callers together (`admin.max_pending_per_client`: REST counts as one client). */
  maxInFlight: number;
  version: string;
  logger: Logger;
}

/** The HTTP status of each error code; a code not listed (an application runner's own) is 500. */
const STATUS: Record<string, number> = {
  INVALID_ARGUMENT: 400,
  BAD_MESSAGE: 400,
  UNAUTHENTICATED: 401,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  VERSION_DOWNGRADE: 409,
  CAMPAIGN_EXISTS: 409,
  CAMPAIGN_STATE: 409,
  CAMPAIGN_OVERLAP: 409,
  CAMPAIGN_EMPTY: 409,
  TOO_LARGE: 413,
  RATE_LIMITED: 429,
  TOO_MANY_PENDING: 429,
  UNAVAILABLE: 503,
  OVERLOADED: 503,
  TIMEOUT: 504,
};

/**
 * Every REST caller shares one owner for uploads and pending requests: REST
 * requests never see each other's upload ids, and the upload manager's
 * per-owner limit then bounds the images streaming in at once.
 */
const REST_OWNER = 'rest';

/** Thrown to answer with a status the code alone does not give (411). */
class StatusError extends AdminError {
  constructor(
    readonly status: number,
    ...rest: ConstructorParameters<typeof AdminError>
  ) {
    super(...rest);
  }
}

/**
 * The REST API under /api/v1 (README "REST API"): a fastify instance that
 * never listens; the admin runner's one HTTP server hands it the requests
 * under /api/ after its Host check. Each route runs an admin command with the
 * arguments parsed by that command's own zod schema.
 */
export class RestApi {
  private readonly app: FastifyInstance;
  private readonly document: string;
  private inFlight = 0;
  /** Who sent each authenticated request (set by the onRequest hook). */
  private readonly actors = new WeakMap<FastifyRequest, AdminActor>();

  constructor(private readonly options: RestApiOptions) {
    this.document = JSON.stringify(openApiDocument(options.version));
    this.app = Fastify({ logger: false, bodyLimit: options.jsonBodyLimit, return503OnClosing: true, requestIdHeader: false });
  }

  async start(): Promise<void> {
    const app = this.app;
    app.addHook('onRequest', async (request, reply) => this.authenticate(request, reply));
    app.addHook('onSend', async (_request, reply, payload) => {
      reply.header('cache-control', 'no-store');
      reply.header('x-content-type-options', 'nosniff');
      return payload;
    });
    app.setErrorHandler((error, request, reply) => this.fail(error, request, reply));
    app.setNotFoundHandler((request, reply) => {
      this.fail(new AdminError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0] ?? ''}; GET ${API_PREFIX}/openapi.json lists them`), request, reply);
    });
    app.get(`${API_PREFIX}/openapi.json`, { config: { public: true } }, async (_request, reply) => reply.type('application/json; charset=utf-8').send(this.document));
    for (const route of REST_ROUTES) {
      if (route.body === 'stream') continue;
      app.route({ method: route.method, url: fastifyPath(route.path), handler: async (request, reply) => this.answer(reply, route, await this.bounded(() => this.runRoute(route, request))) });
    }
    await app.register(async (scope) => {
      // Only here is a body a raw stream: the image goes to disk as it arrives.
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));
      for (const route of REST_ROUTES) {
        if (route.body !== 'stream') continue;
        scope.route({ method: route.method, url: fastifyPath(route.path), handler: async (request, reply) => this.answer(reply, route, await this.bounded(() => this.uploadImage(route, request))) });
      }
    });
    await app.ready();
  }

  /** Serves one request under /api/ (the caller has admitted its Host). */
  handle(request: IncomingMessage, response: ServerResponse): void {
    this.app.routing(request, response);
  }

  async stop(): Promise<void> {
    await this.app.close();
  }

  private async authenticate(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if ((request.routeOptions.config as { public?: boolean }).public === true) return;
    const { keys, limiter, services } = this.options;
    const key = keyFromHeaders(request.raw);
    if (key === undefined) {
      services.metrics.authFailures.inc({ reason: 'missing' });
      reply.header('www-authenticate', 'Bearer');
      throw new AdminError('UNAUTHENTICATED', 'send the admin API key: Authorization: Bearer <key>');
    }
    // The right key is never refused, however many wrong ones came from its block (see AuthLimiter).
    const actor = keys.match(key);
    if (actor) {
      this.actors.set(request, actor);
      return;
    }
    const address = request.raw.socket.remoteAddress ?? 'unknown';
    if (limiter.limited(address)) {
      services.metrics.authFailures.inc({ reason: 'rate_limited' });
      reply.header('retry-after', String(limiter.retryAfterSeconds(address)));
      throw new AdminError('RATE_LIMITED', 'too many failed logins; wrong keys are refused until Retry-After');
    }
    limiter.recordFailure(address);
    services.metrics.authFailures.inc({ reason: 'invalid' });
    this.options.logger.warn({ address, via: 'rest' }, 'admin REST request with a wrong API key');
    reply.header('www-authenticate', 'Bearer error="invalid_token"');
    throw new AdminError('UNAUTHORIZED', 'invalid API key');
  }

  /** Runs a command unless too many already run: each may hold a pending request or an upload file. */
  private async bounded<T>(run: () => Promise<T>): Promise<T> {
    if (this.inFlight >= this.options.maxInFlight) throw new AdminError('TOO_MANY_PENDING', `at most ${this.options.maxInFlight} REST requests in flight (admin.max_pending_per_client)`);
    this.inFlight++;
    try {
      return await run();
    } finally {
      this.inFlight--;
    }
  }

  /** The command caller of an authenticated request: its key's actor, audited as via `rest`. */
  private callerOf(request: FastifyRequest): CommandCaller {
    const actor = this.actors.get(request);
    // The onRequest hook refuses every request without a matching key, so this is a bug, never a client's doing.
    if (!actor) throw new Error(`REST request ${request.method} ${request.url} reached its route without an authenticated key`);
    return { id: REST_OWNER, actor, via: 'rest' };
  }

  private async runRoute(route: RestRoute, request: FastifyRequest): Promise<unknown> {
    const caller = this.callerOf(request);
    this.options.services.metrics.messages.inc({ direction: 'in', kind: route.command });
    return runCommand(route.command, { ...argsFrom(route, request), ...pathValues(route, request) }, caller, this.options.services, 'json');
  }

  /**
   * PUT /images/{id}: the body goes to the upload manager chunk by chunk as it
   * arrives, then to `images.add`. The key's role is checked before a byte is
   * read, and a failed upload is audited as `images.add` like the command.
   */
  private async uploadImage(route: RestRoute, request: FastifyRequest): Promise<unknown> {
    const { services, maxUploadBytes } = this.options;
    const caller = this.callerOf(request);
    services.metrics.messages.inc({ direction: 'in', kind: route.command });
    const parsed = imageUploadArgs.safeParse({ ...argsFrom(route, request), ...pathValues(route, request) });
    const args = await prepareCommand('images.add', caller, services, parsed.success ? parsed.data.id : undefined, async () => {
      if (!parsed.success) throw new AdminError('INVALID_ARGUMENT', describeIssues(parsed.error));
      const header = request.headers['content-length'];
      if (header === undefined) throw new StatusError(411, 'INVALID_ARGUMENT', 'send Content-Length: the image size is checked before its bytes are read');
      const size = Number(header);
      if (size > maxUploadBytes) throw new AdminError('TOO_LARGE', `the image of ${size} bytes exceeds admin.max_upload_bytes (${maxUploadBytes})`);
      if (!(request.body instanceof Readable) || size < 1) throw new AdminError('INVALID_ARGUMENT', 'the body is empty: send the image bytes');
      const { id, imageType, description, sha256 } = parsed.data;
      const uploadId = await this.receive(request.body, size, sha256);
      return { id, imageType, uploadId, ...(description !== undefined ? { description } : {}) };
    });
    try {
      return await runCommand('images.add', args, caller, services, 'json');
    } finally {
      await services.uploads.drop(args.uploadId);
    }
  }

  /** Streams a body into a new upload; a body cut short or refused leaves no upload file behind. */
  private async receive(body: Readable, size: number, sha256: string | undefined): Promise<string> {
    const { uploads, metrics } = this.options.services;
    const { uploadId } = await uploads.begin(REST_OWNER, size, sha256);
    try {
      let offset = 0;
      for await (const chunk of body as AsyncIterable<Buffer>) {
        await uploads.chunk(REST_OWNER, uploadId, offset, chunk);
        offset += chunk.byteLength;
        metrics.uploadBytes.inc(chunk.byteLength);
      }
    } catch (error) {
      await uploads.drop(uploadId);
      throw error;
    }
    return uploadId;
  }

  private answer(reply: FastifyReply, route: RestRoute, result: unknown): FastifyReply {
    return reply
      .code(route.status ?? 200)
      .type('application/json; charset=utf-8')
      .send(toJson(result ?? null));
  }

  private fail(error: unknown, request: FastifyRequest, reply: FastifyReply): void {
    const { code, message, status: given } = restError(error);
    const status = given ?? (error instanceof StatusError ? error.status : (STATUS[code] ?? 500));
    if (status >= 500 && status !== 503 && status !== 504) this.options.logger.error({ err: error, method: request.method, url: request.url }, 'admin REST request failed');
    this.options.services.metrics.errors.inc({ code });
    // A refused image body is not read (a 413, a read-only key): close rather than drain it for the next request.
    if (status === 413 || (request.body instanceof Readable && !request.body.readableEnded)) reply.header('connection', 'close');
    void reply
      .code(status)
      .type('application/json; charset=utf-8')
      .send(JSON.stringify({ error: { code, message } }));
  }
}

/** The code and message of any failure, fastify's own (bad JSON, wrong media type, too large) included. */
function restError(error: unknown): { code: string; message: string; status?: number } {
  const fastifyError = error as Partial<FastifyError>;
  if (typeof fastifyError.code === 'string' && fastifyError.code.startsWith('FST_') && typeof fastifyError.statusCode === 'number') {
    if (fastifyError.statusCode === 413) return { code: 'TOO_LARGE', message: 'the JSON body exceeds admin.max_message_bytes' };
    if (fastifyError.statusCode === 415) return { code: 'BAD_MESSAGE', message: `${fastifyError.message}: JSON routes take application/json, PUT ${API_PREFIX}/images/{id} application/octet-stream`, status: 415 };
    if (fastifyError.statusCode < 500) return { code: 'BAD_MESSAGE', message: fastifyError.message ?? 'bad request' };
  }
  if (error instanceof SyntaxError) return { code: 'BAD_MESSAGE', message: `the body is not valid JSON: ${error.message}` };
  return errorAnswer(error, 'INTERNAL', 'internal error; see the server log');
}

/** The path parameters, named as the command's arguments. */
function pathValues(route: RestRoute, request: FastifyRequest): Record<string, string> {
  const params = request.params as Record<string, string>;
  return Object.fromEntries(pathParams(route.path).map((name) => [name, params[name] ?? '']));
}

/** The non-path arguments: the query string (typed by the command's schema) or the JSON body object. */
function argsFrom(route: RestRoute, request: FastifyRequest): Record<string, unknown> {
  const query = request.query as Record<string, unknown>;
  if (argsInQuery(route)) {
    if (route.body !== 'stream' && request.body !== undefined) throw new AdminError('INVALID_ARGUMENT', `${route.method} takes its arguments in the query string, not a body`);
    return coerceQuery(route, query);
  }
  const extra = Object.keys(query);
  if (extra.length > 0) throw new AdminError('INVALID_ARGUMENT', `unknown query parameter ${extra.join(', ')}: ${route.method} takes its arguments in the JSON body`);
  const body = request.body ?? {};
  if (!isPlainObject(body)) throw new AdminError('INVALID_ARGUMENT', 'the body must be a JSON object');
  const clash = pathParams(route.path).filter((name) => Object.hasOwn(body, name));
  if (clash.length > 0) throw new AdminError('INVALID_ARGUMENT', `${clash.join(', ')} is given in the path; leave it out of the body`);
  return body;
}

/** Query values are text: a boolean or number argument (per the command's JSON Schema) is converted; anything else is left for zod to refuse. */
function coerceQuery(route: RestRoute, query: Record<string, unknown>): Record<string, unknown> {
  const types = queryTypesOf(route);
  const args: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(query)) {
    const type = types.get(name);
    if (typeof value === 'string' && type === 'boolean' && (value === 'true' || value === 'false')) args[name] = value === 'true';
    else if (typeof value === 'string' && (type === 'integer' || type === 'number') && value.trim() !== '' && Number.isFinite(Number(value))) args[name] = Number(value);
    else args[name] = value;
  }
  return args;
}

const queryTypes = new Map<RestRoute, ReadonlyMap<string, string | undefined>>();

/** Each argument's JSON Schema type, worked out once per route. */
function queryTypesOf(route: RestRoute): ReadonlyMap<string, string | undefined> {
  let types = queryTypes.get(route);
  if (!types) {
    const properties = jsonSchemaOf(argsSchemaOf(route)).properties ?? {};
    types = new Map(Object.entries(properties).map(([name, schema]) => [name, (schema as { type?: string }).type]));
    queryTypes.set(route, types);
  }
  return types;
}
