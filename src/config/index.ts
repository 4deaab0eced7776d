export { aclRuleSchema, configSchema, DEFAULT_ADMIN_KEY_NAME, MAX_WORKERS, type Config, type ConfigInput } from './schema.js';
export { loadConfigFile, validateConfig, defaultConfig, workersNeedRedis, CONFIG_ENV, type LoadedConfig } from './load.js';
