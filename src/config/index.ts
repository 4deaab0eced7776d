export { aclRuleSchema, configSchema, type Config, type ConfigInput } from './schema.js';
export { loadConfigFile, validateConfig, defaultConfig, CONFIG_ENV, type LoadedConfig } from './load.js';
