import type { Config } from '../config/index.js';
import type { RevocationService } from '../revocation/index.js';
import type { Runner } from '../runner.js';
import { OtaHttpRunner } from './http-server.js';
import { OtaRunner, type OtaRunnerOptions } from './runner.js';

export { OtaRunner, type OtaRunnerOptions, type DownloadPath } from './runner.js';
export { OtaHttpRunner } from './http-server.js';
export { OtaError, type OtaErrorCode } from './errors.js';
export type { NewImage, AddImageResult, DeleteResult, LinkRequest, LinkResult, UnlinkRequest, UnlinkResult } from './catalog.js';

/**
 * The built-in OTA runners: the worker (`ota`) when `ota.enabled`, and the download server
 * (`ota-http`) when `ota.http.enabled`. The HTTP runner reads through the
 * worker, which starts before it and stops after it.
 */
export function otaRunners(config: Readonly<Config>, options: OtaRunnerOptions = {}, revocations?: RevocationService): Runner[] {
  if (!config.ota.enabled) return [];
  const ota = new OtaRunner(options);
  return config.ota.http.enabled ? [ota, new OtaHttpRunner(ota, revocations)] : [ota];
}

/**
 * The OTA runner of a Nucleon instance, for its typed API (`addImage`, `link`, `deviceState`, ...).
 * Takes anything with `runner(name)` (a `Nucleon`), so this folder need not import the wiring.
 */
export function otaRunnerOf(nucleon: { runner(name: string): Runner | undefined }): OtaRunner {
  const runner = nucleon.runner('ota');
  if (!(runner instanceof OtaRunner)) throw new Error('this Nucleon has no OTA runner (ota.enabled = false?)');
  return runner;
}
