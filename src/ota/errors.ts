import { NucleonError } from '../errors.js';
import type { ErrorInfo } from '../events.js';

/**
 * Stable codes of OTA management answers (`OtaCommandResult.error.code`);
 * README "OTA" lists them.
 */
export type OtaErrorCode =
  /** The image, group or device link named in the request does not exist. */
  | 'NOT_FOUND'
  /** A malformed id, uid, group name, range or source. */
  | 'INVALID_ARGUMENT'
  /** An image with this id already exists with different bytes. */
  | 'CONFLICT'
  /** The link would move a device to an older image than it runs; send `force` to do it anyway. */
  | 'VERSION_DOWNGRADE'
  /** Storing or reading bytes or metadata failed (disk full, permissions). */
  | 'STORAGE_FAILED';

export class OtaError extends NucleonError {
  constructor(
    override readonly code: OtaErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** What goes back to the admin client: our own errors keep their code, anything else is a storage failure. */
export function toErrorInfo(error: unknown): ErrorInfo {
  if (error instanceof OtaError) return { code: error.code, message: error.message };
  return { code: 'STORAGE_FAILED', message: error instanceof Error ? error.message : String(error) };
}
