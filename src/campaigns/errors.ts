import { errorAnswer, NucleonError, type CodeOf } from '../errors.js';
import type { ErrorInfo } from '../events.js';

/** Codes of campaign management answers (`CampaignCommandResult.error.code`): the catalogue's `campaigns` codes (src/errors.ts). */
export type CampaignErrorCode = CodeOf<'campaigns'>;

export class CampaignError extends NucleonError {
  constructor(
    override readonly code: CampaignErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/**
 * What goes back to the caller: our own errors and the OTA runner's answers
 * keep their code; anything else is a bug or a store failure, reported as
 * INTERNAL (the runner logs it with its stack).
 */
export function toErrorInfo(error: unknown): ErrorInfo {
  return errorAnswer(error, 'INTERNAL');
}
