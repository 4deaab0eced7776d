// The library API: `createNucleon(config)` and what an application runner needs.
export { createNucleon, Nucleon, type NucleonOptions } from './nucleon.js';
export { stopOnSignals } from './signals.js';
export { runWorkers, type WorkersOptions, type WorkerSetup } from './workers/index.js';
export { EventRunner, type Runner, type RunnerContext } from './runner.js';
export { EventBroker, type RunnerStats } from './broker/index.js';
export * from './events.js';
export { loadConfigFile, validateConfig, defaultConfig, type Config, type ConfigInput } from './config/index.js';
export * from './errors.js';
export { createLogger, silentLogger, type Logger } from './logger.js';
export * as protocol from './protocol/index.js';
export type { KvStore } from './store/index.js';
export type { Presence, PresenceEntry, PresenceListener } from './presence/index.js';
export { OtaRunner, OtaHttpRunner, OtaError, otaRunnerOf, type OtaErrorCode, type NewImage, type LinkRequest, type UnlinkRequest } from './ota/index.js';
export { CampaignRunner, CampaignError, campaignRunnerOf, parseCampaignSpec, type CampaignErrorCode, type CampaignSpec } from './campaigns/index.js';
