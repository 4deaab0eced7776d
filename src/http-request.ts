import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Counter, Registry } from 'prom-client';
import { httpRefusedCounter } from './http-guard.js';
import type { Logger } from './logger.js';

/**
 * Why a request that was read is refused: the `reason` label of
 * `nucleon_http_refused_total`, next to the parser's reasons in http-guard.ts.
 */
export type RequestRefusalReason = 'bad_target' | 'host_not_allowed' | 'origin_not_allowed';

export interface RequestRefusal {
  status: number;
  reason: RequestRefusalReason;
  /** One line for the client; never echoes its input. */
  message: string;
}

/** Longest request target kept in a log line; the parser allows 16 KiB of them. */
const LOGGED_TARGET_CHARS = 200;

/**
 * `new URL` for input from the network: undefined instead of a throw. The HTTP
 * parser passes request targets such as `//[` and `http://[` that are not URLs,
 * and a throw in a 'request' or 'upgrade' listener ends the process.
 */
export function parseUrl(input: string, base?: string): URL | undefined {
  try {
    return new URL(input, base);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_INVALID_URL') return undefined;
    throw error;
  }
}

/** The request target as a URL (only path and query are meaningful), or undefined when it does not parse. */
export function requestUrl(request: IncomingMessage): URL | undefined {
  return parseUrl(request.url ?? '/', 'http://request.invalid');
}

export const BAD_TARGET: RequestRefusal = { status: 400, reason: 'bad_target', message: 'the request target is not a valid URL path' };

/**
 * Answers requests a server will not serve with a status and a one-line reason,
 * counts them in `nucleon_http_refused_total{server,reason}` and logs them at
 * debug without a stack: they are the client's mistake (or probing), not ours,
 * and an error line per request would let anyone flood the log.
 */
export class RequestRefusals {
  private readonly counter: Counter<'server' | 'reason'>;

  constructor(
    registry: Registry,
    private readonly server: string,
    private readonly logger: Logger,
  ) {
    this.counter = httpRefusedCounter(registry);
  }

  respond(request: IncomingMessage, response: ServerResponse, refusal: RequestRefusal): void {
    this.note(request, refusal);
    const body = `${refusal.message}\n`;
    response.writeHead(refusal.status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    response.end(request.method === 'HEAD' ? undefined : body);
  }

  /** The same for an upgrade request: answered on the raw socket, which is then closed. */
  upgrade(request: IncomingMessage, socket: Duplex, refusal: RequestRefusal): void {
    this.note(request, refusal);
    rejectUpgrade(socket, refusal.status, refusal.message);
  }

  private note(request: IncomingMessage, refusal: RequestRefusal): void {
    this.counter.inc({ server: this.server, reason: refusal.reason });
    this.logger.debug(
      {
        server: this.server,
        reason: refusal.reason,
        status: refusal.status,
        address: request.socket.remoteAddress,
        method: request.method,
        target: (request.url ?? '').slice(0, LOGGED_TARGET_CHARS),
        host: request.headers.host?.slice(0, LOGGED_TARGET_CHARS),
      },
      'HTTP request refused',
    );
  }
}

/** Answers an upgrade request with a plain HTTP error and closes the socket. */
export function rejectUpgrade(socket: Duplex, status: number, message: string, headers: Record<string, string> = {}): void {
  const extra = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  const body = `${message}\n`;
  socket.on('error', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`,
  );
}

/** After a failed handler: 500 when nothing was sent yet, else the response is cut (a partial body must not look complete). */
export function failResponse(response: ServerResponse): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  const body = 'internal error; see the server log\n';
  response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
  response.end(response.req.method === 'HEAD' ? undefined : body);
}
