/**
 * The RFC 8693 grant as oidc-provider sees it: `registerGrantType` glue that reads the request
 * into plain values, runs the Koa-free {@link exchange} (../token-exchange.ts), and implements its
 * {@link AccessTokenMinter} port with oidc-provider's `AccessToken` model (RFC 9068 JWT format).
 *
 * @module
 */
import type { KoaContextWithOIDC, ResourceServer } from 'oidc-provider';
import type { KeyStore } from '../../keys/index.js';
import {
  exchange,
  TOKEN_EXCHANGE_GRANT,
  TOKEN_EXCHANGE_PARAMETERS,
  type AccessTokenMinter,
  type ExchangeInput,
  type MintedToken,
  type MintRequest,
  type TokenExchangeDeps,
  type TokenExchangeParameters,
} from '../token-exchange.js';
import { observeTokenExchange } from '../../observability/instrument.js';
import type { GrantRegistration } from './provider.js';
import { verifiedTokenProof } from './token-dpop.js';
import { pendingSpends, settleSpends } from './token-spends.js';

/** What the grant needs: the exchange's dependencies and the keys its tokens are signed with. */
export interface TokenExchangeGrantDeps extends TokenExchangeDeps {
  keys: KeyStore;
}

/** The grant registration for `createProvider({ grants })`. */
export function tokenExchangeGrant(deps: TokenExchangeGrantDeps): GrantRegistration {
  return {
    grantType: TOKEN_EXCHANGE_GRANT,
    parameters: TOKEN_EXCHANGE_PARAMETERS,
    allowedDuplicateParameters: ['resource', 'audience'],
    // The proof and client assertion `jti`s are recorded in the exchange's issuing statement,
    // which refuses a replay with the replayed value's error: one round trip and one commit per
    // exchange, none before it (./token-spends.ts).
    foldsSpends: true,
    handler: async (ctx) => {
      const oidc = ctx as unknown as KoaContextWithOIDC;
      const input = { ...exchangeInput(oidc), spends: [...pendingSpends(ctx)] };
      oidc.body = await observeTokenExchange(() => exchange(input, { ...deps, minter: new ProviderMinter(oidc, deps.keys) }));
      settleSpends(ctx);
    },
  };
}

/**
 * The request as plain values: parameters, the authenticated client, the verified proof, the
 * request id. Shared by every grant issuing agent tokens (./jwt-bearer-grant.ts).
 */
export function exchangeInput(ctx: KoaContextWithOIDC): ExchangeInput {
  const proof = verifiedTokenProof(ctx);
  const requestId = ctx.state.requestId as unknown;
  return {
    // oidc-provider parsed the form: strings, arrays for the allowed duplicates (resource, audience).
    params: (ctx.oidc.params ?? {}) as TokenExchangeParameters,
    clientId: ctx.oidc.client!.clientId,
    dpop: proof === undefined ? undefined : { jkt: proof.jkt, jti: proof.jti },
    ...(typeof requestId === 'string' ? { requestId } : {}),
  };
}

/** {@link AccessTokenMinter} over oidc-provider's `AccessToken` model, for one request. */
export class ProviderMinter implements AccessTokenMinter {
  constructor(
    private readonly ctx: KoaContextWithOIDC,
    private readonly keys: KeyStore,
  ) {}

  /**
   * Builds the token and starts its signature; the `jti` is chosen first (oidc-provider's own
   * generator), so the exchange records and receipts it while the signature is computed.
   */
  mint(request: MintRequest): MintedToken {
    const provider = this.ctx.oidc.provider;
    const signing = this.keys.activeSigningKey.jwk;
    const info: ResourceServer = {
      scope: request.scope,
      audience: request.audience,
      accessTokenTTL: request.expiresIn,
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: signing.alg, kid: signing.kid } },
    };
    // No Grant model backs an exchanged token (nothing to consent to interactively); the typings
    // require `grantId`, the JWT format does not.
    const at = new provider.AccessToken({
      grantId: undefined as unknown as string,
      accountId: request.accountId,
      client: this.ctx.oidc.client!,
      scope: request.scope,
      gty: request.gty,
      expiresIn: request.expiresIn,
      extra: request.extra,
    });
    at.resourceServer = new provider.ResourceServer(request.audience, info);
    at.setThumbprint('jkt', request.jkt);
    // `save()` would pick the same kind of id (a nanoid) when none is set.
    at.jti = (at as unknown as TokenIdSource).generateTokenId();
    this.ctx.oidc.entity('AccessToken', at);
    return { jti: at.jti, value: at.save() };
  }
}

/** oidc-provider's token models make their `jti` with `generateTokenId()` (untyped in @types/oidc-provider). */
interface TokenIdSource {
  generateTokenId(): string;
}
