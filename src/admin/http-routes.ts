import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { RequestRefusals } from '../http-request.js';
import type { Admission } from './access.js';

export interface StaticFile {
  body: Buffer;
  /** The body gzipped once at load, sent to browsers that accept it (the console bundle: 139 → 52 KiB). */
  gzip?: Buffer;
  contentType: string;
}

/** Smaller files are sent as they are: gzip would save next to nothing. */
const GZIP_FROM_BYTES = 1024;

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/**
 * The console bundle (web/, built by `npm run build` into dist/console/):
 * next to the compiled module when running from dist, or the repository's
 * dist/console when running the sources through tsx. The first candidate that
 * has index.html wins; with none, the compiled location is answered and the
 * admin runner logs that the bundle is missing.
 */
export function staticDir(): string {
  const candidates = consoleDirCandidates();
  return candidates.find((dir) => existsSync(path.join(dir, 'index.html'))) ?? (candidates[0] as string);
}

function consoleDirCandidates(): string[] {
  return [fileURLToPath(new URL('../console/', import.meta.url)), fileURLToPath(new URL('../../dist/console/', import.meta.url))];
}

/** Reads the dashboard into memory once: a handful of small files, served without touching the disk again. */
export async function loadStaticFiles(dir: string): Promise<Map<string, StaticFile>> {
  const files = new Map<string, StaticFile>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    // A package without the dashboard still serves the API, /metrics and /healthz.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return files;
    throw error;
  }
  for (const name of names) {
    const contentType = CONTENT_TYPES[path.extname(name)];
    if (contentType === undefined) continue;
    const body = await readFile(path.join(dir, name));
    files.set(`/${name}`, { body, contentType, ...(body.byteLength >= GZIP_FROM_BYTES ? { gzip: gzipSync(body, { level: 9 }) } : {}) });
  }
  const index = files.get('/index.html');
  if (index) files.set('/', index);
  return files;
}

export interface Health {
  status: 'ok' | 'degraded';
  [key: string]: unknown;
}

/** What `/metrics` answers with: a prom-client Registry, or anything that renders the same text. */
export interface MetricsExposition {
  metrics(): Promise<string>;
  readonly contentType: string;
}

export interface RouteOptions {
  files: ReadonlyMap<string, StaticFile>;
  metrics: MetricsExposition;
  health: () => Health;
  /** Target, Host (AdminAccess): what is not admitted is refused and counted by `refusals`. */
  admit: (request: IncomingMessage) => Admission;
  refusals: RequestRefusals;
  /** Serves everything under `/api/` (the REST API), after the Host check. */
  api?: (request: IncomingMessage, response: ServerResponse) => void;
}

// The dashboard talks only to its own origin; nothing is loaded from elsewhere.
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/** GET `/` and the dashboard files, `/metrics` (Prometheus text), `/healthz` (200 ok / 503 degraded); `/api/` goes to `api`. */
export function createRequestHandler(options: RouteOptions): (request: IncomingMessage, response: ServerResponse) => void {
  return (request, response) => {
    const admission = options.admit(request);
    if (!admission.ok) {
      options.refusals.respond(request, response, admission.refusal);
      return;
    }
    const pathname = admission.url.pathname;
    if (options.api && pathname.startsWith('/api/')) {
      options.api(request, response);
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      send(response, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
      return;
    }
    if (pathname === '/metrics') {
      options.metrics.metrics().then(
        (text) => send(response, 200, options.metrics.contentType, text),
        (error: unknown) => send(response, 500, 'text/plain; charset=utf-8', `metrics failed: ${(error as Error).message}\n`),
      );
      return;
    }
    if (pathname === '/healthz') {
      const health = options.health();
      send(response, health.status === 'ok' ? 200 : 503, 'application/json', `${JSON.stringify(health)}\n`);
      return;
    }
    const file = options.files.get(pathname);
    if (file) {
      if (file.gzip && acceptsGzip(request)) send(response, 200, file.contentType, file.gzip, { ...SECURITY_HEADERS, 'content-encoding': 'gzip', vary: 'accept-encoding' });
      else send(response, 200, file.contentType, file.body, { ...SECURITY_HEADERS, vary: 'accept-encoding' });
      return;
    }
    send(response, 404, 'text/plain; charset=utf-8', 'not found\n');
  };
}

/** Whether Accept-Encoding names gzip with a weight above 0 ("gzip;q=0" refuses it). */
function acceptsGzip(request: IncomingMessage): boolean {
  const accepted = request.headers['accept-encoding'];
  if (typeof accepted !== 'string') return false;
  return accepted.split(',').some((entry) => {
    const [coding, ...params] = entry.split(';').map((part) => part.trim().toLowerCase());
    if (coding !== 'gzip') return false;
    const weight = params.find((param) => param.startsWith('q='));
    return weight === undefined || Number(weight.slice(2)) > 0;
  });
}

function send(response: ServerResponse, status: number, contentType: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  response.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), ...headers });
  response.end(response.req.method === 'HEAD' ? undefined : body);
}
