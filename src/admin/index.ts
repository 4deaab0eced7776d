export { AdminRunner, ADMIN_SUBPROTOCOL, type AdminRunnerOptions, type HealthCheck } from './admin-runner.js';
export { apiKeyFile, readKeyFile } from './auth.js';
export { FleetView, KvPresenceStore, type DeviceRecord, type PresenceStore, type OtaStatus, type SharedPresence, type SharedPresenceEntry } from './fleet.js';
export { PROTOCOL_VERSION, ADMIN_ERROR_CODES, type AdminErrorCode } from './protocol.js';
