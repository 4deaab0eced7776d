export { MqttRunner, mqttListens } from './runner.js';
export { decideDevicePublish, decideServicePublish, mayDeviceSubscribe, mayServiceSubscribe, type Principal } from './acl.js';
export { SERVICE_PREFIX } from './auth.js';
