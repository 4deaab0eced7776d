// Device presence: one service, built once by Nucleon, written by the MQTT gateway, read by every runner.
export type { DeviceConnection, Presence, PresenceEntry, PresenceListener, PresenceService } from './presence.js';
export { LocalPresence } from './local.js';
export { RedisPresence, type RedisPresenceSettings } from './redis.js';
export { newInstanceId } from './instance-id.js';
