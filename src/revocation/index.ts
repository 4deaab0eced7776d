// Revoked devices and certificates: one service per instance, built by Nucleon, read by the MQTT gateway, changed by the admin commands.
export { LocalChannel, RedisChannel, type RevocationChannel } from './channel.js';
export { CrlFile } from './crl-file.js';
export { normalizeSerial, REVOCATIONS_PREFIX, revocationKey, type Notice, type Presented, type Revocation } from './revocation.js';
export { RevocationService, type NoticeListener, type RevokeRequest } from './service.js';
