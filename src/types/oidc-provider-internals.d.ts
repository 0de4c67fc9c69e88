/**
 * Types for the oidc-provider internals Deputy uses (no public API exists for DPoP in custom
 * grants; see shared notes P1). The version is pinned exactly in package.json and the
 * token-exchange tests fail if these signatures change.
 */
declare module 'oidc-provider/lib/helpers/validate_dpop.js' {
  import type Provider from 'oidc-provider';
  import type { KoaContextWithOIDC } from 'oidc-provider';

  export interface DpopResult {
    thumbprint: string;
    jti: string;
    iat: number;
  }
  export default function validateDpop(provider: Provider, ctx: KoaContextWithOIDC, accessToken?: string): Promise<DpopResult | undefined>;
  export function checkDpopReplay(provider: Provider, ctx: KoaContextWithOIDC, dPoP: DpopResult, clientId: string): Promise<void>;
  export function getDpopJwt(provider: Provider, ctx: KoaContextWithOIDC): { payload: Record<string, unknown> } | undefined;
}

/** oidc-provider's stateless server challenges (DPoP nonces): Deputy's nonces must equal them. */
declare module 'oidc-provider/lib/helpers/challenge.js' {
  export default class ServerChallenge {
    constructor(secret: Buffer, info: string);
    nextChallenge(): string;
    checkChallenge(challenge: string): boolean;
  }
}
