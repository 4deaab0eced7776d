export { AdminRunner, ADMIN_SUBPROTOCOL, type AdminRunnerOptions, type HealthCheck } from './admin-runner.js';
export { apiKeyFile, readKeyFile, resolveApiKey } from './auth.js';
export { FleetView, KvFleetStore, type DeviceRecord, type FleetStore, type OtaStatus } from './fleet.js';
export type { MetricsExposition } from './http-routes.js';
export { PROTOCOL_VERSION, ADMIN_ERROR_CODES, type AdminErrorCode } from './protocol.js';
