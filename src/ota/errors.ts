import { errorAnswer, NucleonError, type CodeOf } from '../errors.js';
import type { ErrorInfo } from '../events.js';

/** Codes of OTA management answers (`OtaCommandResult.error.code`): the catalogue's `ota` codes (src/errors.ts). */
export type OtaErrorCode = CodeOf<'ota'>;

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
  return errorAnswer(error, 'STORAGE_FAILED');
}
