// The console's one connection to Nucleon: the admin WebSocket (/ws, JSON
// frames). It logs in with the first message (browsers cannot set headers on a
// WebSocket), pairs answers with requests by id, keeps the live subscription
// and sends it again after every reconnect, and reconnects on its own with
// backoff. Views never touch the socket: they call request() and onEvent().
import type { LiveEvent, LiveKind } from './types.js';

const SUBPROTOCOL = 'nucleon.admin.v1';
export const KEY_STORAGE = 'nucleon.admin.key';
/** Requests in flight at once; the server allows admin.max_pending_per_client, this is our own bound. */
const MAX_IN_FLIGHT = 256;
const REQUEST_TIMEOUT_MS = 30_000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15_000;
/** Uploads send many chunks: RATE_LIMITED answers are waited out this many times. */
const RATE_LIMIT_RETRIES = 10;
/** Close codes after which we go back to the login form instead of retrying: wrong key, too many attempts. */
const LOGGED_OUT_CODES = new Set([4401, 4429]);
/** WebSocket.OPEN, without needing the global (the unit tests run in Node with a stand-in socket). */
const OPEN = 1;

export type ConnectionState =
  | { kind: 'logged-out'; problem?: string }
  | { kind: 'connecting' }
  | { kind: 'connected' }
  | { kind: 'reconnecting'; retryAt: number; attempt: number; reason: string };

/** An error answer: the server's stable code and message, and the command that failed. */
export class CommandError extends Error {
  constructor(
    readonly cmd: string,
    readonly code: string,
    message: string,
  ) {
    super(`${message} [${code}]`);
    this.name = 'CommandError';
  }
}

export interface Subscription {
  kinds: readonly LiveKind[];
  uid?: string;
}

interface Waiting {
  cmd: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** What the client uses of a browser WebSocket (and a unit test's stand-in provides). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open', listener: () => void): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (event: { code: number; reason: string }) => void): void;
}

/** sessionStorage, or a test's map. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface ClientOptions {
  url: string;
  storage: StorageLike;
  now?: () => number;
  /** `new WebSocket(url, protocol)` in the browser. */
  createSocket: (url: string, protocol: string) => SocketLike;
}

export class ConsoleClient {
  private socket: SocketLike | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();
  private readonly stateListeners = new Set<(state: ConnectionState) => void>();
  private readonly eventListeners = new Set<(event: LiveEvent) => void>();
  private readonly readyListeners = new Set<() => void>();
  private readonly problemListeners = new Set<(action: string, error: Error | undefined) => void>();
  private apiKey: string | undefined;
  private subscription: Subscription = { kinds: ['device', 'ota', 'campaign', 'health'] };
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0;
  private current: ConnectionState = { kind: 'logged-out' };
  private readonly now: () => number;
  private readonly createSocket: (url: string, protocol: string) => SocketLike;

  constructor(private readonly options: ClientOptions) {
    this.now = options.now ?? (() => Date.now());
    this.createSocket = options.createSocket;
  }

  get state(): ConnectionState {
    return this.current;
  }

  /** The key kept for this tab (sessionStorage): a reload logs in again without asking. */
  rememberedKey(): string | undefined {
    return this.options.storage.getItem(KEY_STORAGE) ?? undefined;
  }

  onState(listener: (state: ConnectionState) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  onEvent(listener: (event: LiveEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Called after every successful login (the first and each reconnect): views load their data again. */
  onReady(listener: () => void): () => void {
    this.readyListeners.add(listener);
    return () => this.readyListeners.delete(listener);
  }

  /** Connects and logs in; resolves once logged in and subscribed, rejects with the login's error. */
  login(apiKey: string): Promise<void> {
    this.apiKey = apiKey;
    this.attempt = 0;
    return this.connect();
  }

  logout(): void {
    this.options.storage.removeItem(KEY_STORAGE);
    this.apiKey = undefined;
    clearTimeout(this.reconnectTimer);
    const socket = this.socket;
    this.socket = undefined;
    socket?.close(1000, 'logged out');
    this.failAll('logged out');
    this.setState({ kind: 'logged-out' });
  }

  /** Replaces the live subscription (the device page narrows telemetry to its uid); kept across reconnects. */
  async subscribe(subscription: Subscription): Promise<void> {
    this.subscription = subscription;
    if (this.current.kind !== 'connected') return;
    try {
      await this.request('events.subscribe', subscriptionArgs(subscription));
      this.reportProblem('live stream', undefined);
    } catch (error) {
      this.reportProblem('live stream', error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** One command; rejects with a CommandError (the server said no) or an Error (no connection, timeout). */
  request<T>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return Promise.reject(new Error(`${cmd}: not connected`));
    if (this.waiting.size >= MAX_IN_FLIGHT) return Promise.reject(new Error(`${cmd}: ${MAX_IN_FLIGHT} requests already waiting for an answer`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`${cmd}: no answer within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      this.waiting.set(id, { cmd, resolve: resolve as (value: unknown) => void, reject, timer });
      socket.send(JSON.stringify({ v: 1, id, cmd, args }));
    });
  }

  /** Like request(), but waits out RATE_LIMITED answers (an upload sends many chunks in a row). */
  async requestPatiently<T>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.request<T>(cmd, args);
      } catch (error) {
        if (!(error instanceof CommandError) || error.code !== 'RATE_LIMITED' || attempt >= RATE_LIMIT_RETRIES) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
  }

  private connect(): Promise<void> {
    clearTimeout(this.reconnectTimer);
    const apiKey = this.apiKey;
    if (apiKey === undefined) return Promise.reject(new Error('no API key'));
    const previous = this.socket;
    this.socket = undefined;
    previous?.close(1000, 'reconnecting');
    if (this.current.kind !== 'reconnecting') this.setState({ kind: 'connecting' });
    const socket = this.createSocket(this.options.url, SUBPROTOCOL);
    this.socket = socket;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      socket.addEventListener('open', () => {
        this.loggedIn(socket, apiKey).then(
          () => {
            settled = true;
            resolve();
          },
          (error: unknown) => {
            settled = true;
            reject(error instanceof Error ? error : new Error(String(error)));
          },
        );
      });
      socket.addEventListener('message', (message) => {
        if (typeof message.data === 'string') this.onMessage(message.data);
      });
      socket.addEventListener('close', (event) => {
        if (this.socket !== socket) return;
        this.socket = undefined;
        this.failAll(`connection closed (${event.code}${event.reason ? ` ${event.reason}` : ''})`);
        if (LOGGED_OUT_CODES.has(event.code) || this.apiKey === undefined) {
          this.options.storage.removeItem(KEY_STORAGE);
          this.apiKey = undefined;
          const problem = event.reason || `the server closed the connection (${event.code})`;
          this.setState({ kind: 'logged-out', problem });
          if (!settled) reject(new Error(problem));
          settled = true;
          return;
        }
        this.scheduleReconnect(event.reason || `connection closed (${event.code})`);
        // A first login that never reached the server: the caller hears of it, the retries go on.
        if (!settled) reject(new Error(`cannot reach the server (${event.code})`));
        settled = true;
      });
    });
  }

  private async loggedIn(socket: SocketLike, apiKey: string): Promise<void> {
    try {
      await this.request('auth.login', { apiKey });
    } catch (error) {
      if (error instanceof CommandError) {
        // A refused key: back to the form, no retry on our own.
        this.apiKey = undefined;
        this.options.storage.removeItem(KEY_STORAGE);
        this.setState({ kind: 'logged-out', problem: `Login failed: ${error.message}` });
        socket.close(1000, 'login refused');
      }
      throw error;
    }
    this.options.storage.setItem(KEY_STORAGE, apiKey);
    this.attempt = 0;
    this.setState({ kind: 'connected' });
    try {
      await this.request('events.subscribe', subscriptionArgs(this.subscription));
      this.reportProblem('live stream', undefined);
    } catch (error) {
      // Logged in all the same: the views still load, the banner says the live stream is missing.
      this.reportProblem('live stream', error instanceof Error ? error : new Error(String(error)));
    }
    for (const listener of this.readyListeners) listener();
  }

  /** Problems of the connection itself (not of a view's request): the error banner shows them; undefined clears. */
  onProblem(listener: (action: string, error: Error | undefined) => void): () => void {
    this.problemListeners.add(listener);
    return () => this.problemListeners.delete(listener);
  }

  private reportProblem(action: string, error: Error | undefined): void {
    for (const listener of this.problemListeners) listener(action, error);
  }

  private scheduleReconnect(reason: string): void {
    this.attempt++;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (this.attempt - 1));
    // Up to a fifth of jitter, so many consoles do not come back in step after a restart.
    const delay = Math.round(base * (1 + Math.random() * 0.2));
    this.setState({ kind: 'reconnecting', retryAt: this.now() + delay, attempt: this.attempt, reason });
    this.reconnectTimer = setTimeout(() => {
      this.connect().catch((error: unknown) => console.warn('reconnect failed', error));
    }, delay);
  }

  private onMessage(text: string): void {
    let message: { id?: unknown; ok?: boolean; result?: unknown; error?: { code: string; message: string }; event?: unknown; data?: unknown };
    try {
      message = JSON.parse(text) as typeof message;
    } catch (error) {
      console.warn('unreadable frame from the server', error);
      return;
    }
    if (typeof message.event === 'string') {
      const event: LiveEvent = { name: message.event, data: (message.data ?? {}) as Record<string, unknown> };
      for (const listener of this.eventListeners) {
        try {
          listener(event);
        } catch (error) {
          // One broken view must not stop the others from getting the event.
          console.error(`live event ${event.name}: a listener failed`, error);
        }
      }
      return;
    }
    if (typeof message.id !== 'number') return;
    const waiting = this.waiting.get(message.id);
    if (!waiting) return;
    this.waiting.delete(message.id);
    clearTimeout(waiting.timer);
    if (message.ok) waiting.resolve(message.result);
    else waiting.reject(new CommandError(waiting.cmd, message.error?.code ?? 'UNKNOWN', message.error?.message ?? 'no message'));
  }

  private failAll(reason: string): void {
    for (const waiting of this.waiting.values()) {
      clearTimeout(waiting.timer);
      waiting.reject(new Error(`${waiting.cmd}: ${reason}`));
    }
    this.waiting.clear();
  }

  private setState(state: ConnectionState): void {
    this.current = state;
    for (const listener of this.stateListeners) listener(state);
  }
}

function subscriptionArgs(subscription: Subscription): Record<string, unknown> {
  return { kinds: [...subscription.kinds], ...(subscription.uid !== undefined ? { uid: subscription.uid } : {}) };
}

/** The admin WebSocket of the page's own origin. */
export function adminSocketUrl(location: { protocol: string; host: string }): string {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
}
