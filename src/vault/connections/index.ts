/**
 * Connections (DESIGN capability 3): the upstream services agents reach through the gateway,
 * their settings and write-only secrets, the credential sources that inject a credential into an
 * upstream call (API key, RFC 6749 §4.4 client credentials, RFC 8693 on-behalf-of, a user's
 * RFC 6749 §4.1 grant) and the connect flow (RFC 7636 PKCE) that obtains a user's grant.
 *
 * @module
 */
export {
  CONNECTION_ID,
  connectionConfigSchema,
  connectionInputSchema,
  gatewayConfigSchema,
  routeSchema,
  secretRotationSchema,
  secretSourceSchema,
  type ConnectionConfig,
  type ConnectionConfigInput,
  type ConnectionInput,
  type ConnectionKind,
  type ConnectionSettings,
  type GatewayConfig,
  type HttpMethod,
  type RouteConfig,
  type SecretSource,
} from './config.js';
export { ConnectionStore, ConnectionSecretUnavailable, CONNECTION_SECRET_KIND, readSecretSource, type Connection } from './store.js';
export {
  ApiKeySource,
  ClientCredentialsSource,
  CredentialBroker,
  bearer,
  type CallIdentity,
  type Credential,
  type CredentialSource,
} from './credentials.js';
export { DownstreamClients, TokenCache, type CachedToken } from './oauth-client.js';
export { OnBehalfOfSource } from './on-behalf-of.js';
export { UserGrants, NotConnected, type GrantTokens, type UserGrantsDeps } from './user-grants.js';
export { ConnectFlows, CONNECT_COOKIE, type ConnectFlowsDeps } from './connect-flows.js';
