/**
 * Configuration: the schema (zod) and the loader (default file → `DEPUTY_CONFIG` → environment).
 * The loader is the only module that reads `process.env` or configuration files.
 *
 * @module
 */
export { ConfigError, DEFAULT_CONFIG_FILE, checkAgentGrants, loadConfig, validateConfig, type LoadConfigOptions } from './load.js';
export {
  adminClientSchema,
  agentPatchSchema,
  agentSchema,
  configSchema,
  withoutTrailingSlash,
  type AdminClientConfig,
  type AgentConfig,
  type ConfigInput,
  type DeputyConfig,
} from './schema.js';
