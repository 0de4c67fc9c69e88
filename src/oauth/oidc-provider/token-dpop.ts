/**
 * DPoP at `/token` (RFC 9449 §5): the proof is verified by Deputy's {@link DpopVerifier} — the
 * one used by the gateway and the PDP — before oidc-provider authenticates the client or runs a
 * grant. So `/token` compares `htu` with the same normalization (against the issuer's token
 * endpoint URL, never the transport's), honours the same nonces, and spends the proof's `jti` as
 * soon as it verifies: a request that fails afterwards (bad client assertion, scope, resource,
 * subject token, policy) cannot be replayed (§11.1).
 *
 * The grants read the result with {@link verifiedTokenProof}: token exchange, jwt-bearer and
 * `client_credentials` (./client-credentials-grant.ts) bind it and never verify it again.
 * oidc-provider's built-in code-flow grants (authorization_code, refresh_token) still run their
 * own check of the same proof; it can only agree, see `issuerDerivedUrls` in ./urls.ts.
 *
 * @module
 */
import type Koa from 'koa';
import { DeputyError } from '../../errors/index.js';
import type { DpopVerifier, VerifiedDpopProof } from '../dpop.js';

const verified = new WeakMap<object, VerifiedDpopProof>();

/** The proof this `/token` request came with, verified and spent; `undefined` when it sent none. */
export function verifiedTokenProof(ctx: object): VerifiedDpopProof | undefined {
  return verified.get(ctx);
}

export interface TokenEndpointDpopOptions {
  verifier: DpopVerifier;
  /** The token endpoint's path as requests reach the provider (`/token`). */
  tokenPath: string;
  /** The token endpoint URL derived from the issuer: the `htu` every proof must name. */
  tokenEndpoint: string;
}

/**
 * Provider middleware (`provider.use`): verifies a `POST /token` request's DPoP proof. Refusals
 * are the authorization server's (§5, §8): HTTP 400 `invalid_dpop_proof` or `use_dpop_nonce`
 * with `DPoP-Nonce`, thrown to Deputy's error boundary (src/http/errors.ts). A fresher nonce goes out in `DPoP-Nonce` on success too (§8.2).
 */
export function tokenEndpointDpop(options: TokenEndpointDpopOptions): Koa.Middleware {
  return async function verifyTokenRequestProof(ctx, next) {
    if (ctx.path !== options.tokenPath || ctx.method !== 'POST') return next();
    const proofs = (ctx.req.headersDistinct?.dpop ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
    if (proofs.length === 0) return next();
    let proof: VerifiedDpopProof;
    try {
      proof = await options.verifier.verify({ proofs, method: ctx.method, url: options.tokenEndpoint });
    } catch (err) {
      if (!(err instanceof DeputyError)) throw err;
      ctx.state.log?.info({ error: err.code, reason: err.description }, 'token request refused');
      // The authorization server answers DPoP refusals with 400 (RFC 9449 §5, §8), not 401.
      throw err.withStatus(400);
    }
    verified.set(ctx, proof);
    if (proof.nextNonce !== undefined) ctx.set('DPoP-Nonce', proof.nextNonce);
    await next();
  };
}
