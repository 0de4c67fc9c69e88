/**
 * `deputy init`: everything a first deployment needs to be administered — an admin client key
 * pair (private part in a credentials file, mode 0600; public part in the configuration) and a
 * deployment configuration using it, with commented trusted-issuer templates for Okta, Entra ID
 * and a generic OIDC provider. Refuses to overwrite either file without `--force`.
 *
 * @module
 */
import { existsSync, writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { stringify } from 'yaml';
import { newKeyPair, writeSecretJson, type PublicJwk } from '../credentials.js';
import { CliError, EXIT } from '../errors.js';
import { insecureAllowed } from '../oauth.js';
import { baseOf, DEFAULT_URL, globals, printJson, type Io } from '../shared.js';

interface InitOptions {
  config: string;
  clientId: string;
  issuer: string;
  force?: boolean;
}

/** The deployment configuration `init` writes (YAML, comments included). */
export function deploymentConfig(o: { clientId: string; issuer: string; publicJwk: PublicJwk }): string {
  const admin = stringify({ admin: { clients: [{ client_id: o.clientId, scopes: ['deputy:admin', 'authzen:evaluate'], jwks: { keys: [o.publicJwk] } }] } });
  const local = insecureAllowed(o.issuer);
  const issuerLine = o.issuer === DEFAULT_URL ? `  # issuer: https://deputy.example.com   # set it behind a proxy (docs/production.md)` : `  issuer: ${o.issuer}`;
  // A local issuer names the port Deputy listens on; behind a proxy the listening port is another matter.
  const portLine = local && new URL(o.issuer).port ? `\n  port: ${new URL(o.issuer).port}` : '';
  return `# Deputy deployment configuration, written by \`deputy init\`. Start with it:
#   DEPUTY_CONFIG=${'$'}{PWD}/<this file> npm start
# Anything left out takes the default of config/deputy.yaml (every option: src/config/schema.ts).

server:
${issuerLine}${portLine}

# The admin client \`deputy init\` created: its private key is in the credentials file (mode 0600),
# used by \`deputy token\`, \`deputy agents …\` and the other admin commands. It may also evaluate
# at the PDP (scope authzen:evaluate). Register more clients here (one per tool or PEP).
${admin.trimEnd()}

# Enterprise IdPs whose users' tokens agents may exchange (README "Federation").
trustedIssuers: []
# Okta (a custom authorization server; its Audience setting = audience below):
# - id: okta
#   preset: okta
#   issuer: https://YOUR-ORG.okta.com/oauth2/default
#   audience: api://deputy
# Microsoft Entra ID (one tenant; v2 tokens carry the client id, v1 the App ID URI):
# - id: entra
#   preset: entra
#   issuer: https://login.microsoftonline.com/YOUR-TENANT-ID/v2.0
#   audience: [YOUR-DEPUTY-APP-CLIENT-ID, api://deputy]
# Any other OIDC provider:
# - id: corp-oidc
#   preset: oidc
#   issuer: https://idp.example.com
#   audience: deputy
#   algorithms: [RS256]
# A local development IdP on plain http needs allowInsecureHttp: true (never in production).

# Agents (or register them with \`deputy agents create\`).
agents: []
`;
}

/** `deputy init`. */
export function initCommand(io: Io, done: (code: number) => void): Command {
  return new Command('init')
    .description('create an admin client key pair and a deployment configuration using it (refuses to overwrite without --force)')
    .option('--config <file>', 'the configuration to write', 'deputy.local.yaml')
    .option('--client-id <id>', 'the admin client id', 'deputy-admin')
    .option('--issuer <url>', "Deputy's public URL (its OAuth issuer)", DEFAULT_URL)
    .option('--force', 'overwrite existing files')
    .action(async (o: InitOptions, c: Command) => {
      const g = globals(c, io);
      insecureAllowed(o.issuer);
      const existing = [o.config, g.credentials].filter((f) => existsSync(f));
      if (existing.length && !o.force) throw new CliError(`${existing.join(' and ')} already exist${existing.length === 1 ? 's' : ''}; nothing written (--force overwrites)`);
      const { privateJwk, publicJwk } = await newKeyPair();
      const issuer = baseOf(o.issuer);
      writeSecretJson(g.credentials, { client_id: o.clientId, issuer, private_jwk: privateJwk });
      writeFileSync(o.config, deploymentConfig({ clientId: o.clientId, issuer, publicJwk }), { mode: 0o644 });
      if (g.json) printJson(io, { config: o.config, credentials: g.credentials, client_id: o.clientId, issuer, kid: publicJwk.kid });
      else io.out(nextSteps(o.config, g.credentials, o.clientId, issuer));
      done(EXIT.ok);
    });
}

function nextSteps(config: string, credentials: string, clientId: string, issuer: string): string {
  return `wrote ${config}        (deployment configuration; admin client "${clientId}")
wrote ${credentials}   (its private key, mode 0600 — keep it out of version control)

Next:
  DEPUTY_CONFIG=${config} npm start        # Deputy on ${issuer}
  ./bin/deputy.mjs token                    # an admin token (deputy:admin)
  ./bin/deputy.mjs agents list              # the admin API, authenticated with ${credentials}
  edit ${config}: trustedIssuers (Okta, Entra ID, OIDC templates inside), agents
Or try everything locally first: npm run dev
`;
}
