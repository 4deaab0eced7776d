import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import { Decoder, Encoder } from 'cbor-x';
import WebSocket from 'ws';
import { apiKeyFile, readKeyFile } from '../admin/index.js';
import { loadConfigFile } from '../config/index.js';
import { codeOfHttpStatus, foreignCode, hasCode, NucleonError, type ErrorCode, type ForeignCode } from '../errors.js';

/**
 * The admin endpoint as the CLI (and scripts) use it: one WebSocket with the API
 * key in the Authorization header, CBOR frames, answers matched by id.
 */

export const DEFAULT_ADMIN_URL = 'ws://127.0.0.1:3032/ws';
const REQUEST_TIMEOUT_MS = 60_000;
const CONNECT_TIMEOUT_MS = 10_000;
const RATE_LIMIT_RETRIES = 10;
const RATE_LIMIT_BACKOFF_MS = 100;

const encoder = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true });
const decoder = new Decoder({ mapsAsObjects: true, useRecords: false });

interface Reply {
  id: number | string | null;
  ok: boolean;
  result?: unknown;
  error?: { code: string; message: string };
}

/** A failure the CLI prints as one line: the server's message and its stable code. */
export class AdminClientError extends NucleonError {
  constructor(code: ErrorCode | ForeignCode, message: string, options?: { cause?: unknown }) {
    super(code, `${message} [${code}]`, options);
  }
}

export class AdminClient {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (reply: Reply) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }>();
  private closedError: Error | undefined;

  private constructor(
    private readonly socket: WebSocket,
    readonly url: string,
  ) {
    socket.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    socket.on('close', (code, reason) => {
      this.closedError = new AdminClientError('CONNECTION_CLOSED', `the admin endpoint closed the connection (${code}${reason.length > 0 ? `: ${reason.toString()}` : ''})`);
      for (const [id, entry] of this.waiting) {
        clearTimeout(entry.timer);
        this.waiting.delete(id);
        entry.reject(this.closedError);
      }
    });
  }

  static connect(url: string, apiKey: string): Promise<AdminClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { headers: { authorization: `Bearer ${apiKey}`, 'x-nucleon-client': 'cli' }, handshakeTimeout: CONNECT_TIMEOUT_MS, perMessageDeflate: false });
      socket.once('open', () => {
        socket.removeAllListeners('error');
        socket.on('error', () => undefined);
        resolve(new AdminClient(socket, url));
      });
      // A refused upgrade (401, 429, 503) says why in its body; the socket error that follows is noise.
      let refused = false;
      socket.once('unexpected-response', (_request, response) => {
        refused = true;
        const status = response.statusCode ?? 0;
        readBody(response).then(
          (body) => reject(refusal(url, status, body)),
          (error: unknown) => reject(refusal(url, status, String(error))),
        );
      });
      socket.on('error', (error: NodeJS.ErrnoException) => {
        if (!refused) reject(unreachable(url, error));
      });
    });
  }

  /**
   * Sends a command and resolves with its result; an error answer rejects with
   * the server's code. RATE_LIMITED is waited out (long uploads send many chunks).
   */
  async request<T = unknown>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.requestOnce<T>(cmd, args);
      } catch (error) {
        if (!(error instanceof AdminClientError) || !hasCode(error, 'RATE_LIMITED') || attempt >= RATE_LIMIT_RETRIES) throw error;
        await new Promise((resolve) => setTimeout(resolve, RATE_LIMIT_BACKOFF_MS * attempt));
      }
    }
  }

  private async requestOnce<T>(cmd: string, args: Record<string, unknown>): Promise<T> {
    if (this.closedError) throw this.closedError;
    const id = this.nextId++;
    const reply = await new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new AdminClientError('TIMEOUT', `${cmd}: no answer from the admin endpoint within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      this.waiting.set(id, { resolve, reject, timer });
      this.socket.send(encoder.encode({ v: 1, id, cmd, args }));
    });
    // The server's code as it sent it: its own, or another runner's passed through.
    if (!reply.ok) throw new AdminClientError(reply.error ? foreignCode(reply.error.code) : 'INTERNAL', reply.error?.message ?? 'failed');
    return reply.result as T;
  }

  /**
   * Uploads a firmware file in chunks (never all in memory) and adds it as an
   * image. The server checks the SHA-256 we announce against what it received.
   */
  async addImage(file: string, image: { id: string; imageType: string; description?: string }): Promise<unknown> {
    const size = await fileSize(file);
    if (size === 0) throw new AdminClientError('INVALID_ARGUMENT', `${file} is empty`);
    const sha256 = await hashFile(file);
    const { uploadId, chunkBytes } = await this.request<{ uploadId: string; chunkBytes: number }>('uploads.begin', { size, sha256 });
    const handle = await open(file, 'r');
    try {
      const buffer = Buffer.alloc(Math.min(chunkBytes, size));
      for (let offset = 0; offset < size; ) {
        const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - offset), offset);
        if (bytesRead === 0) throw new AdminClientError('INVALID_ARGUMENT', `${file} changed while it was uploaded`);
        await this.request('uploads.chunk', { uploadId, offset, data: buffer.subarray(0, bytesRead) });
        offset += bytesRead;
      }
    } finally {
      await handle.close();
    }
    const args: Record<string, unknown> = { id: image.id, imageType: image.imageType, uploadId };
    if (image.description !== undefined) args.description = image.description;
    return this.request('images.add', args);
  }

  close(): void {
    this.socket.close(1000, 'done');
  }

  private onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    let message: Reply;
    try {
      message = (isBinary ? decoder.decode(buffer) : JSON.parse(buffer.toString('utf8'))) as Reply;
    } catch {
      // A frame we cannot read cannot be matched to a request either; the request times out.
      return;
    }
    if (typeof message.id !== 'number') return;
    const entry = this.waiting.get(message.id);
    if (!entry) return;
    this.waiting.delete(message.id);
    clearTimeout(entry.timer);
    entry.resolve(message);
  }
}

async function fileSize(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw new AdminClientError('INVALID_ARGUMENT', `cannot read ${file}: ${reason}`, { cause: error });
  }
}

async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(file, 'r');
  try {
    for await (const chunk of handle.createReadStream()) hash.update(chunk as Buffer);
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

function readBody(response: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => {
      if (body.length < 1000) body += chunk;
    });
    response.on('end', () => resolve(body.trim()));
    response.on('error', reject);
  });
}

/** The admin endpoint's refusal of the upgrade, by its HTTP status (the catalogue's, src/errors.ts). */
function refusal(url: string, status: number, body: string): AdminClientError {
  const code = codeOfHttpStatus(status);
  if (code === 'UNAUTHORIZED') return new AdminClientError(code, `the admin endpoint at ${url} refused the API key`);
  if (code === 'RATE_LIMITED') return new AdminClientError(code, `the admin endpoint at ${url} refuses this address for now: ${body}`);
  if (code === 'UNAVAILABLE') return new AdminClientError(code, `the admin endpoint at ${url} is unavailable: ${body}`);
  return new AdminClientError('BAD_RESPONSE', `the admin endpoint at ${url} answered HTTP ${status}${body ? `: ${body}` : ''}`);
}

function unreachable(url: string, error: NodeJS.ErrnoException): AdminClientError {
  const reason =
    error.code === 'ECONNREFUSED' ? 'connection refused (is `nucleon serve` running, and is this the admin port?)' : error.code === 'ENOTFOUND' ? 'unknown host' : error.message;
  return new AdminClientError('UNREACHABLE', `cannot reach the admin endpoint at ${url}: ${reason}`, { cause: error });
}

// --- options shared by the admin subcommands -----------------------------------

/** `parseArgs` options every admin subcommand takes. */
export const ADMIN_OPTIONS = {
  url: { type: 'string' },
  'api-key': { type: 'string' },
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean', default: false },
} as const;

export const ADMIN_OPTIONS_USAGE = `Connection (flags, else environment, else the config file):
  --url <ws-url>      admin endpoint (NUCLEON_ADMIN_URL; default ${DEFAULT_ADMIN_URL})
  --api-key <key>     API key (NUCLEON_ADMIN_API_KEY; or admin.api_key / <store.path>/admin-api-key of --config)
  --config <file>     read the URL and key from this config (default: ./config.toml when it exists)
  --json              print JSON for scripts instead of tables`;

export interface AdminConnectionValues {
  url?: string | undefined;
  'api-key'?: string | undefined;
  config?: string | undefined;
}

/** Works out where the admin endpoint is and which key to use, in the documented order. */
export async function resolveAdminConnection(values: AdminConnectionValues, env: NodeJS.ProcessEnv = process.env): Promise<{ url: string; apiKey: string }> {
  let url = values.url ?? nonEmpty(env.NUCLEON_ADMIN_URL);
  let apiKey = values['api-key'] ?? nonEmpty(env.NUCLEON_ADMIN_API_KEY);
  const configFile = values.config ?? (existsSync('config.toml') ? 'config.toml' : undefined);
  if ((url === undefined || apiKey === undefined) && configFile !== undefined) {
    const { config } = await loadConfigFile(configFile, env);
    const host = config.admin.host === '0.0.0.0' ? '127.0.0.1' : config.admin.host === '::' ? '::1' : config.admin.host;
    url ??= `ws://${host.includes(':') ? `[${host}]` : host}:${config.admin.port}/ws`;
    apiKey ??= config.admin.api_key ?? (await readKeyFile(apiKeyFile(config.store.path)));
    if (apiKey === undefined) {
      throw new NucleonError('NO_API_KEY', `no API key: ${path.join(config.store.path, 'admin-api-key')} does not exist yet (start the server once) and none was given`);
    }
  }
  if (apiKey === undefined) throw new NucleonError('NO_API_KEY', 'no API key: pass --api-key, set NUCLEON_ADMIN_API_KEY, or give --config <file>');
  return { url: normalizeUrl(url ?? DEFAULT_ADMIN_URL), apiKey };
}

/** Accepts `http(s)://host:port` too (what the dashboard address looks like) and adds `/ws`. */
export function normalizeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch (error) {
    throw new NucleonError('BAD_URL', `not a URL: ${raw}`, { cause: error });
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new NucleonError('BAD_URL', `expected a ws://, wss://, http:// or https:// URL, got ${raw}`);
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/ws';
  return url.toString();
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** Connects, runs `work`, and always closes. */
export async function withAdmin<T>(values: AdminConnectionValues, work: (client: AdminClient) => Promise<T>): Promise<T> {
  const { url, apiKey } = await resolveAdminConnection(values);
  const client = await AdminClient.connect(url, apiKey);
  try {
    return await work(client);
  } finally {
    client.close();
  }
}

// --- output --------------------------------------------------------------------

/** A plain text table: a header row, then one row per item, columns padded to fit. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return '(none)\n';
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join('\n')}\n`;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function formatBytes(size: number): string {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KiB`;
  return `${(size / 1024 / 1024).toFixed(1)} MiB`;
}

export function formatTime(ms: number | undefined): string {
  if (ms === undefined) return '-';
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
