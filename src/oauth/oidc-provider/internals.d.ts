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

/**
 * oidc-provider's grant helpers (`initialize_app.js` binds each to the provider and hands them to
 * the built-in grant handlers). Deputy's code-flow grants (./code-flow-grants.ts) pass the bound
 * set with `validateDpop` and `checkDpopReplay` replaced: only those two are typed here.
 */
declare module 'oidc-provider/lib/helpers/grants.js' {
  /** Every helper takes the provider first; the rest is opaque to Deputy. */
  type Helper = (provider: unknown, ...args: never[]) => unknown;
  /** The helpers as the handlers receive them, bound to the provider. */
  export interface GrantHelpers {
    [name: string]: unknown;
    /** The request's proof as `{ thumbprint, jti, iat }`, or undefined when it sent none. */
    validateDpop: (ctx: object) => Promise<{ thumbprint: string; jti: string; iat: number } | undefined>;
    checkDpopReplay: (...args: never[]) => Promise<void>;
  }
  export const validateDpop: Helper;
  export const checkDpopReplay: Helper;
}

/** A built-in grant of oidc-provider: its handler takes the provider and the bound helpers first. */
declare module 'oidc-provider/lib/actions/grants/authorization_code.js' {
  import type Provider from 'oidc-provider';
  import type { KoaContextWithOIDC } from 'oidc-provider';
  import type { GrantHelpers } from 'oidc-provider/lib/helpers/grants.js';
  export const grantType: 'authorization_code';
  export const parameters: ReadonlySet<string>;
  export function handler(provider: Provider, helpers: GrantHelpers, ctx: KoaContextWithOIDC): Promise<void>;
}

/** As above, for `refresh_token`. */
declare module 'oidc-provider/lib/actions/grants/refresh_token.js' {
  import type Provider from 'oidc-provider';
  import type { KoaContextWithOIDC } from 'oidc-provider';
  import type { GrantHelpers } from 'oidc-provider/lib/helpers/grants.js';
  export const grantType: 'refresh_token';
  export const parameters: ReadonlySet<string>;
  export function handler(provider: Provider, helpers: GrantHelpers, ctx: KoaContextWithOIDC): Promise<void>;
}
