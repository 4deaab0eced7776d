import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from './logger.js';

export interface HttpGuardOptions {
  /** Which server, as the `server` label: `ota`, `admin`, `mqtt_ws`. */
  name: string;
  metrics: Registry;
  logger: Logger;
  /** Errors the connection guard (src/server-guard.ts) counted already: a refusal or a failed TLS handshake. */
  countedElsewhere: (error: Error, socket: Duplex) => boolean;
}

/** Why a connection was refused before a request was read; bounded label values. */
export type HttpRefusal = 'headers_timeout' | 'headers_too_large' | 'bad_request' | 'connection_error';

/**
 * An answer with a counted reason (`nucleon_http_refused_total{server,reason}`)
 * to every request the HTTP parser refuses: 408 for a deadline, 431 for
 * headers over Node's limit (16 KiB), 400 for malformed requests. The
 * deadlines themselves are set by `guardServer` (src/server-guard.ts).
 */
export function guardHttpRequests(server: Server, options: HttpGuardOptions): void {
  const refused = httpRefusedCounter(options.metrics);
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (options.countedElsewhere(error, socket)) {
      socket.destroy();
      return;
    }
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

/**
 * `nucleon_http_refused_total`, shared by every HTTP server of an instance
 * (registered once per registry): parser refusals, the connection guard's
 * refusals (address_limit, max_connections, tls_handshake_*), and requests
 * refused by http-request.ts (bad_target, host_not_allowed, origin_not_allowed).
 */
export function httpRefusedCounter(registry: Registry): Counter<'server' | 'reason'> {
  const name = 'nucleon_http_refused_total';
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Counter) return existing;
  return new Counter({
    name,
    help: 'HTTP connections and requests refused, per server and reason (before a request was read: headers_timeout, headers_too_large, bad_request, connection_error, address_limit, max_connections, tls_handshake_timeout, tls_handshake_failed; after: bad_target, host_not_allowed, origin_not_allowed)',
    labelNames: ['server', 'reason'],
    registers: [registry],
  });
}
