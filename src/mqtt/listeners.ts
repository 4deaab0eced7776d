import { once } from 'node:events';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import net, { type Server, type Socket } from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Registry } from 'prom-client';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { ServerTls } from '../certs/index.js';
import type { Config } from '../config/index.js';
import { contain } from '../contain.js';
import { ListenError } from '../errors.js';
import { guardHttpServer, HTTP_DEADLINE_CHECK_MS } from '../http-guard.js';
import type { Logger } from '../logger.js';
import type { MqttMetrics } from './metrics.js';
import type { RateLimiter } from './rate-limit.js';

export type ListenerName = 'tls' | 'tcp' | 'ws';

/** Hands an accepted stream to aedes. */
export type Handle = (stream: Duplex, request?: IncomingMessage) => void;

export interface ListenerContext {
  mqtt: Config['mqtt'];
  tls: ServerTls | undefined;
  handle: Handle;
  limiter: RateLimiter;
  metrics: MqttMetrics;
  /** The instance registry, for the HTTP refusal counter of the WebSocket listener. */
  registry: Registry;
  logger: Logger;
}

/** One bound server and the raw sockets it has open, so stop() can end them. */
export class Listener {
  private readonly sockets = new Set<Socket>();
  private webSockets: WebSocketServer | undefined;

  constructor(
    readonly name: ListenerName,
    private readonly server: Server,
    private readonly context: ListenerContext,
  ) {
    // One 'close' handler for all sockets (it gets the socket as `this`):
    // a closure and a once() wrapper per socket cost ~0.2 KB of each idle connection.
    const sockets = this.sockets;
    function forget(this: Socket): void {
      sockets.delete(this);
    }
    // Refused before the TLS handshake, the expensive part of a connection flood.
    server.on('connection', (socket: Socket) => {
      if (!context.limiter.tryTake()) {
        context.metrics.refused.inc({ reason: 'rate_limited' });
        socket.destroy();
        return;
      }
      sockets.add(socket);
      socket.on('close', forget);
    });
  }

  attachWebSockets(webSockets: WebSocketServer): void {
    this.webSockets = webSockets;
  }

  get port(): number {
    const address = this.server.address();
    return typeof address === 'object' && address !== null ? address.port : 0;
  }

  async listen(host: string, port: number): Promise<string> {
    const what = { tls: 'MQTT over TLS', tcp: 'MQTT over TCP', ws: 'MQTT over WebSocket' }[this.name];
    try {
      this.server.listen(port, host);
      await once(this.server, 'listening');
    } catch (error) {
      throw new ListenError(what, `${host}:${port}`, error);
    }
    const address = this.server.address();
    const text = typeof address === 'object' && address !== null ? `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` : String(address);
    this.context.logger.info({ listener: this.name, address: text }, 'mqtt listening');
    // From now on an 'error' without a listener would end the process.
    this.server.on('error', (error) => this.context.logger.error({ err: error, listener: this.name }, 'mqtt listener error'));
    return text;
  }

  /** Stops accepting; `destroyRemaining` ends connections aedes did not take over (handshakes). */
  async close(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.webSockets) {
      const webSockets = this.webSockets;
      await new Promise<void>((resolve) => webSockets.close(() => resolve()));
    }
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}

export function createListener(name: ListenerName, context: ListenerContext): Listener {
  const { mqtt, metrics } = context;
  // Handing a socket to aedes runs in a listener callback: a throw there must cost one connection, not the process.
  const handle: Handle = contain<Parameters<Handle>>(context.logger, `mqtt ${name} connection`, context.handle, (stream) => stream.destroy());
  const timeoutMs = mqtt.limits.connect_timeout_ms;
  const tlsOptions = (): tls.TlsOptions => {
    if (!context.tls) throw new Error(`listener ${name} needs TLS certificates`);
    return {
      key: context.tls.key,
      cert: context.tls.cert,
      ca: context.tls.ca,
      minVersion: 'TLSv1.2',
      // Ask for a certificate, but let password devices without one in; the
      // authenticator checks `authorized` (README "Device identity").
      requestCert: mqtt.auth.client_certificates,
      rejectUnauthorized: false,
      handshakeTimeout: timeoutMs,
    };
  };

  if (name === 'tls') {
    const server = tls.createServer(tlsOptions(), (socket) => {
      metrics.connections.inc({ listener: name });
      socket.setNoDelay(true);
      handle(socket);
    });
    server.on('tlsClientError', (_error, socket) => {
      metrics.refused.inc({ reason: 'tls_handshake_failed' });
      // With a listener, Node leaves the socket open: a client that never sent a
      // ClientHello kept it past the handshake timeout (test/abuse-mqtt.test.ts).
      socket.destroy();
    });
    return new Listener(name, server, context);
  }

  if (name === 'tcp') {
    const server = net.createServer((socket) => {
      metrics.connections.inc({ listener: name });
      socket.setNoDelay(true);
      // A plain socket has no handshake timeout; aedes' connect timeout covers the wait for CONNECT.
      handle(socket);
    });
    return new Listener(name, server, context);
  }

  const checking = { connectionsCheckingInterval: Math.min(HTTP_DEADLINE_CHECK_MS, timeoutMs) };
  const httpServer = mqtt.ws.tls ? https.createServer({ ...tlsOptions(), ...checking }) : http.createServer(checking);
  guardHttpServer(httpServer, { name: 'mqtt_ws', headersTimeoutMs: timeoutMs, requestTimeoutMs: timeoutMs, metrics: context.registry, logger: context.logger });
  httpServer.on('request', (_request, response) => {
    response.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' }).end('MQTT over WebSocket: connect with a WebSocket client\n');
  });
  const listener = new Listener(name, httpServer, context);
  const webSockets = new WebSocketServer({
    server: httpServer,
    // An MQTT packet plus its fixed header (at most 5 bytes) fits in one frame.
    maxPayload: mqtt.limits.max_packet_size + 5,
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
  });
  // ws re-emits its HTTP server's 'error' here; without a listener that is an uncaught throw
  // (a port in use crashed the start instead of failing it with LISTEN_FAILED). The Listener
  // already reports the server's errors, so this only keeps the emit from throwing.
  webSockets.on('error', (error) => context.logger.debug({ err: error, listener: name }, 'WebSocket server error (reported by its HTTP server)'));
  webSockets.on('connection', (socket, request) => {
    metrics.connections.inc({ listener: name });
    const stream = createWebSocketStream(socket);
    // The stream reports a closed socket as an error; aedes handles it as a disconnect.
    handle(stream, request);
  });
  listener.attachWebSockets(webSockets);
  return listener;
}
