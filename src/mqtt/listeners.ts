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
import type { Logger } from '../logger.js';
import { deadlinesOf, guardServer, httpServerOptions, tlsServerOptions, type Deadlines } from '../server-guard.js';
import { listenOrThrow } from '../util/listen.js';
import type { MqttMetrics } from './metrics.js';
import type { RateLimiter } from './rate-limit.js';

export type ListenerName = 'tls' | 'tcp' | 'ws';

/** Hands an accepted stream to aedes. */
export type Handle = (stream: Duplex, request?: IncomingMessage) => void;

export interface ListenerContext {
  mqtt: Config['mqtt'];
  /** The deadlines every listener shares (`[limits]`). */
  limits: Config['limits'];
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
    // After the guard (createListener), which destroys the sockets it refuses.
    server.on('connection', (socket: Socket) => {
      if (socket.destroyed) return;
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
    await listenOrThrow(this.server, host, port, what);
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

export function createListener(name: ListenerName, outer: ListenerContext): Listener {
  // Handing a socket to aedes runs in a listener callback: a throw there must cost one connection, not the process.
  const context: ListenerContext = { ...outer, handle: contain<Parameters<Handle>>(outer.logger, `mqtt ${name} connection`, outer.handle, (stream) => stream.destroy()) };
  const deadlines = deadlinesOf(context.limits);
  const server = createServer(name, context, deadlines);
  const { mqtt, metrics } = context;
  // Refused before the TLS handshake, the expensive part of a connection flood;
  // each refusal counted once, in nucleon_mqtt_refused_total.
  guardServer(server, {
    deadlines,
    connectionsPerAddress: mqtt.limits.connections_per_address,
    admit: () => context.limiter.tryTake(),
    refused: (reason) => metrics.refused.inc({ reason }),
    ...(name === 'ws' ? { http: { name: 'mqtt_ws', metrics: context.registry } } : {}),
    logger: context.logger,
  });
  const listener = new Listener(name, server, context);
  if (server instanceof http.Server || server instanceof https.Server) listener.attachWebSockets(webSocketsOn(server, context));
  return listener;
}

function createServer(name: ListenerName, context: ListenerContext, deadlines: Deadlines): Server {
  const { mqtt, handle, metrics } = context;
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
      ...tlsServerOptions(deadlines),
    };
  };

  if (name === 'tls') {
    return tls.createServer(tlsOptions(), (socket) => {
      metrics.connections.inc({ listener: name });
      socket.setNoDelay(true);
      handle(socket);
    });
  }

  if (name === 'tcp') {
    return net.createServer((socket) => {
      // Refused by the guard, which runs first.
      if (socket.destroyed) return;
      metrics.connections.inc({ listener: name });
      socket.setNoDelay(true);
      // A plain socket has no handshake; aedes' connect timeout covers the wait for CONNECT.
      handle(socket);
    });
  }

  const httpServer = mqtt.ws.tls ? https.createServer({ ...tlsOptions(), ...httpServerOptions(deadlines) }) : http.createServer(httpServerOptions(deadlines));
  httpServer.on('request', (_request, response) => {
    response.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' }).end('MQTT over WebSocket: connect with a WebSocket client\n');
  });
  return httpServer;
}

function webSocketsOn(httpServer: http.Server, context: ListenerContext): WebSocketServer {
  const { mqtt, handle, metrics } = context;
  const webSockets = new WebSocketServer({
    server: httpServer,
    // An MQTT packet plus its fixed header (at most 5 bytes) fits in one frame.
    maxPayload: mqtt.limits.max_packet_size + 5,
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
  });
  // ws re-emits its HTTP server's 'error' here; without a listener that is an uncaught throw
  // (a port in use crashed the start instead of failing it with LISTEN_FAILED). The Listener
  // already reports the server's errors, so this only keeps the emit from throwing.
  webSockets.on('error', (error) => context.logger.debug({ err: error, listener: 'ws' }, 'WebSocket server error (reported by its HTTP server)'));
  webSockets.on('connection', (socket, request) => {
    metrics.connections.inc({ listener: 'ws' });
    const stream = createWebSocketStream(socket);
    // The stream reports a closed socket as an error; aedes handles it as a disconnect.
    handle(stream, request);
  });
  return webSockets;
}
