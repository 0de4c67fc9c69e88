/**
 * The RFC 7523 §2.1 jwt-bearer grant with an ID-JAG as oidc-provider sees it:
 * `registerGrantType` glue that reads the request into plain values, runs the Koa-free
 * {@link grantIdentityAssertion} (../identity-assertion.ts) and signs through the same
 * {@link ProviderMinter} as token exchange.
 *
 * Like token exchange it folds the request's single-use values (./token-spends.ts): the DPoP
 * proof and client assertion `jti`s are recorded in the issuing transaction, with the ID-JAG's
 * own `jti` — one commit, and the assertion spent exactly when a token is issued from it.
 *
 * @module
 */
import type { KoaContextWithOIDC } from 'oidc-provider';
import { grantIdentityAssertion, JWT_BEARER_GRANT, JWT_BEARER_PARAMETERS, type IdentityAssertionDeps } from '../identity-assertion.js';
import type { GrantRegistration } from './provider.js';
import { exchangeInput, ProviderMinter, type TokenExchangeGrantDeps } from './token-exchange-grant.js';
import { pendingSpends, settleSpends } from './token-spends.js';

/** What the grant needs: the exchange's dependencies, the ID-JAG policy, the signing keys. */
export type JwtBearerGrantDeps = TokenExchangeGrantDeps & Pick<IdentityAssertionDeps, 'idJag'>;

/** The grant registration for `createProvider({ grants })`; register it only when ID-JAGs are accepted. */
export function jwtBearerGrant(deps: JwtBearerGrantDeps): GrantRegistration {
  return {
    grantType: JWT_BEARER_GRANT,
    parameters: JWT_BEARER_PARAMETERS,
    allowedDuplicateParameters: ['resource'],
    // As token exchange (./token-exchange-grant.ts): the proof and client assertion are recorded
    // by the issuing statement, which refuses a replay with the replayed value's own error; what a
    // refused request leaves is spent by ./token-dpop.ts afterwards — never the ID-JAG, whose own
    // `jti` is looked up before any work and spent only with an issued token.
    foldsSpends: true,
    handler: async (ctx) => {
      const oidc = ctx as unknown as KoaContextWithOIDC;
      const input = { ...exchangeInput(oidc), spends: [...pendingSpends(ctx)] };
      oidc.body = await grantIdentityAssertion(input, { ...deps, minter: new ProviderMinter(oidc, deps.keys) });
      settleSpends(ctx);
    },
  };
}
