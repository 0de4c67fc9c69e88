/**
 * DEVELOPMENT ONLY: `deputy dev` / `npm run dev` — Deputy on http://localhost, a development IdP
 * (./idp.ts, trusted with `allowInsecureHttp`, the only issuer that ever is), a sample agent
 * ("researcher") and a connection ("crm") to a stand-in API (./upstream.ts), plus ready-to-paste
 * commands for an exchange, an AuthZEN evaluation and a gateway call.
 *
 * Nothing persists: the database is in memory; keys and client credentials are written afresh
 * into the dev folder (default `.deputy-dev/`, git-ignored) at every start, so the printed
 * commands always match the running server. That folder is locked first (src/store/lock.ts, as a
 * data folder): a second `deputy dev` on it stops before writing anything, instead of replacing
 * the credentials the first one's printed commands use.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { newKeyPair, writeSecretJson } from '../cli/credentials.js';
import { validateConfig } from '../config/load.js';
import { createLogger, type Logger } from '../log.js';
import { lockDataDir, type DataDirLock } from '../store/index.js';
import { freePort } from '../util/net.js';
import { startDeputy, type DeputyServer } from '../main.js';
import { DEV_IDP_AUDIENCE, DEV_IDP_DEFAULT_USER, startDevIdp, type DevIdp } from './idp.js';
import { startDevUpstream, type DevUpstream } from './upstream.js';

export interface DevOptions {
  /** Deputy's port (0 = a free port, chosen before start so the issuer is known). */
  port: number;
  /** The development IdP's port (0 = any free port). */
  idpPort: number;
  /** Folder for the dev keys and credentials files. */
  dir: string;
  logger?: Logger;
}

export interface DevEnvironment {
  readonly deputy: DeputyServer;
  readonly idp: DevIdp;
  readonly upstream: DevUpstream;
  /** Files the printed commands use, relative to the working folder. */
  readonly files: { admin: string; agent: string; agentDpop: string; keys: string; dir: string };
  /** The banner and ready-to-paste commands. */
  readonly instructions: string;
  close(): Promise<void>;
}

export const DEV_AGENT = 'researcher';
export const DEV_CONNECTION = 'crm';

/**
 * Starts the development environment; on failure closes what it opened and throws.
 *
 * @throws DataDirLocked when another process (another `deputy dev`) holds `options.dir`: nothing
 *   was written or started.
 */
export async function startDevEnvironment(options: DevOptions): Promise<DevEnvironment> {
  mkdirSync(options.dir, { recursive: true, mode: 0o700 });
  // Before any file is written or port bound: the folder's files belong to the process holding it.
  const lock = lockDataDir(options.dir);
  const started = await startServices(options, lock).catch((err: unknown) => {
    lock.release();
    throw err;
  });
  return started;
}

async function startServices(options: DevOptions, lock: DataDirLock): Promise<DevEnvironment> {
  const idp = await startDevIdp(options.idpPort);
  const upstream = await startDevUpstream(0).catch(async (err: unknown) => {
    await idp.close();
    throw err;
  });
  try {
    const admin = await newKeyPair();
    const agent = await newKeyPair();
    const files = {
      admin: shortPath(join(options.dir, 'admin-client.json')),
      agent: shortPath(join(options.dir, `${DEV_AGENT}.json`)),
      agentDpop: shortPath(join(options.dir, `${DEV_AGENT}-dpop.json`)),
      keys: shortPath(join(options.dir, 'keys')),
      dir: shortPath(options.dir),
    };
    // The issuer must be known before the agent's audiences are: listen on the port asked for.
    const port = options.port || (await freePort());
    const config = devConfig({ ...options, port }, idp.issuer, upstream.base, admin.publicJwk, agent.publicJwk);
    const deputy = await startDeputy({
      config,
      logger: options.logger ?? createLogger('warn'),
      env: { CRM_API_KEY: `sk_dev_${randomBytes(16).toString('hex')}` },
    });
    writeSecretJson(files.admin, { client_id: 'dev-admin', issuer: deputy.issuer, private_jwk: admin.privateJwk });
    writeSecretJson(files.agent, { client_id: DEV_AGENT, issuer: deputy.issuer, private_jwk: agent.privateJwk });
    return {
      deputy, idp, upstream, files,
      instructions: instructions(deputy.issuer, idp.issuer, upstream.base, files),
      async close() {
        await deputy.close(100);
        await upstream.close();
        await idp.close();
        lock.release();
      },
    };
  } catch (err) {
    await upstream.close();
    await idp.close();
    throw err;
  }
}

/** A path as the printed commands use it: relative to the working folder when inside it, else absolute. */
function shortPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : resolve(path);
}

function devConfig(o: DevOptions, idpIssuer: string, upstreamBase: string, adminJwk: object, agentJwk: object) {
  const issuer = `http://localhost:${o.port}`;
  return validateConfig(
    {
      server: { port: o.port, host: '127.0.0.1', shutdownGraceSeconds: 1 },
      store: { dataDir: 'memory://' },
      keys: { dir: join(o.dir, 'keys'), generate: true },
      admin: { clients: [{ client_id: 'dev-admin', scopes: ['deputy:admin', 'authzen:evaluate'], jwks: { keys: [adminJwk] } }] },
      // The one place an http: issuer is trusted: a development IdP on this machine.
      trustedIssuers: [{ id: 'dev-idp', preset: 'oidc', issuer: idpIssuer, audience: DEV_IDP_AUDIENCE, allowInsecureHttp: true }],
      agents: [
        {
          id: DEV_AGENT, name: 'Research agent (dev sample)', owner: DEV_IDP_DEFAULT_USER,
          scopes: ['crm.read', 'crm.write'], audiences: [`${issuer}/gw/${DEV_CONNECTION}`], jwks: { keys: [agentJwk] },
        },
      ],
      connections: [
        {
          id: DEV_CONNECTION, kind: 'api_key', name: 'Dev CRM (echo)', baseUrl: `${upstreamBase}/crm/v1`, allowInsecureHttp: true,
          header: 'X-Api-Key', secret: { env: 'CRM_API_KEY' }, requiredScopes: ['crm.read'],
          routes: [
            { methods: ['GET'], path: '/customers/**', action: 'crm.read_customer' },
            { methods: ['DELETE'], path: '/customers/*', action: 'crm.delete_customer', scopes: ['crm.write'] },
          ],
        },
      ],
    },
    'deputy dev',
  );
}

/**
 * The commands to paste. README "Try it by hand in five minutes" shows this very block (with
 * http://localhost:3000, http://127.0.0.1:3001 and `.deputy-dev/`), and
 * test/features/readme-snippets.test.ts checks that the two stay the same.
 */
export function quickStartCommands(issuer: string, idp: string, dir: string): string {
  const d = dir.replace(/\/$/, '');
  return `deputy() { node "$PWD/bin/deputy.mjs" "$@"; }    # or \`npm link\` once: deputy is then on your PATH
export DEPUTY_URL=${issuer} DEPUTY_CREDENTIALS=${d}/admin-client.json
# 1. Alice signs in at the development IdP; her app hands her token to the agent
USER_TOKEN=$(curl -s -X POST ${idp}/dev/user-token -d sub=${DEV_IDP_DEFAULT_USER} -d scope='crm.read crm.write')
# 2. The agent exchanges it (RFC 8693, DPoP) for a token for the CRM connection
AGENT_TOKEN=$(deputy exchange --credentials ${d}/${DEV_AGENT}.json --dpop-key ${d}/${DEV_AGENT}-dpop.json \\
  --subject-token "$USER_TOKEN" --resource $DEPUTY_URL/gw/${DEV_CONNECTION} --scope crm.read)
# 3. A gateway call with the token and a fresh DPoP proof: the CRM gets the API key Deputy injects
curl -s -w '\\n' $DEPUTY_URL/gw/${DEV_CONNECTION}/customers/42 -H "authorization: DPoP $AGENT_TOKEN" \\
  -H "dpop: $(deputy dpop-proof --key ${d}/${DEV_AGENT}-dpop.json --htm GET --htu $DEPUTY_URL/gw/${DEV_CONNECTION}/customers/42 --token "$AGENT_TOKEN")"
# 4. An AuthZEN evaluation over the whole delegation chain, as a PEP
PEP=$(deputy token --scope authzen:evaluate)
curl -s -w '\\n' $DEPUTY_URL/access/v1/evaluation -H "authorization: Bearer $PEP" -H 'content-type: application/json' \\
  -d '{"subject":{"type":"Agent","id":"${DEV_AGENT}","properties":{"token":"'"$AGENT_TOKEN"'"}},"action":{"name":"read"},
       "resource":{"type":"Resource","id":"customer-42","properties":{"owner":"${DEV_IDP_DEFAULT_USER}","scope":"crm.read"}}}'
`;
}

function instructions(issuer: string, idp: string, upstream: string, f: DevEnvironment['files']): string {
  return `
DEVELOPMENT ONLY — nothing here is fit for production: the IdP below signs a token for any user
who asks, is trusted over plain http (allowInsecureHttp), and the database lives in memory.

  Deputy            ${issuer}   (embedded PGlite in memory, keys in ${f.keys})
  development IdP   ${idp}   (issuer trusted as "dev-idp", audience "${DEV_IDP_AUDIENCE}")
  dev CRM (echo)    ${upstream}/crm/v1   (connection "${DEV_CONNECTION}", its API key only in Deputy's vault)
  admin client      dev-admin   credentials ${f.admin}
  agent             ${DEV_AGENT}   credentials ${f.agent}

Paste into another shell, in this folder (README "Try it by hand in five minutes" goes on from here):

${quickStartCommands(issuer, idp, f.dir)}
More: deputy --help, deputy agents list, deputy receipts export ${DEV_AGENT} | deputy receipts verify - --jwks $DEPUTY_URL/receipts/jwks

Stop with Ctrl-C.
`;
}
