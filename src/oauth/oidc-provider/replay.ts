/**
 * Replay detection oidc-provider uses for DPoP proofs and client assertions, made strict.
 *
 * @module
 */
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import als from 'oidc-provider/lib/helpers/als.js';
import { InvalidClient } from '../../errors/index.js';
import type { Store } from '../../store/index.js';
import { recordOnce, type SingleUse } from '../adapter.js';
import { verifiedTokenProof } from './token-dpop.js';
import { deferSpend, spendPending, spentBeforeGrant } from './token-spends.js';
import { sha256Base64url } from '../../util/sha256.js';

/** The namespace oidc-provider's replay records use (`oidc_models.model`). */
const NAMESPACE = 'ReplayDetection';

/**
 * Replaces `ReplayDetection.unique` (find-then-upsert) with one insert-or-fail statement, so a
 * DPoP proof or client assertion `jti` is accepted exactly once even when two requests race on
 * two instances.
 *
 * At `/token` (oidc-provider runs each request in its AsyncLocalStorage), the values are the
 * request's ({@link deferSpend}, ./token-spends.ts): for a grant in `folding` (token exchange)
 * they are accepted here and recorded by the grant's issuing statement, which refuses a replay
 * with the replayed value's own error; for any other grant they are recorded now, the request's
 * DPoP proof with them, in one statement. Once a grant runs with everything spent
 * (`spendBeforeGrant`), oidc-provider's own replay check of that proof (`issueTokens` →
 * `checkDpopReplay`, authorization_code) is answered from that spend: the proof is recorded
 * once, under Deputy's key.
 */
export function useStrictReplayDetection(provider: Provider, store: Store, folding: ReadonlySet<string>): void {
  const unique = async (iss: string, jti: string, exp: number): Promise<boolean> => {
    const key = sha256Base64url(`${iss}\0${jti}`);
    const ttlSeconds = exp - Math.floor(Date.now() / 1000);
    const ctx = als.getStore() as KoaContextWithOIDC | undefined;
    if (ctx?.oidc?.route !== 'token') return recordOnce(store, NAMESPACE, key, ttlSeconds);
    // Client authentication (the assertion's jti) runs before the grant, so this is the grant's check of its proof.
    if (spentBeforeGrant(ctx) && verifiedTokenProof(ctx)?.jti === jti && iss === ctx.oidc.client?.clientId) return true;
    const item: SingleUse = { once: { namespace: NAMESPACE, key, ttlSeconds }, replayed: () => new InvalidClient('client_assertion was already used (its "jti" must be unique)') };
    if (folding.has(String(ctx.oidc.params?.grant_type))) {
      // Recorded by the grant's issuing statement, which refuses a replay with this item's error
      // (or by ./token-dpop.ts after a refusal): no look-up here (issue 16, fifth round).
      deferSpend(ctx, item);
      return true;
    }
    const replay = await spendPending(ctx, store, [item]);
    if (replay && replay !== item) throw replay.replayed();
    return replay === undefined;
  };
  Object.defineProperty(provider.ReplayDetection, 'unique', { value: unique, configurable: true });
}
