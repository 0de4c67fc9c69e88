/**
 * Everything that touches oidc-provider (pinned, 9.13.3): its configuration and Deputy's patches
 * to its internals live in this folder, and only this folder imports `oidc-provider`. An upgrade
 * of that dependency is this folder's work.
 *
 * - {@link createProvider}: the configured provider (`/token`, `/jwks`, discovery,
 *   `/introspect`, `/revoke`), with DPoP at `/token` verified by Deputy's verifier
 *   (./token-dpop.ts), strict replay detection (./replay.ts), URLs derived from the issuer
 *   (./urls.ts), closed interactive endpoints (./interactive.ts), RFC-conformant
 *   client-authentication errors (./client-authentication.ts) and Deputy's error rendering
 *   (./errors.ts).
 * - {@link tokenExchangeGrant}: the RFC 8693 grant glue over the Koa-free `exchange()`
 *   (../token-exchange.ts), minting through oidc-provider's `AccessToken` model.
 * - {@link jwtBearerGrant}: the RFC 7523 jwt-bearer grant with an ID-JAG
 *   (../identity-assertion.ts), same minter.
 * - {@link agentTokenIntrospection}: the `/introspect` / `/revoke` hook for Deputy's JWTs.
 * - {@link StoreAdapter} / {@link AgentClientAdapter}: the storage adapter over Deputy's store;
 *   {@link deleteClientGrants} drops a deleted agent's grants.
 *
 * @module
 */
export type { default as Provider } from 'oidc-provider';
export { AgentClientAdapter, deleteClientGrants, StoreAdapter } from './adapter.js';
export { PROVIDER_BODY_LIMIT, toDeputyError, type ErrorWriter } from './errors.js';
export { agentTokenIntrospection } from './introspection-hook.js';
export { agentClientMetadata, createProvider, REFRESH_TOKEN_SECONDS, type GrantRegistration, type ProviderDeps } from './provider.js';
export { jwtBearerGrant, type JwtBearerGrantDeps } from './jwt-bearer-grant.js';
export { tokenExchangeGrant, type TokenExchangeGrantDeps } from './token-exchange-grant.js';
export { verifiedTokenProof } from './token-dpop.js';
export { enableCodeFlow, Interactions, type CodeFlowDeps, type ConsentRequest } from './authorization-code.js';
