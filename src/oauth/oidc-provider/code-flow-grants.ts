/**
 * The `authorization_code` (RFC 6749 §4.1.3) and `refresh_token` (RFC 6749 §6) grants: oidc-provider's
 * own handlers (9.13.3, `lib/actions/grants/{authorization_code,refresh_token}.js`), registered
 * again with the request's DPoP proof taken from Deputy's verifier instead of verified a second
 * time.
 *
 * Why: at `/token` the proof is verified by Deputy's middleware (./token-dpop.ts) before the
 * client is authenticated: signature, `htm`, `htu` against the issuer's token endpoint, `iat`
 * window, nonce. The built-in handlers then ran oidc-provider's `validateDpop` on the same proof
 * (one more ECDSA verification, key import and thumbprint per grant) and spent its `jti` a second
 * time under another key (one more replay row). Here the handlers get helpers whose
 * `validateDpop` returns that verified proof (its key thumbprint, `jti`, `iat`) and whose
 * `checkDpopReplay` is satisfied because the proof was spent, once across instances, before the
 * grant ran (`spendBeforeGrant`, ./token-spends.ts). Everything else is the handlers' own code, in
 * their order: the token bound to the proof key (RFC 9449 §5, `cnf.jkt`), "DPoP proof JWT not
 * provided" for a client registered with `dpop_bound_access_tokens`, the code's `dpop_jkt`
 * (RFC 9449 §10) compared with the proof key, a public client's refresh token usable only with
 * the key it is bound to, rotation and reuse detection.
 *
 * @module
 */
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import * as authorizationCode from 'oidc-provider/lib/actions/grants/authorization_code.js';
import * as refreshToken from 'oidc-provider/lib/actions/grants/refresh_token.js';
import * as builtInHelpers from 'oidc-provider/lib/helpers/grants.js';
import type { GrantHelpers } from 'oidc-provider/lib/helpers/grants.js';
import type { GrantRegistration } from './provider.js';
import { verifiedTokenProof } from './token-dpop.js';

/** What oidc-provider's grants know of a checked proof (`validate_dpop.js`'s result). */
interface GrantDpop {
  /** RFC 7638 thumbprint of the proof key. */
  thumbprint: string;
  jti: string;
  /** Seconds since the epoch. */
  iat: number;
}

/**
 * The two code-flow grants, for `Provider#registerGrantType` after the provider is built (each
 * replaces the built-in handler of the same name). Parameters are the built-in ones plus
 * `resource` (RFC 8707, repeatable), as oidc-provider registers them with resource indicators on.
 * Register them only when the code flow is on: registering a grant advertises it in discovery.
 */
export function codeFlowGrants(provider: Provider): GrantRegistration[] {
  const helpers = deputyProofHelpers(provider);
  return [authorizationCode, refreshToken].map((grant) => ({
    grantType: grant.grantType,
    parameters: [...grant.parameters, 'resource'],
    allowedDuplicateParameters: ['resource'],
    handler: (ctx) => grant.handler(provider, helpers, ctx as unknown as KoaContextWithOIDC),
  }));
}

/**
 * oidc-provider's grant helpers bound to `provider` (as `initialize_app.js` binds them), with
 * DPoP from Deputy: `validateDpop` answers with the proof ./token-dpop.ts verified (undefined when
 * the request carried none), and `checkDpopReplay` does nothing, the proof having been spent
 * before the grant ran (a replay was refused there, `invalid_dpop_proof`).
 */
function deputyProofHelpers(provider: Provider): GrantHelpers {
  const bound = Object.fromEntries(
    Object.entries(builtInHelpers).map(([name, helper]) => [name, (helper as (...a: unknown[]) => unknown).bind(undefined, provider)]),
  ) as unknown as GrantHelpers;
  return {
    ...bound,
    validateDpop: async (ctx: object): Promise<GrantDpop | undefined> => {
      const proof = verifiedTokenProof(ctx);
      return proof && { thumbprint: proof.jkt, jti: proof.jti, iat: proof.iat };
    },
    checkDpopReplay: async () => {},
  };
}
