/**
 * Loading configuration: default file → deployment file (`DEPUTY_CONFIG`) → environment.
 *
 * This is the only module that reads `process.env` or configuration files. An invalid
 * configuration throws {@link ConfigError}, whose message names every failing field, and
 * nothing else has been started by then.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { deputyOwnGrantIssues } from '../oauth/deputy-own.js';
import { protoMemberRefusals, setMember } from '../util/own-member.js';
import { configSchema, type AgentConfig, type ConfigInput, type DeputyConfig } from './schema.js';

/** The shipped, documented default file. */
export const DEFAULT_CONFIG_FILE = fileURLToPath(new URL('../../config/deputy.yaml', import.meta.url));

/** Invalid configuration. `issues` lists each failing field as `path: problem`. */
export class ConfigError extends Error {
  readonly code = 'ERR_DEPUTY_CONFIG';
  constructor(
    readonly source: string,
    readonly issues: readonly string[],
  ) {
    super(`invalid configuration (${source}):\n  - ${issues.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** What {@link loadConfig} reads: the environment (`env`), the deployment file and overrides (injectable for tests). */
export interface LoadConfigOptions {
  /** Environment to read overrides from; defaults to `process.env`. */
  env?: Env;
  /** A configuration file to use instead of `DEPUTY_CONFIG` / the default file. */
  file?: string;
  /** Values merged over the file (tests, embedding), before environment overrides. */
  overrides?: ConfigInput;
}

/** Reads, merges, validates and freezes the configuration. */
export function loadConfig(options: LoadConfigOptions = {}): DeputyConfig {
  const env = options.env ?? process.env;
  // An empty DEPUTY_CONFIG (e.g. `DEPUTY_CONFIG=${DEPUTY_CONFIG}` in a compose file) means unset, like other variables.
  const file = options.file ?? (env.DEPUTY_CONFIG || DEFAULT_CONFIG_FILE);
  const fromFile = readConfigFile(file);
  const merged = applyEnv(deepMerge(fromFile, (options.overrides ?? {}) as Record<string, unknown>), env, file);
  return validateConfig(merged, file, env);
}

/** Validates an already-merged configuration object. */
export function validateConfig(input: unknown, source: string, env: Env = {}): DeputyConfig {
  // A member named `__proto__` is refused by path (src/util/own-member.ts: zod would drop it silently).
  const refused = protoMemberRefusals(input);
  if (refused.length) throw new ConfigError(source, refused);
  const result = configSchema.safeParse(input);
  if (!result.success) throw new ConfigError(source, formatIssues(result.error, env, input));
  const cfg = result.data;
  checkUniqueIds(cfg, source);
  const issuer = cfg.server.issuer ?? (cfg.server.port !== 0 ? `http://localhost:${cfg.server.port}` : undefined);
  if (issuer !== undefined) checkAgentGrants(cfg.agents, issuer, source);
  const generate = cfg.keys.generate ?? env.NODE_ENV !== 'production';
  return deepFreeze({ ...cfg, keys: { ...cfg.keys, generate } });
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read file: ${(err as NodeJS.ErrnoException).code ?? 'unknown error'}`]);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(file, [`not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`]);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(file, ['(root): must be a mapping']);
  return doc as Record<string, unknown>;
}

/** Environment variables that override file values, with the field each one sets. */
const ENV_OVERRIDES: ReadonlyArray<readonly [string, readonly string[], 'string' | 'int' | 'bool']> = [
  ['PORT', ['server', 'port'], 'int'],
  ['HOST', ['server', 'host'], 'string'],
  ['DEPUTY_ISSUER', ['server', 'issuer'], 'string'],
  ['DEPUTY_TRUST_PROXY', ['server', 'trustProxy'], 'bool'],
  ['DEPUTY_WORKERS', ['server', 'workers'], 'int'],
  ['DATABASE_URL', ['store', 'databaseUrl'], 'string'],
  ['DEPUTY_DATA_DIR', ['store', 'dataDir'], 'string'],
  ['DEPUTY_CHECKPOINT_MAX_WAL_MB', ['store', 'checkpoint', 'maxWalMegabytes'], 'int'],
  ['DEPUTY_CHECKPOINT_TIMEOUT', ['store', 'checkpoint', 'timeoutSeconds'], 'int'],
  ['DEPUTY_PGLITE_THREAD', ['store', 'pglite', 'thread'], 'string'],
  ['DEPUTY_KEYS_DIR', ['keys', 'dir'], 'string'],
  ['DEPUTY_GENERATE_KEYS', ['keys', 'generate'], 'bool'],
  ['DEPUTY_ACCESS_TOKEN_TTL', ['tokens', 'accessTokenTTL'], 'int'],
  ['DEPUTY_DPOP_REQUIRE_NONCE', ['dpop', 'requireNonce'], 'bool'],
  ['DEPUTY_CLIENT_ASSERTION_AUDIENCE', ['oauth', 'clientAssertionAudience'], 'string'],
  ['LOG_LEVEL', ['log', 'level'], 'string'],
  ['DEPUTY_METRICS_LISTEN', ['metrics', 'listen'], 'string'],
];

function applyEnv(cfg: Record<string, unknown>, env: Env, source: string): Record<string, unknown> {
  const issues: string[] = [];
  for (const [name, path, type] of ENV_OVERRIDES) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    const value = coerce(raw, type);
    if (value === undefined) {
      issues.push(`${name} (${path.join('.')}): must be ${type === 'int' ? 'an integer' : 'true or false'}`);
      continue;
    }
    setPath(cfg, path, value);
  }
  if (issues.length) throw new ConfigError(`${source} + environment`, issues);
  return cfg;
}

function coerce(raw: string, type: 'string' | 'int' | 'bool'): string | number | boolean | undefined {
  if (type === 'string') return raw;
  if (type === 'int') return /^\d+$/.test(raw) ? Number(raw) : undefined;
  if (/^(1|true|yes)$/i.test(raw)) return true;
  if (/^(0|false|no)$/i.test(raw)) return false;
  return undefined;
}

function setPath(obj: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let cur = obj;
  for (const key of path.slice(0, -1)) {
    const next = Object.hasOwn(cur, key) ? cur[key] : undefined;
    if (typeof next !== 'object' || next === null) cur[key] = {};
    cur = cur[key] as Record<string, unknown>;
  }
  cur[path[path.length - 1]!] = value;
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    // Own members only, and `__proto__` kept a member (for protoMemberRefusals to refuse by name), not made the prototype.
    const b = Object.hasOwn(out, k) ? out[k] : undefined;
    setMember(out, k, isPlainObject(b) && isPlainObject(v) ? deepMerge(b, v) : v);
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Each issue as `path: message`; a field an environment variable set is named by the variable
 * too (`PORT (server.port): Too big: …`, as a malformed value's issue is): the value is not in the
 * file the error names, so `server.port: Too big` sent an operator who set `PORT=70000` looking in
 * the YAML (issue 16, ninth round red team).
 */
function formatIssues(error: z.ZodError, env: Env, input: unknown): string[] {
  return error.issues.map((i) => {
    const path = i.path.join('.');
    const variable = ENV_OVERRIDES.find(([name, fieldPath]) => fieldPath.join('.') === path && env[name] !== undefined && env[name] !== '');
    return `${variable === undefined ? '' : `${variable[0]} (`}${path || '(root)'}${variable === undefined ? '' : ')'}${agentNamed(i.path, input)}: ${i.message}`;
  });
}

/** ` (agent "a")` when `path` is inside the agent the file lists with id `a`: `agents.7` alone sends an operator counting entries. */
function agentNamed(path: readonly PropertyKey[], input: unknown): string {
  if (path[0] !== 'agents' || typeof path[1] !== 'number' || path.length < 3) return '';
  const agents = isPlainObject(input) ? input.agents : undefined;
  const id = Array.isArray(agents) && isPlainObject(agents[path[1]]) ? (agents[path[1]] as Record<string, unknown>).id : undefined;
  return typeof id === 'string' ? ` (agent ${JSON.stringify(id.slice(0, 128))})` : '';
}

function checkUniqueIds(cfg: z.infer<typeof configSchema>, source: string): void {
  const seen = new Map<string, string>();
  const issues: string[] = [];
  const check = (id: string, where: string) => {
    const prev = seen.get(id);
    if (prev) issues.push(`${where}: client id "${id}" is already used by ${prev}`);
    else seen.set(id, where);
  };
  cfg.agents.forEach((a, i) => check(a.id, `agents.${i}.id`));
  cfg.admin.clients.forEach((c, i) => check(c.client_id, `admin.clients.${i}.client_id`));
  if (issues.length) throw new ConfigError(source, issues);
}

/**
 * Configured agents may not list Deputy's own resources (src/oauth/deputy-own.ts) among their
 * audiences. Needs the issuer: `validateConfig` runs it when the issuer is known from the
 * configuration, `startDeputy` once the server listens (port 0 picks the port then).
 *
 * @throws {ConfigError} naming each field, e.g. `agents.0.audiences.1`.
 */
export function checkAgentGrants(agents: readonly AgentConfig[], issuer: string, source: string): void {
  // `audiences.1: …` → `agents.0.audiences.1 (agent "a"): …`, as the schema's issues name the agent (formatIssues).
  const issues = agents.flatMap((a, i) => deputyOwnGrantIssues({ audiences: a.audiences }, issuer).map((issue) => `agents.${i}.${issue.replace(/^([^:]*):/, `$1 (agent ${JSON.stringify(a.id)}):`)}`));
  if (issues.length) throw new ConfigError(source, issues);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
