/**
 * The RFC 7523 §2.1 jwt-bearer grant with an ID-JAG as oidc-provider sees it:
 * `registerGrantType` glue that reads the request into plain values, runs the Koa-free
 * {@link grantIdentityAssertion} (../identity-assertion.ts) and signs through the same
 * {@link ProviderMinter} as token exchange.
 *
 * @module
 */
import type { KoaContextWithOIDC } from 'oidc-provider';
import { grantIdentityAssertion, JWT_BEARER_GRANT, JWT_BEARER_PARAMETERS, type IdentityAssertionDeps } from '../identity-assertion.js';
import type { GrantRegistration } from './provider.js';
import { exchangeInput, ProviderMinter, type TokenExchangeGrantDeps } from './token-exchange-grant.js';

/** What the grant needs: the exchange's dependencies, the ID-JAG policy, the signing keys. */
export type JwtBearerGrantDeps = TokenExchangeGrantDeps & Pick<IdentityAssertionDeps, 'idJag'>;

/** The grant registration for `createProvider({ grants })`; register it only when ID-JAGs are accepted. */
export function jwtBearerGrant(deps: JwtBearerGrantDeps): GrantRegistration {
  return {
    grantType: JWT_BEARER_GRANT,
    parameters: JWT_BEARER_PARAMETERS,
    allowedDuplicateParameters: ['resource'],
    handler: async (ctx) => {
      const oidc = ctx as unknown as KoaContextWithOIDC;
      oidc.body = await grantIdentityAssertion(exchangeInput(oidc), { ...deps, minter: new ProviderMinter(oidc, deps.keys) });
    },
  };
}
