import { fork, type ChildProcess } from 'node:child_process';
import { writeHeapSnapshot } from 'node:v8';

/**
 * Request/response over a forked child's IPC channel. The orchestrator drives
 * every bench process (load generator workers, broker entries, the Mosquitto
 * subscriber app) this way, so one protocol covers them all.
 */

interface RpcRequest {
  rpc: number;
  cmd: string;
  args: unknown;
}

interface RpcReply {
  rpc: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

/** Notices a child sends unasked (`{event: ...}`), e.g. "ready". */
export interface RpcNotice {
  event: string;
  data?: unknown;
}

type Handler = (args: never) => unknown;

function isReply(message: unknown): message is RpcReply {
  return typeof message === 'object' && message !== null && typeof (message as RpcReply).rpc === 'number' && typeof (message as RpcReply).ok === 'boolean';
}

function isRequest(message: unknown): message is RpcRequest {
  return typeof message === 'object' && message !== null && typeof (message as RpcRequest).rpc === 'number' && typeof (message as RpcRequest).cmd === 'string';
}

function isNotice(message: unknown): message is RpcNotice {
  return typeof message === 'object' && message !== null && typeof (message as RpcNotice).event === 'string';
}

const OUTPUT_TAIL_BYTES = 16 * 1024;

export interface ChildOptions {
  /** Extra Node flags (e.g. `--cpu-prof`, `--expose-gc`). */
  nodeFlags?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * The calling side of the protocol over any message channel: a forked child
 * (RpcChild) or a node:cluster worker (a workers-mode Nucleon's primary asks
 * its workers, bench/servers/nucleon-server.ts).
 */
export class RpcCaller {
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }>();
  private nextId = 1;

  constructor(
    private readonly label: string,
    private readonly send: (message: RpcRequest) => void,
  ) {}

  call<T>(cmd: string, args: unknown = {}, timeoutMs = 60_000): Promise<T> {
    const rpc = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rpc);
        reject(new Error(`${this.label}: "${cmd}" got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(rpc, { resolve: resolve as (value: unknown) => void, reject, timer });
      this.send({ rpc, cmd, args });
    });
  }

  /** Settles the call a reply answers; false when `message` is no reply. */
  replied(message: unknown): boolean {
    if (!isReply(message)) return false;
    const call = this.pending.get(message.rpc);
    if (!call) return true;
    this.pending.delete(message.rpc);
    clearTimeout(call.timer);
    if (message.ok) call.resolve(message.result);
    else call.reject(new Error(`${this.label}: ${message.error ?? 'failed'}`));
    return true;
  }

  /** Rejects every call still waiting (the other side went away). */
  failAll(error: Error): void {
    for (const [id, call] of this.pending) {
      clearTimeout(call.timer);
      call.reject(error);
      this.pending.delete(id);
    }
  }
}

/** A forked bench process with typed calls, its output tail and its exit. */
export class RpcChild {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly caller: RpcCaller;
  private readonly noticeWaiters: { event: string; resolve: (data: unknown) => void }[] = [];
  private tail = '';

  constructor(
    readonly label: string,
    script: string,
    args: string[] = [],
    options: ChildOptions = {},
  ) {
    this.child = fork(script, args, {
      // tsx by absolute URL: a child may run with its cwd outside the repository.
      execArgv: ['--import', import.meta.resolve('tsx'), ...(options.nodeFlags ?? [])],
      env: { ...process.env, ...options.env },
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'json',
    });
    this.caller = new RpcCaller(label, (message) => this.child.send(message));
    const keep = (chunk: Buffer) => {
      this.tail = (this.tail + chunk.toString()).slice(-OUTPUT_TAIL_BYTES);
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
    this.child.on('message', (message) => this.onMessage(message));
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.caller.failAll(new Error(`${this.label} exited (code ${code}, signal ${signal}) during a call; output tail:\n${this.tail}`));
        resolve({ code, signal });
      });
    });
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.label} has no pid (spawn failed)`);
    return this.child.pid;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    return this.tail;
  }

  call<T>(cmd: string, args: unknown = {}, timeoutMs = 60_000): Promise<T> {
    if (!this.alive) return Promise.reject(new Error(`${this.label} is not running; output tail:\n${this.tail}`));
    return this.caller.call<T>(cmd, args, timeoutMs);
  }

  /** Resolves with the data of the next notice named `event`, or rejects on exit/timeout. */
  waitFor<T>(event: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.label}: no "${event}" within ${timeoutMs} ms; output tail:\n${this.tail}`)), timeoutMs);
      const waiter = {
        event,
        resolve: (data: unknown) => {
          clearTimeout(timer);
          resolve(data as T);
        },
      };
      this.noticeWaiters.push(waiter);
      void this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`${this.label} exited (code ${code}, signal ${signal}) before "${event}"; output tail:\n${this.tail}`));
      });
    });
  }

  /** Asks the child to finish (`shutdown` call), then kills it by PID if it does not exit in time. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (!this.alive) return;
    try {
      await this.call('shutdown', {}, timeoutMs);
    } catch (error) {
      process.stderr.write(`${this.label}: shutdown failed: ${error instanceof Error ? error.message : String(error)}\n`);
    }
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }

  private onMessage(message: unknown): void {
    if (this.caller.replied(message)) return;
    if (isNotice(message)) {
      const index = this.noticeWaiters.findIndex((w) => w.event === message.event);
      if (index >= 0) this.noticeWaiters.splice(index, 1)[0]?.resolve(message.data);
    }
  }
}

/**
 * The child side: answers calls with the given handlers. `shutdown` is
 * answered first and then `onShutdown` runs and the process exits.
 */
export function serveRpc(handlers: Record<string, Handler>, onShutdown: () => Promise<void>): void {
  const send = (message: RpcReply | RpcNotice) => {
    if (process.send) process.send(message);
  };
  process.on('message', (message) => {
    if (!isRequest(message)) return;
    const { rpc, cmd, args } = message;
    if (cmd === 'shutdown') {
      send({ rpc, ok: true });
      onShutdown().then(
        () => process.exit(0),
        (error: unknown) => {
          process.stderr.write(`shutdown failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
          process.exit(1);
        },
      );
      return;
    }
    const handler = handlers[cmd];
    if (!handler) {
      send({ rpc, ok: false, error: `unknown command "${cmd}"` });
      return;
    }
    Promise.resolve()
      .then(() => handler(args as never))
      .then(
        (result) => send({ rpc, ok: true, result }),
        (error: unknown) => send({ rpc, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
      );
  });
  // The orchestrator went away: do not linger as an orphan holding ports.
  process.on('disconnect', () => {
    void onShutdown().finally(() => process.exit(0));
  });
}

export function notify(event: string, data?: unknown): void {
  if (process.send) process.send({ event, data } satisfies RpcNotice);
}

/**
 * The memory commands of a Node broker process: a full GC (when run with
 * --expose-gc), its memory usage, and a heap snapshot written to `path`.
 */
export function memoryHandlers(): Record<'gc' | 'memory' | 'heapSnapshot', Handler> {
  return {
    gc: () => {
      if (typeof global.gc === 'function') global.gc();
      return typeof global.gc === 'function';
    },
    memory: () => process.memoryUsage(),
    heapSnapshot: (args: { path: string }) => writeHeapSnapshot(args.path),
  };
}
