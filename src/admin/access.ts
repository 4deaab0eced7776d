import type { IncomingMessage } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import os from 'node:os';
import { BAD_TARGET, parseUrl, requestUrl, type RequestRefusal } from '../http-request.js';

export interface AccessOptions {
  /** `admin.host` as configured: a name there (not an address) is one of the listener's own names. */
  listenHost: string;
  /** `admin.allowed_hosts`: `name` (any port) or `name:port`, besides the listener's own names. */
  allowedHosts: readonly string[];
  /** `admin.allowed_origins`: `scheme://host[:port]`, besides the dashboard's own origin. */
  allowedOrigins: readonly string[];
  /** This machine's addresses, for a listener bound to all of them (os.networkInterfaces by default). */
  interfaceAddresses?: () => string[];
}

export type Admission = { ok: true; url: URL } | { ok: false; refusal: RequestRefusal };

/**
 * 421 Misdirected Request: "this server is not able to produce a response for
 * that authority" (RFC 9110 15.5.20), which is exactly the case; 403 would
 * suggest the client lacks a permission it could obtain.
 */
export const HOST_NOT_ALLOWED: RequestRefusal = {
  status: 421,
  reason: 'host_not_allowed',
  message: 'this endpoint does not answer to that Host (admin.allowed_hosts lists the names it answers to besides its own)',
};

export const ORIGIN_NOT_ALLOWED: RequestRefusal = {
  status: 403,
  reason: 'origin_not_allowed',
  message: 'WebSocket connections from that Origin are refused (admin.allowed_origins lists the ones allowed besides the dashboard)',
};

/**
 * Which requests the admin endpoint serves at all, before any key is looked at:
 *
 * - The request target must parse as a URL path (400 otherwise).
 * - `Host` must be one of the listener's own names (DNS rebinding: a page on
 *   evil.example whose name is rebound to 127.0.0.1 sends `Host: evil.example`,
 *   and would otherwise read /metrics and /healthz and reach /ws as same-origin).
 *   Own names: the bound address (and `admin.host` when it is a name) with
 *   its port; for a loopback listener also localhost, 127.0.0.1 and [::1]
 *   with the port; for one bound to all addresses also this machine's
 *   interface addresses at start. Plus `admin.allowed_hosts`. A request
 *   without Host is not from a browser and passes.
 * - On the WebSocket upgrade, `Origin`, when sent, must be the dashboard's own
 *   (http or https with the request's own Host) or in `admin.allowed_origins`:
 *   a page elsewhere in the operator's browser must not talk to the API. CLI
 *   and scripts send no Origin and pass.
 */
export class AdminAccess {
  /** `host:port` (and bare names for port 80), lower case. */
  private readonly exact = new Set<string>();
  /** Configured names without a port: any port. */
  private readonly anyPort = new Set<string>();
  private readonly origins: ReadonlySet<string>;

  constructor(private readonly options: AccessOptions) {
    const origins = new Set<string>();
    for (const origin of options.allowedOrigins) {
      const url = parseUrl(origin);
      if (url) origins.add(url.origin);
    }
    this.origins = origins;
  }

  /** The listener's own names, once it is bound (port 0 picks one). Until then nothing is admitted. */
  bind(address: AddressInfo): void {
    const port = address.port;
    const own = [address.address];
    if (isIP(this.options.listenHost) === 0) own.push(this.options.listenHost);
    const unspecified = address.address === '0.0.0.0' || address.address === '::';
    if (unspecified || isLoopback(address.address)) own.push('localhost', '127.0.0.1', '::1');
    if (unspecified) own.push(...(this.options.interfaceAddresses ?? interfaceAddresses)());
    for (const name of own) {
      const host = formatName(name);
      this.exact.add(`${host}:${port}`);
      // Browsers leave the default port out of Host.
      if (port === 80) this.exact.add(host);
    }
    for (const entry of this.options.allowedHosts) {
      const { name, port: entryPort } = splitHost(entry.toLowerCase());
      if (entryPort === undefined) this.anyPort.add(name);
      else this.exact.add(`${name}:${entryPort}`);
    }
  }

  /** A plain HTTP request: the target parses and Host is allowed. */
  admit(request: IncomingMessage): Admission {
    const url = requestUrl(request);
    if (url === undefined) return { ok: false, refusal: BAD_TARGET };
    if (!this.hostAllowed(request.headers.host)) return { ok: false, refusal: HOST_NOT_ALLOWED };
    return { ok: true, url };
  }

  /** A WebSocket upgrade: as `admit`, and Origin, when sent, is allowed. */
  admitUpgrade(request: IncomingMessage): Admission {
    const admission = this.admit(request);
    if (!admission.ok) return admission;
    if (!this.originAllowed(request.headers.origin, request.headers.host)) return { ok: false, refusal: ORIGIN_NOT_ALLOWED };
    return admission;
  }

  private hostAllowed(header: string | undefined): boolean {
    if (header === undefined) return true;
    const host = header.trim().toLowerCase();
    return this.exact.has(host) || this.anyPort.has(splitHost(host).name);
  }

  private originAllowed(header: string | undefined, host: string | undefined): boolean {
    if (header === undefined) return true;
    const origin = parseUrl(header.trim());
    // An opaque origin ("null": sandboxed frames, file://) parses to nothing useful and is never the dashboard.
    if (origin === undefined || origin.origin === 'null') return false;
    if (this.origins.has(origin.origin)) return true;
    if (host === undefined || (origin.protocol !== 'http:' && origin.protocol !== 'https:')) return false;
    // The page's own origin: same authority as the Host it was served under, compared with that scheme's default port.
    return parseUrl(`${origin.protocol}//${host.trim()}`)?.host === origin.host;
  }
}

/** `name` and `port` of a Host value or an allowed_hosts entry; IPv6 stays in brackets. */
function splitHost(host: string): { name: string; port: string | undefined } {
  const match = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(host);
  if (!match) return { name: host, port: undefined };
  return { name: match[1] ?? host, port: match[2] };
}

function formatName(address: string): string {
  return address.includes(':') ? `[${address.toLowerCase()}]` : address.toLowerCase();
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}

function interfaceAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flatMap((entries) => entries ?? [])
    .map((entry) => entry.address);
}
