/**
 * What `npm start` prints once it listens: what is configured, where the keys are, and where
 * to go next — so a first start on a fresh clone says how to administer it. Never prints
 * secrets: the database URL loses its password, keys are named by folder only.
 *
 * @module
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { DeputyConfig } from './config/schema.js';

/** What `deputy init` writes by default (src/cli/commands/init.ts). */
const INIT_CONFIG = 'deputy.local.yaml';

/**
 * The summary lines (each ends with a newline), given the configuration and the issuer serving (no trailing slash).
 * `exists` tells whether a file is in the working folder (injectable for tests).
 */
export function startupSummary(
  config: DeputyConfig,
  issuer: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
  exists: (file: string) => boolean = existsSync,
): string {
  const store = config.store.databaseUrl ? `PostgreSQL ${redactUrl(config.store.databaseUrl)}` : `embedded PGlite in ${config.store.dataDir.startsWith('memory://') ? 'memory' : resolve(config.store.dataDir)}`;
  const ids = (list: ReadonlyArray<{ id?: string; client_id?: string }>) => (list.length ? list.map((x) => x.id ?? x.client_id).join(', ') : 'none');
  const lines = [
    `  configuration     ${env.DEPUTY_CONFIG || 'config/deputy.yaml (the default; DEPUTY_CONFIG names a deployment file)'}`,
    `  store             ${store}`,
    `  keys              ${resolve(config.keys.dir)} (signing, receipt, vault KEK; back them up)`,
    `  admin clients     ${ids(config.admin.clients)}`,
    `  trusted issuers   ${ids(config.trustedIssuers)}`,
    `  agents (config)   ${ids(config.agents)}`,
    `  policies          ${resolve(config.pdp.policies)}`,
    `  discovery         ${issuer}/.well-known/oauth-authorization-server`,
  ];
  const next = config.admin.clients.length
    ? ['Next: `./bin/deputy.mjs token` for an admin token; `./bin/deputy.mjs --help` for every command.']
    : [
        'Next: no admin client is configured, so nobody can use the admin API yet.',
        // After `deputy init`, a plain `npm start` still reads config/deputy.yaml: say which file
        // to name rather than send the user back to an init that refuses to overwrite.
        !env.DEPUTY_CONFIG && exists(INIT_CONFIG)
          ? `  \`deputy init\` already wrote ${INIT_CONFIG}: start with it, \`DEPUTY_CONFIG=${INIT_CONFIG} npm start\`.`
          : '  `./bin/deputy.mjs init` writes one (key pair + deployment configuration); or try everything locally: `npm run dev`.',
      ];
  return `${[...lines, ...next].join('\n')}\n`;
}

/** A connection URL without its password (user and host kept: they say which database). */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.href;
  } catch {
    return '(unparsable URL)';
  }
}
