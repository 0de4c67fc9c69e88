/**
 * The OAuth authorization server's protocol core, without Koa and without oidc-provider: the
 * RFC 8693 token exchange as `exchange(input, deps)`, RFC 9449 DPoP proofs and nonces, RFC 9068
 * access tokens at protected resources (RFC 6750 / RFC 9449 §7.1 challenges), token records and
 * revocation (RFC 7009), introspection (RFC 7662), RFC 8414 metadata, the subject-token
 * resolution and Deputy's own scopes and resources.
 *
 * Everything that touches oidc-provider is in `./oidc-provider/` (its own `index.ts`), which this
 * surface does not re-export: the composition root loads it lazily (src/services.ts).
 *
 * @module
 */
export {
  exchange,
  readRequest,
  refuseDeputyOwn,
  ACCESS_TOKEN_TYPE,
  TOKEN_EXCHANGE_GRANT,
  TOKEN_EXCHANGE_GTY,
  TOKEN_EXCHANGE_PARAMETERS,
  UPSTREAM_TOKEN_KIND,
  type AccessTokenMinter,
  type ExchangeDeps,
  type ExchangeInput,
  type MintRequest,
  type MintedToken,
  type TokenExchangeDeps,
  type TokenExchangeParameters,
  type TokenExchangeResponse,
  type VerifiedProof,
} from './token-exchange.js';
export {
  AccessTokenVerifier,
  CredentialsRequired,
  dpopOnlyChallenge,
  withChallenge,
  type AccessTokenClaims,
  type AuthenticateOptions,
  type AuthenticatedRequest,
  type ResourceRequest,
} from './access-token.js';
export {
  DpopNonces,
  DpopVerifier,
  DPOP_REPLAY_NAMESPACE,
  dpopReplayed,
  normalizeHtu,
  sameHtu,
  type DpopRequest,
  type DpopVerifierOptions,
  type UnspentDpopProof,
  type VerifiedDpopProof,
} from './dpop.js';
export {
  AgentNotActive,
  MAX_LINEAGE,
  ParentRevoked,
  RevocationCache,
  TokenRecords,
  type NewTokenRecord,
  type TokenRecord,
  type UserAttributes,
} from './token-records.js';
export { AgentTokenResolver } from './agent-token-resolver.js';
export { introspect, revoke, type IntrospectionDeps } from './introspection.js';
export { authorizationServerMetadata, type MetadataOptions } from './metadata.js';
export {
  resolveSubject,
  subjectTokenKind,
  SubjectTokenError,
  TOKEN_TYPES,
  type DeputySubject,
  type FederatedSubject,
  type Subject,
  type SubjectTokenDeps,
} from './subject-token.js';
export { onceKeyId, purgeExpired, recordEachOnce, recordOnce, type OnceKey } from './adapter.js';
export {
  ADMIN_SCOPE,
  AUTHZEN_SCOPE,
  DEPUTY_SCOPE_NAMESPACES,
  GATEWAY_PREFIX,
  RESOURCE_SCOPES,
  deputyOwnGrantIssues,
  deputyResourceMessage,
  deputyResources,
  deputyScopeMessage,
  isDeputyResource,
  isDeputyScope,
  type AgentGrants,
  type DeputyResources,
} from './deputy-own.js';
export { normalizeHttpUrl } from './uri.js';
