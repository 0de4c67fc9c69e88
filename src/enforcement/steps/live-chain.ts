/**
 * Step `liveChain`: the token and every token it was exchanged from must be live. The token's
 * own record answers for the whole chain, read through the RevocationCache (one cached read:
 * a revocation through this instance at once, through another within its 2-second bound).
 *
 * - reads: `auth` ({@link Authenticated}), `audience`.
 * - adds: {@link LiveChain} — the record and the {@link Principal} built from it.
 * - refuses: 401 `invalid_token` with the resource's DPoP challenge when revoked.
 *
 * @module
 */
import { InvalidToken } from '../../errors/index.js';
import type { RevocationCache } from '../../oauth/token-records.js';
import type { Authenticated, LiveChain, PepRequest } from '../context.js';
import type { Step } from '../pipeline.js';
import { dpopChallenger, type Challenger } from './authenticate.js';

/** Options of the `liveChain` step: the revocation cache and the challenge a refusal carries. */
export interface LiveChainOptions {
  revocations: Pick<RevocationCache, 'liveRecord'>;
  /** The resource's 401 challenge (the one given to `authenticate`). */
  challenge?: Challenger;
}

/** The `liveChain` step (see the module doc for its contract). */
export function liveChain(options: LiveChainOptions): Step<PepRequest & Authenticated, LiveChain> {
  const challenge = options.challenge ?? dpopChallenger();
  return {
    name: 'liveChain',
    async run({ auth, audience }) {
      const record = await options.revocations.liveRecord(auth.claims.jti!);
      if (!record) throw challenge(new InvalidToken('the access token, or a token it was delegated from, has been revoked'), audience);
      return {
        record,
        principal: {
          userId: record.userId,
          userAttrs: record.userAttrs,
          // The record's agent, not `client_id`: a metadata-document client's `client_id` is its URL, its agent `cimd-…`.
          agentId: record.agentId,
          chain: record.chain,
          scopes: auth.scopes,
          token: auth.token,
          tokenJti: record.jti,
          upstreamHandle: record.upstream,
        },
      };
    },
  };
}
