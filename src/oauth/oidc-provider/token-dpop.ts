/**
 * DPoP at `/token` (RFC 9449 §5): the proof is verified by Deputy's {@link DpopVerifier} — the
 * one used by the gateway and the PDP — before oidc-provider authenticates the client or runs a
 * grant. So `/token` compares `htu` with the same normalization (against the issuer's token
 * endpoint URL, never the transport's) and honours the same nonces. Its `jti` is spent once
 * whatever happens to the request (§11.1): before the grant runs, or in the token exchange's own
 * transaction, and after any refusal (bad client assertion, scope, resource, subject token,
 * policy) by this middleware — see ./token-spends.ts.
 *
 * The grants read the result with {@link verifiedTokenProof}: token exchange, jwt-bearer,
 * `client_credentials` (./client-credentials-grant.ts), `authorization_code` and `refresh_token`
 * (./code-flow-grants.ts) bind it and never verify it again: one signature verification per
 * request.
 *
 * @module
 */
import type Koa from 'koa';
import { DeputyError } from '../../errors/index.js';
import type { Queryable } from '../../store/index.js';
import { dpopReplayed, type DpopVerifier, type UnspentDpopProof, type VerifiedDpopProof } from '../dpop.js';
import { routedTo } from './routing.js';
import { deferSpend, spendPending } from './token-spends.js';

const verified = new WeakMap<object, VerifiedDpopProof>();

/** The proof this `/token` request came with, verified (its spending: ./token-spends.ts); `undefined` when it sent none. */
export function verifiedTokenProof(ctx: object): VerifiedDpopProof | undefined {
  return verified.get(ctx);
}

export interface TokenEndpointDpopOptions {
  verifier: DpopVerifier;
  /** Where spent `jti`s are recorded (the verifier's store). */
  db: Queryable;
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
    // As oidc-provider routes it (./routing.ts): `/TOKEN` and `/token/` are the token endpoint too.
    if (ctx.method !== 'POST' || !routedTo(ctx.path, options.tokenPath)) return next();
    const proofs = (ctx.req.headersDistinct?.dpop ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
    if (proofs.length > 0) await checkProof(ctx, options, proofs);
    await next();
    // Whatever the outcome (oidc-provider has answered refusals already), what the request used
    // once and did not commit is spent now; a replay found here is answered as one.
    const replay = await spendPending(ctx, options.db);
    if (replay) throw refusal(ctx, replay.replayed());
  };
}

/** Verifies the request's proof (not spending it yet) and hands out a fresher nonce (§8.2). */
async function checkProof(ctx: Koa.Context, options: TokenEndpointDpopOptions, proofs: string[]): Promise<void> {
  let proof: UnspentDpopProof;
  try {
    proof = await options.verifier.check({ proofs, method: ctx.method, url: options.tokenEndpoint });
  } catch (err) {
    throw refusal(ctx, err);
  }
  const { replayKey, ...checked } = proof;
  verified.set(ctx, checked);
  // The authorization server answers DPoP refusals with 400 (RFC 9449 §5, §8), not 401.
  deferSpend(ctx, { once: replayKey, replayed: () => dpopReplayed().withStatus(400) });
  if (proof.nextNonce !== undefined) ctx.set('DPoP-Nonce', proof.nextNonce);
}

/** A refusal for Deputy's error boundary, logged once; at `/token` DPoP refusals are 400s. */
function refusal(ctx: Koa.Context, err: unknown): unknown {
  if (!(err instanceof DeputyError)) return err;
  ctx.state.log?.info({ error: err.code, reason: err.description }, 'token request refused');
  return err.code === 'invalid_dpop_proof' || err.code === 'use_dpop_nonce' ? err.withStatus(400) : err;
}
