import { TLSSocket } from 'node:tls';
import type { Client } from 'aedes';
import type { Config } from '../config/index.js';
import type { CredentialStore, LoginGuard, LoginRefusal } from '../devices/index.js';
import type { AuthMethod } from '../events.js';
import { isValidUid } from '../protocol/index.js';
import type { Presented } from '../revocation/index.js';
import type { Principal } from './acl.js';

/**
 * Who is connecting (README "Device identity"). In order:
 * 1. username `svc:<name>` → a service account, password required, client id
 *    `svc:<name>` or `svc:<name>:<anything>`;
 * 2. a client certificate from our CA (when `auth.client_certificates`) → uid = CN;
 * 3. username + password (when `auth.passwords`) → uid = username;
 * 4. neither, with `auth.anonymous` (development, conformance testing): a
 *    client id that is a valid uid is that device; any other (or one the
 *    server made up for an empty one) is an anonymous client, governed by
 *    the ACL rules alone (README "ACL rules").
 * A device's client id must equal its uid: sessions and queued messages are
 * keyed by client id, so a free choice would let one device take another's.
 */

export const SERVICE_PREFIX = 'svc:';
/** Not a valid uid, so it cannot collide with one. */
const UNTRUSTED = '<untrusted>';

export interface Identity {
  principal: Principal;
  method: AuthMethod;
}

/** CONNACK return codes of MQTT 3.1.1 (section 3.2.2.3). */
export const ReturnCode = { IDENTIFIER_REJECTED: 2, SERVER_UNAVAILABLE: 3, BAD_USERNAME_OR_PASSWORD: 4, NOT_AUTHORIZED: 5 } as const;

export interface AuthFailure {
  returnCode: (typeof ReturnCode)[keyof typeof ReturnCode];
  /** Metric label and log field. */
  reason: string;
}

export type AuthResult = { ok: true; identity: Identity } | { ok: false; failure: AuthFailure };

export interface ConnectAttempt {
  clientId: string;
  /** The client sent an empty client id and the server made this one up [MQTT-3.1.3-6]. */
  clientIdAssigned?: boolean;
  username: string | undefined;
  password: Buffer | undefined;
  tls: TLSSocket | undefined;
  /** The client's address, for the failed-login limits. */
  address: string | undefined;
}

function fail(returnCode: AuthFailure['returnCode'], reason: string): AuthResult {
  return { ok: false, failure: { returnCode, reason } };
}

/**
 * A login the guard refused before checking the password: too many failures
 * (5, it says nothing about the password) or too many checks waiting (3, try later).
 */
function refused(reason: LoginRefusal): AuthResult {
  return fail(reason === 'password_checks_busy' ? ReturnCode.SERVER_UNAVAILABLE : ReturnCode.NOT_AUTHORIZED, reason);
}

/** Where a revoked device or certificate is refused: our list or a CRL file (README "Revocation"); the source for the log, or undefined. */
export type RevocationCheck = (presented: Presented) => string | undefined;

export class Authenticator {
  constructor(
    private readonly settings: Config['mqtt']['auth'],
    private readonly maxClientIdLength: number,
    private readonly devices: CredentialStore,
    private readonly services: CredentialStore,
    private readonly logins: LoginGuard,
    private readonly revoked: RevocationCheck,
  ) {}

  async authenticate(attempt: ConnectAttempt): Promise<AuthResult> {
    const { clientId, username, password } = attempt;
    if (clientId.length === 0 || clientId.length > this.maxClientIdLength) return fail(ReturnCode.IDENTIFIER_REJECTED, 'bad_client_id');

    if (username?.startsWith(SERVICE_PREFIX)) {
      const name = username.slice(SERVICE_PREFIX.length);
      if (clientId !== username && !clientId.startsWith(`${username}:`)) return fail(ReturnCode.IDENTIFIER_REJECTED, 'client_id_not_service_name');
      if (!password) return fail(ReturnCode.BAD_USERNAME_OR_PASSWORD, 'bad_service_password');
      const checked = await this.logins.check(attempt.address, `service:${name}`, () => this.services.verify(name, password));
      if (!checked.ok) return checked.reason === 'wrong_password' ? fail(ReturnCode.BAD_USERNAME_OR_PASSWORD, 'bad_service_password') : refused(checked.reason);
      return { ok: true, identity: { principal: { kind: 'service', name }, method: 'service' } };
    }

    const certificate = this.settings.client_certificates ? presentedCertificate(attempt.tls) : undefined;
    if (certificate === UNTRUSTED) return fail(ReturnCode.NOT_AUTHORIZED, 'untrusted_certificate');
    if (certificate !== undefined) {
      const uid = certificate.uid;
      if (username !== undefined && username !== uid) return fail(ReturnCode.NOT_AUTHORIZED, 'username_not_certificate_uid');
      if (clientId !== uid) return fail(ReturnCode.IDENTIFIER_REJECTED, 'client_id_not_uid');
      if (this.revoked(certificate) !== undefined) return fail(ReturnCode.NOT_AUTHORIZED, 'revoked');
      return { ok: true, identity: { principal: { kind: 'device', uid }, method: 'certificate' } };
    }

    if (username !== undefined) {
      if (!this.settings.passwords) return fail(ReturnCode.NOT_AUTHORIZED, 'passwords_disabled');
      if (clientId !== username) return fail(ReturnCode.IDENTIFIER_REJECTED, 'client_id_not_uid');
      if (!password) return fail(ReturnCode.BAD_USERNAME_OR_PASSWORD, 'bad_password');
      const checked = await this.logins.check(attempt.address, `device:${username}`, () => this.devices.verify(username, password));
      if (!checked.ok) return checked.reason === 'wrong_password' ? fail(ReturnCode.BAD_USERNAME_OR_PASSWORD, 'bad_password') : refused(checked.reason);
      // After the password: a wrong guess learns nothing about the device's standing.
      if (this.revoked({ uid: username }) !== undefined) return fail(ReturnCode.NOT_AUTHORIZED, 'revoked');
      return { ok: true, identity: { principal: { kind: 'device', uid: username }, method: 'password' } };
    }

    if (this.settings.anonymous) {
      if (!attempt.clientIdAssigned && isValidUid(clientId)) {
        if (this.revoked({ uid: clientId }) !== undefined) return fail(ReturnCode.NOT_AUTHORIZED, 'revoked');
        return { ok: true, identity: { principal: { kind: 'device', uid: clientId }, method: 'anonymous' } };
      }
      return { ok: true, identity: { principal: { kind: 'anonymous', clientId }, method: 'anonymous' } };
    }
    return fail(ReturnCode.NOT_AUTHORIZED, 'no_credentials');
  }
}

/** The TLS socket under a client: the connection itself, or the one under a WebSocket. */
export function tlsSocketOf(client: Client): TLSSocket | undefined {
  if (client.conn instanceof TLSSocket) return client.conn;
  const socket = client.req?.socket;
  return socket instanceof TLSSocket ? socket : undefined;
}

/**
 * A verified client certificate: its uid (CN), serial and DER bytes; `UNTRUSTED`
 * for one not from a CA of the trust bundle (or without a valid uid); undefined for none.
 */
export function presentedCertificate(socket: TLSSocket | undefined): Required<Presented> | typeof UNTRUSTED | undefined {
  if (!socket) return undefined;
  const peer = socket.getPeerCertificate();
  if (!peer || Object.keys(peer).length === 0) return undefined;
  if (!socket.authorized) return UNTRUSTED;
  const cn = peer.subject?.CN;
  return typeof cn === 'string' && isValidUid(cn) ? { uid: cn, serial: peer.serialNumber, raw: peer.raw } : UNTRUSTED;
}

/** What the device page shows of the certificate a device logged in with: serial, subject (`CN=…, O=…`) and its end of validity. */
export function certificateIdentity(socket: TLSSocket | undefined): { serial: string; subject: string; notAfter: number } | undefined {
  const peer = socket?.getPeerCertificate();
  if (!peer || Object.keys(peer).length === 0) return undefined;
  const subject = Object.entries(peer.subject ?? {})
    .map(([key, value]) => `${key}=${Array.isArray(value) ? value.join('+') : String(value)}`)
    .join(', ');
  const notAfter = Date.parse(peer.valid_to);
  return { serial: peer.serialNumber, subject, notAfter: Number.isFinite(notAfter) ? notAfter : 0 };
}
