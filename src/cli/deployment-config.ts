/**
 * The deployment configuration `deputy init` writes (./commands/init.ts): YAML with the admin
 * client's public key and commented trusted-issuer templates.
 *
 * @module
 */
import { stringify } from 'yaml';
import type { PublicJwk } from './credentials.js';
import { DEFAULT_URL, insecureAllowed } from './shared.js';

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
