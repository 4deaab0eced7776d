import { Decoder, Encoder } from 'cbor-x';
import { codesOf, NucleonError, type CodeOf } from '../errors.js';

/**
 * The admin wire protocol, version 1 (README "Admin protocol").
 *
 * A request is `{v?: 1, id, cmd, args}`; the answer is `{v: 1, id, ok: true, result}`
 * or `{v: 1, id, ok: false, error: {code, message}}`; live events are
 * `{v: 1, event, data}`. Text frames carry JSON, binary frames carry the same
 * messages as CBOR, and every answer goes back in the encoding of its request.
 */
export const PROTOCOL_VERSION = 1;

export type Encoding = 'json' | 'cbor';
export type RequestId = string | number;

export interface AdminRequest {
  id: RequestId;
  cmd: string;
  args: Record<string, unknown>;
  encoding: Encoding;
}

export interface ErrorBody {
  /** An AdminErrorCode, or another runner's code passed through. */
  code: string;
  message: string;
}

export type AdminResponse =
  | { v: typeof PROTOCOL_VERSION; id: RequestId | null; ok: true; result: unknown }
  | { v: typeof PROTOCOL_VERSION; id: RequestId | null; ok: false; error: ErrorBody };

export interface AdminEventMessage {
  v: typeof PROTOCOL_VERSION;
  event: string;
  data: unknown;
}

/**
 * The admin protocol's own error codes: the catalogue's `admin` codes
 * (src/errors.ts). Other runners' codes (from OTA, the app) pass through
 * unchanged. Clients match on these strings: they never change.
 */
export type AdminErrorCode = CodeOf<'admin'>;
export const ADMIN_ERROR_CODES: readonly AdminErrorCode[] = codesOf('admin');

/** An error answered to the client with its code; the connection stays open. */
export class AdminError extends NucleonError {
  constructor(code: AdminErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

// String keys only (the admin protocol is not the device protocol), plain objects,
// byte strings stay Uint8Array.
const cborDecoder = new Decoder({ mapsAsObjects: true, useRecords: false });
const cborEncoder = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true });

const MAX_ID_LENGTH = 128;
const MAX_CMD_LENGTH = 64;

export type DecodeResult = { ok: true; request: AdminRequest } | { ok: false; id: RequestId | null; error: AdminError };

/** Parses one frame; never throws: a bad frame becomes an error to send back. */
export function decodeRequest(data: Buffer, isBinary: boolean): DecodeResult {
  const encoding: Encoding = isBinary ? 'cbor' : 'json';
  let value: unknown;
  try {
    value = isBinary ? cborDecoder.decode(data) : JSON.parse(data.toString('utf8'));
  } catch (error) {
    const what = isBinary ? 'not valid CBOR' : 'not valid JSON';
    return { ok: false, id: null, error: new AdminError('BAD_MESSAGE', `${what}: ${(error as Error).message}`, { cause: error }) };
  }
  if (!isPlainObject(value)) return { ok: false, id: null, error: new AdminError('BAD_MESSAGE', 'a request must be an object {id, cmd, args}') };
  const id = value.id;
  const validId = (typeof id === 'string' && id.length > 0 && id.length <= MAX_ID_LENGTH) || (typeof id === 'number' && Number.isSafeInteger(id));
  if (!validId) {
    return { ok: false, id: null, error: new AdminError('BAD_MESSAGE', `id must be a non-empty string (at most ${MAX_ID_LENGTH} characters) or an integer`) };
  }
  if (value.v !== undefined && value.v !== PROTOCOL_VERSION) {
    return { ok: false, id, error: new AdminError('UNSUPPORTED_VERSION', `protocol version ${JSON.stringify(value.v)} is not supported; this server speaks ${PROTOCOL_VERSION}`) };
  }
  const cmd = value.cmd;
  if (typeof cmd !== 'string' || cmd.length === 0 || cmd.length > MAX_CMD_LENGTH) {
    return { ok: false, id, error: new AdminError('BAD_MESSAGE', 'cmd must be a non-empty string') };
  }
  const args = value.args ?? {};
  if (!isPlainObject(args)) return { ok: false, id, error: new AdminError('INVALID_ARGUMENT', 'args must be an object') };
  return { ok: true, request: { id, cmd, args, encoding } };
}

export function okResponse(id: RequestId | null, result: unknown): AdminResponse {
  return { v: PROTOCOL_VERSION, id, ok: true, result: result ?? null };
}

export function errorResponse(id: RequestId | null, error: ErrorBody): AdminResponse {
  return { v: PROTOCOL_VERSION, id, ok: false, error: { code: error.code, message: error.message } };
}

export function eventMessage(event: string, data: unknown): AdminEventMessage {
  return { v: PROTOCOL_VERSION, event, data };
}

/** Encodes a message for the wire; JSON carries byte arrays as base64 text. */
export function encodeMessage(message: AdminResponse | AdminEventMessage, encoding: Encoding): string | Buffer {
  if (encoding === 'cbor') return Buffer.from(cborEncoder.encode(message));
  return JSON.stringify(message, bytesAsBase64);
}

/** JSON text of any answer, bytes as base64 as on the WebSocket (the REST API answers with it). */
export function toJson(value: unknown): string {
  return JSON.stringify(value, bytesAsBase64);
}

function bytesAsBase64(this: unknown, key: string, value: unknown): unknown {
  // JSON.stringify has already applied Buffer#toJSON to `value`; the holder still has the original.
  const original = (this as Record<string, unknown>)[key];
  if (original instanceof Uint8Array) return Buffer.from(original.buffer, original.byteOffset, original.byteLength).toString('base64');
  return value;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}
