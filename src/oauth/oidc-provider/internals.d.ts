/**
 * Types for the oidc-provider internals Deputy reaches into (no public API exists for them). The
 * version is pinned exactly in package.json; test/unit/dpop-urls.test.ts fails if this changes.
 * Only this folder (src/oauth/oidc-provider/) and that test may use them.
 */

/** oidc-provider's stateless server challenges (DPoP nonces): Deputy's nonces must equal them. */
declare module 'oidc-provider/lib/helpers/challenge.js' {
  export default class ServerChallenge {
    constructor(secret: Buffer, info: string);
    nextChallenge(): string;
    checkChallenge(challenge: string): boolean;
  }
}

/**
 * The resource and scope resolution of oidc-provider's own grants, reused by Deputy's
 * `client_credentials` handler (./client-credentials-grant.ts) so both resolve alike.
 */
declare module 'oidc-provider/lib/helpers/grant_authorization.js' {
  import type Provider from 'oidc-provider';
  import type { KoaContextWithOIDC, ResourceServerInstance } from 'oidc-provider';
  /** RFC 8707 `resource` (or the configured default) as resource servers; `invalid_target` for an unknown one. */
  export function resolveRequestedResources(provider: Provider, ctx: KoaContextWithOIDC): Promise<ResourceServerInstance[]>;
  /** The requested scopes; `invalid_scope` for a static scope the client may not request. */
  export function validateClientScope(provider: Provider, ctx: KoaContextWithOIDC): Set<string>;
}

/** The AsyncLocalStorage oidc-provider runs each request in (its store: the Koa context). */
declare module 'oidc-provider/lib/helpers/als.js' {
  import type { AsyncLocalStorage } from 'node:async_hooks';
  const als: AsyncLocalStorage<unknown>;
  export default als;
}
