import type { Server as HttpServer } from 'node:http';
import type { Server as NetServer, Socket } from 'node:net';
import { Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Registry } from 'prom-client';
import type { Config } from './config/index.js';
import { guardHttpRequests } from './http-guard.js';
import type { Logger } from './logger.js';
import { addressBlock, SlotsPerAddress } from './util/address.js';

/**
 * The one place that says how long a client may take, for every listener:
 * MQTT over TLS, TCP and WebSocket, OTA HTTP(S), admin HTTP (README "Limits
 * and protection"). Each server is created with `tlsServerOptions` /
 * `httpServerOptions` and then handed to `guardServer`.
 */
export interface Deadlines {
  tlsHandshakeMs: number;
  httpHeadersMs: number;
  httpRequestMs: number;
  httpKeepAliveMs: number;
  httpIdleMs: number;
}

export function deadlinesOf(limits: Config['limits']): Deadlines {
  return {
    tlsHandshakeMs: limits.tls_handshake_timeout_ms,
    httpHeadersMs: limits.http_headers_timeout_ms,
    httpRequestMs: limits.http_request_timeout_ms,
    httpKeepAliveMs: limits.http_keep_alive_timeout_ms,
    httpIdleMs: limits.http_idle_timeout_ms,
  };
}

/**
 * How often Node checks header and request deadlines. Its default (30 s) would
 * let a slowloris client hold a socket for the deadline plus up to 30 s.
 */
export const HTTP_DEADLINE_CHECK_MS = 1000;

/** For `tls.createServer` / `https.createServer`: Node reads the handshake deadline (default 120 s) only there. */
export function tlsServerOptions(deadlines: Deadlines): { handshakeTimeout: number } {
  return { handshakeTimeout: deadlines.tlsHandshakeMs };
}

/** For `http.createServer` / `https.createServer`: the deadline checker's interval, and the deadlines Node checks at creation. */
export function httpServerOptions(deadlines: Deadlines): { connectionsCheckingInterval: number; headersTimeout: number; requestTimeout: number } {
  return {
    connectionsCheckingInterval: Math.min(HTTP_DEADLINE_CHECK_MS, deadlines.httpHeadersMs),
    headersTimeout: deadlines.httpHeadersMs,
    requestTimeout: deadlines.httpRequestMs,
  };
}

/** Why a connection was closed before its protocol (MQTT, HTTP) saw it; bounded label values. */
export type ConnectionRefusal = 'rate_limited' | 'address_limit' | 'max_connections' | 'tls_handshake_timeout' | 'tls_handshake_failed';

/**
 * The error a refused socket is destroyed with. The TLS and HTTP layers above
 * the socket report it back (`tlsClientError`, `clientError`); recognising it
 * there is what keeps a refusal counted once, with its own reason.
 */
export class RefusedConnection extends Error {
  constructor(readonly reason: ConnectionRefusal) {
    super(`connection refused: ${reason}`);
    this.name = 'RefusedConnection';
  }
}

export interface GuardOptions {
  deadlines: Deadlines;
  /** Connections open at once per address block (src/util/address.ts); 0 or absent: no limit. */
  connectionsPerAddress?: number;
  /** Connections open at once on this server; absent: no limit. */
  maxConnections?: number;
  /** Asked for each new connection within its address limit (a rate limit); false refuses it as `rate_limited`. */
  admit?: () => boolean;
  /** Counts one refused connection with its reason; called once per refusal. */
  refused: (reason: ConnectionRefusal) => void;
  /** HTTP servers: header, request, keep-alive and idle deadlines, and parser refusals counted under this name. */
  http?: { name: string; metrics: Registry };
  logger: Logger;
}

/** Keeps a `RefusedConnection` (our own doing, already counted) from being an uncaught 'error' of the raw socket. */
function ignoreRefusal(this: Socket, error: Error): void {
  if (!(error instanceof RefusedConnection)) this.destroy(error);
}

/**
 * Applies the limits to a server before it listens: per-address and total
 * connection caps and the `admit` check before any TLS or HTTP work; the TLS
 * handshake deadline (a handshake that fails or times out is closed and
 * counted); for HTTP, the header, request, keep-alive and idle deadlines.
 */
export function guardServer(server: NetServer, options: GuardOptions): void {
  const { refused } = options;
  const perAddress = options.connectionsPerAddress ? new SlotsPerAddress(options.connectionsPerAddress) : undefined;
  // One function for every socket (it gets the socket as `this`): a closure per
  // socket costs memory on each idle connection. remoteAddress is cached by then.
  function forget(this: Socket): void {
    perAddress?.release(addressBlock(this.remoteAddress));
  }
  // Prepended: this runs before the TLS or HTTP layer takes the socket.
  server.prependListener('connection', (socket: Socket) => {
    let reason: ConnectionRefusal | undefined;
    const block = perAddress ? addressBlock(socket.remoteAddress) : '';
    if (perAddress && !perAddress.tryTake(block)) reason = 'address_limit';
    else if (options.admit && !options.admit()) {
      perAddress?.release(block);
      reason = 'rate_limited';
    }
    if (reason === undefined) {
      if (perAddress) socket.on('close', forget);
      return;
    }
    refused(reason);
    socket.on('error', ignoreRefusal);
    socket.destroy(new RefusedConnection(reason));
  });
  if (options.maxConnections !== undefined) {
    server.maxConnections = options.maxConnections;
    // Node closes these before any 'connection' event.
    server.on('drop', () => refused('max_connections'));
  }

  if (server instanceof TlsServer) guardTls(server, options);
  if (options.http) {
    const http = server as HttpServer;
    const { deadlines } = options;
    http.headersTimeout = deadlines.httpHeadersMs;
    http.requestTimeout = deadlines.httpRequestMs;
    // Idle keep-alive connections give their slot back (Node waits this plus 1 s).
    http.keepAliveTimeout = deadlines.httpKeepAliveMs;
    // A response nobody reads any more; upgraded sockets (WebSocket) are exempt, ws clears it.
    http.setTimeout(deadlines.httpIdleMs);
    guardHttpRequests(http, { name: options.http.name, metrics: options.http.metrics, logger: options.logger, countedElsewhere: countedByGuard });
  }
}

/** Sockets whose TLS failure was counted here; the HTTPS layer reports the same failure again as a 'clientError'. */
const handshakeFailed = new WeakSet<object>();

/** Whether a 'clientError' is a TLS failure or refusal already counted by the guard. */
function countedByGuard(error: Error, socket: object): boolean {
  return error instanceof RefusedConnection || handshakeFailed.has(socket);
}

function guardTls(server: TlsServer, options: GuardOptions): void {
  // Prepended, before https' own listener, which passes the error on as a 'clientError'.
  server.prependListener('tlsClientError', (error: NodeJS.ErrnoException, socket: TLSSocket) => {
    handshakeFailed.add(socket);
    if (!(error instanceof RefusedConnection)) {
      const reason = error.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'tls_handshake_timeout' : 'tls_handshake_failed';
      options.refused(reason);
      options.logger.debug({ err: error, reason, remoteAddress: socket.remoteAddress }, 'TLS handshake failed');
    }
    // With a listener, Node leaves the socket open: a client that never sent a
    // ClientHello kept it past the handshake deadline (test/system/abuse-mqtt.test.ts).
    socket.destroy();
  });
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    // A client certificate that names our CA as issuer but fails its signature
    // check leaves an error on OpenSSL's queue; Node reports it on the socket's
    // first read, so MQTT never read the CONNECT and counted a `protocol_error`
    // (OTA: a `connection_error`). Reading the certificate clears the queue,
    // and the authenticator refuses it as `untrusted_certificate` (CONNACK 5).
    socket.getPeerCertificate();
  });
}
