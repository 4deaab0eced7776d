export { ClusterServices } from './services.js';
export { ClusterPresence, type PresenceEntry, type PresenceView, type PresenceListener } from './presence.js';
export { RedisHealth, closeRedis, type RedisHealthReport } from './redis-health.js';
