export { MqttRunner, mqttListens, type MqttRunnerOptions } from './runner.js';
export type { SessionPersistence, SessionStoreOptions } from './persistence.js';
export { embeddedSessions, levelBackend, retainedStoreOptions, type MqttBackend, type Opened } from './session-backends.js';
export { redisSessions, type RedisBackendSettings } from './redis-backend.js';
export { decideDevicePublish, decideServicePublish, mayDeviceSubscribe, mayServiceSubscribe, type Principal } from './acl.js';
export { SERVICE_PREFIX } from './auth.js';
