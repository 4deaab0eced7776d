import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from './logger.js';

/**
 * How often Node checks header and request deadlines. Its default (30 s) would
 * let a slowloris client hold a socket for the deadline plus up to 30 s.
 */
export const HTTP_DEADLINE_CHECK_MS = 1000;

export interface HttpGuardOptions {
  /** Which server, as the `server` label: `ota`, `admin`, `mqtt_ws`. */
  name: string;
  /** All request headers must arrive within this (slowloris). */
  headersTimeoutMs: number;
  /** The whole request (headers and body) must arrive within this. */
  requestTimeoutMs: number;
  metrics: Registry;
  logger: Logger;
}

/** Why a connection was refused before a request was read; bounded label values. */
export type HttpRefusal = 'headers_timeout' | 'headers_too_large' | 'bad_request' | 'connection_error';

/**
 * Deadlines for slow clients, and an answer with a counted reason
 * (`nucleon_http_refused_total{server,reason}`) to every request the HTTP
 * parser refuses: 408 for a deadline, 431 for headers over Node's limit
 * (16 KiB), 400 for malformed requests. Create the server with
 * `connectionsCheckingInterval: HTTP_DEADLINE_CHECK_MS` so the deadlines bite on time.
 */
export function guardHttpServer(server: Server, options: HttpGuardOptions): void {
  server.headersTimeout = options.headersTimeoutMs;
  server.requestTimeout = options.requestTimeoutMs;
  const refused = refusedCounter(options.metrics);
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    const reason = refusalOf(error);
    refused.inc({ server: options.name, reason });
    options.logger.debug({ err: error, server: options.name, reason }, 'HTTP request refused');
    const status = { headers_timeout: 408, headers_too_large: 431, bad_request: 400, connection_error: 0 }[reason];
    // A reset peer has nobody to answer; a socket that already sent part of a response cannot take a status line.
    if (status === 0 || !socket.writable || (socket as Duplex & { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    const text = { 408: 'Request Timeout', 431: 'Request Header Fields Too Large', 400: 'Bad Request' }[status];
    socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
}

function refusalOf(error: NodeJS.ErrnoException): HttpRefusal {
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'headers_timeout';
  if (error.code === 'HPE_HEADER_OVERFLOW') return 'headers_too_large';
  if (typeof error.code === 'string' && error.code.startsWith('HPE_')) return 'bad_request';
  return 'connection_error';
}

/** Shared by every HTTP server of an instance, and by http-request.ts: registered once per registry. */
export function refusedCounter(registry: Registry): Counter<'server' | 'reason'> {
  const name = 'nucleon_http_refused_total';
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Counter) return existing;
  return new Counter({
    name,
    help: 'HTTP requests refused, per server and reason (before a request was read: headers_timeout, headers_too_large, bad_request, connection_error; after: bad_target, host_not_allowed, origin_not_allowed)',
    labelNames: ['server', 'reason'],
    registers: [registry],
  });
}
