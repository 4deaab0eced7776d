export { MqttRunner, mqttListens, levelBackend, type MqttBackend, type MqttRunnerOptions, type Opened } from './runner.js';
export type { SessionPersistence, SessionStoreOptions } from './persistence.js';
export { embeddedSessions, retainedStoreOptions } from './session-backends.js';
export { decideDevicePublish, decideServicePublish, mayDeviceSubscribe, mayServiceSubscribe, type Principal } from './acl.js';
export { SERVICE_PREFIX } from './auth.js';
