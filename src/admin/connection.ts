import type { WebSocket, RawData } from 'ws';
import { contain } from '../contain.js';
import { errorAnswer } from '../errors.js';
import type { Logger } from '../logger.js';
import { TokenBucket } from '../util/token-bucket.js';
import type { AuditVia } from './audit.js';
import type { AdminActor } from './auth.js';
import type { CommandCaller } from './commands.js';
import type { AdminMetrics } from './metrics.js';
import {
  AdminError,
  decodeRequest,
  encodeMessage,
  errorResponse,
  okResponse,
  type AdminEventMessage,
  type AdminRequest,
  type AdminResponse,
  type Encoding,
  type ErrorBody,
} from './protocol.js';

/** WebSocket close codes we send (4000-4999 are for applications, RFC 6455 section 7.4.2). */
export const CloseCode = {
  /** The client stopped reading: its send buffer filled up. */
  slowConsumer: 1013,
  messageTooBig: 1009,
  shuttingDown: 1001,
  /** A bug while handling a message (logged); the server and other clients go on. */
  internalError: 1011,
  unauthorized: 4401,
  rateLimited: 4429,
  loginTimeout: 4408,
} as const;

export interface ConnectionLimits {
  /** Larger frames close the connection with 1009 and a reason naming the limit. */
  maxMessageBytes: number;
  sendBufferBytes: number;
  messagesPerSecond: number;
  maxInFlight: number;
  loginTimeoutMs: number;
}

export interface ConnectionHooks {
  /** Checks a first-message login: the key's actor, or an error to send (and close with). */
  login(connection: AdminConnection, apiKey: unknown): { actor: AdminActor } | { error: AdminError; closeCode: number };
  /** Runs an authenticated command for its caller; the resolved value is the result. */
  dispatch(caller: CommandCaller, request: AdminRequest): Promise<unknown>;
  closed(connection: AdminConnection): void;
}

/** What a connection subscribed to with `events.subscribe`. */
export interface Subscription {
  kinds: ReadonlySet<string>;
  uid?: string;
  encoding: Encoding;
}

/**
 * One admin client. It owns its socket: decodes frames, enforces login, rate and
 * in-flight limits, answers each request in its own encoding, and drops itself
 * when it stops reading (bounded send buffer) instead of slowing anyone else.
 */
export class AdminConnection {
  /** Whose key this connection logged in with; undefined until it has. */
  private actor: AdminActor | undefined;
  subscription: Subscription | undefined;
  private inFlight = 0;
  /** `messagesPerSecond`, bursts to twice that. */
  private readonly messages: TokenBucket;
  private closed = false;
  private loginTimer: NodeJS.Timeout | undefined;
  private killTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly id: string,
    readonly address: string,
    private readonly socket: WebSocket,
    /** Set when the upgrade carried the key in a header. */
    actor: AdminActor | undefined,
    private readonly via: AuditVia,
    private readonly limits: ConnectionLimits,
    private readonly hooks: ConnectionHooks,
    private readonly metrics: AdminMetrics,
    private readonly logger: Logger,
  ) {
    this.actor = actor;
    this.messages = new TokenBucket({ perSecond: limits.messagesPerSecond, burst: limits.messagesPerSecond * 2, now: () => Date.now() });
    socket.on(
      'message',
      contain(logger, 'admin message', (data: RawData, isBinary: boolean) => this.onMessage(data, isBinary), () => this.close(CloseCode.internalError, 'internal error')),
    );
    socket.on('close', () => this.onClose());
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // Oversized frames and protocol violations land here; ws closes the socket itself (1009, 1002).
      // The client's mistake, not ours: the reason without a stack.
      this.logger.info({ client: this.id, address: this.address, reason: error.message, code: error.code }, 'admin connection error');
    });
    if (!actor) {
      this.loginTimer = setTimeout(() => {
        this.metrics.authFailures.inc({ reason: 'login_timeout' });
        this.close(CloseCode.loginTimeout, 'login timeout: send auth.login first');
      }, limits.loginTimeoutMs);
      this.loginTimer.unref();
    }
  }

  get authenticated(): boolean {
    return this.actor !== undefined;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Sends a pre-encoded frame (events are encoded once per encoding for all clients). */
  sendFrame(frame: string | Buffer, kind: string): void {
    if (this.closed) return;
    const size = typeof frame === 'string' ? Buffer.byteLength(frame) : frame.byteLength;
    if (this.socket.bufferedAmount + size > this.limits.sendBufferBytes) {
      this.metrics.slowClients.inc();
      this.logger.warn({ client: this.id, address: this.address, buffered: this.socket.bufferedAmount }, 'admin client stopped reading; disconnecting it');
      this.close(CloseCode.slowConsumer, 'send buffer full: the client is not reading');
      return;
    }
    this.metrics.messages.inc({ direction: 'out', kind });
    this.socket.send(frame);
  }

  sendEvent(message: AdminEventMessage, encoding: Encoding): void {
    this.sendFrame(encodeMessage(message, encoding), message.event);
  }

  /** Closes with a code and reason; a socket that does not finish the close handshake is cut after 2 s. */
  close(code: number, reason: string): void {
    if (this.closed) return;
    this.markClosed();
    this.socket.close(code, reason);
    this.killTimer = setTimeout(() => this.socket.terminate(), 2000);
    this.killTimer.unref();
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.closed) return;
    const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (buffer.byteLength > this.limits.maxMessageBytes) {
      this.metrics.messages.inc({ direction: 'in', kind: 'oversized' });
      this.close(CloseCode.messageTooBig, `message of ${buffer.byteLength} bytes exceeds the limit of ${this.limits.maxMessageBytes}`);
      return;
    }
    const decoded = decodeRequest(buffer, isBinary);
    const encoding: Encoding = isBinary ? 'cbor' : 'json';
    if (!decoded.ok) {
      this.metrics.messages.inc({ direction: 'in', kind: 'invalid' });
      this.reply(errorResponse(decoded.id, decoded.error), encoding);
      return;
    }
    const request = decoded.request;
    this.metrics.messages.inc({ direction: 'in', kind: this.authenticated ? request.cmd : 'unauthenticated' });
    if (!this.messages.tryTake()) {
      this.replyError(request, new AdminError('RATE_LIMITED', `more than ${this.limits.messagesPerSecond} messages per second; slow down`));
      return;
    }
    if (!this.actor) {
      this.handleLogin(request);
      return;
    }
    if (this.inFlight >= this.limits.maxInFlight) {
      this.replyError(request, new AdminError('TOO_MANY_PENDING', `at most ${this.limits.maxInFlight} requests in flight per connection`));
      return;
    }
    this.inFlight++;
    const caller: CommandCaller = { id: this.id, actor: this.actor, via: this.via, subscribe: (subscription) => (this.subscription = subscription) };
    this.hooks.dispatch(caller, request).then(
      (result) => {
        this.inFlight--;
        this.reply(okResponse(request.id, result), request.encoding, request.cmd);
      },
      (error: unknown) => {
        this.inFlight--;
        this.replyError(request, error);
      },
    );
  }

  private handleLogin(request: AdminRequest): void {
    if (request.cmd !== 'auth.login') {
      this.metrics.authFailures.inc({ reason: 'missing' });
      this.replyError(request, new AdminError('UNAUTHENTICATED', 'log in first: {"cmd":"auth.login","args":{"apiKey":"..."}} or send an Authorization header'));
      this.close(CloseCode.unauthorized, 'not authenticated');
      return;
    }
    const login = this.hooks.login(this, request.args.apiKey);
    if ('error' in login) {
      this.replyError(request, login.error);
      this.close(login.closeCode, login.error.message);
      return;
    }
    this.actor = login.actor;
    clearTimeout(this.loginTimer);
    this.reply(okResponse(request.id, { authenticated: true }), request.encoding, request.cmd);
  }

  private replyError(request: Pick<AdminRequest, 'id' | 'encoding'>, error: unknown): void {
    const body = errorBody(error);
    if (body.code === 'INTERNAL') this.logger.error({ client: this.id, err: error }, 'admin command failed');
    this.reply(errorResponse(request.id, body), request.encoding);
  }

  private reply(response: AdminResponse, encoding: Encoding, kind?: string): void {
    let frame: string | Buffer;
    try {
      frame = encodeMessage(response, encoding);
    } catch (error) {
      // A result JSON cannot carry (a BigInt from another runner): this runs in a promise callback, where a throw would be unhandled.
      this.logger.error({ client: this.id, err: error, kind }, 'admin answer could not be encoded');
      this.reply(errorResponse(response.id, errorBody(error)), encoding);
      return;
    }
    if (!response.ok) this.metrics.errors.inc({ code: response.error.code });
    this.sendFrame(frame, response.ok ? (kind ?? 'result') : 'error');
  }

  private onClose(): void {
    clearTimeout(this.killTimer);
    this.markClosed();
  }

  private markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.loginTimer);
    this.hooks.closed(this);
  }
}

/** The code and message a client sees; unexpected errors are INTERNAL without internals. */
export function errorBody(error: unknown): ErrorBody {
  return errorAnswer(error, 'INTERNAL', 'internal error; see the server log');
}
