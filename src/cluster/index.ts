export { ClusterServices } from './services.js';
export { RedisHealth, closeRedis, type RedisHealthReport } from './redis-health.js';
