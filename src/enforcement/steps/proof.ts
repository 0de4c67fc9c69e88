/**
 * Step `spendProofOnRefusal`: the first step of every per-action pipeline. A refusal before the
 * first receipt (404, 403 from a failing PDP, a budget error) must still spend the DPoP proof's
 * `jti` (RFC 9449 §11.1): a replayed proof is refused as one, whatever else was wrong.
 *
 * - reads: the admission's {@link PendingProof} and audience.
 * - adds: nothing.
 * - on a refusal: spends the proof if still pending; a replay (401
 *   `invalid_dpop_proof`, with the resource's challenge) replaces the refusal.
 *
 * @module
 */
import type { ActionContext } from '../context.js';
import { NOTHING, type Step } from '../pipeline.js';
import { dpopChallenger, type Challenger } from './authenticate.js';

/** The `spendProofOnRefusal` step (see the module doc for its contract). */
export function spendProofOnRefusal(options: { challenge?: Challenger } = {}): Step<ActionContext, typeof NOTHING> {
  const challenge = options.challenge ?? dpopChallenger();
  return {
    name: 'spendProofOnRefusal',
    run: () => NOTHING,
    async refused({ admission }) {
      if (!admission.proof.pending) return;
      await admission.proof.spendIfPending().catch((err: unknown) => {
        throw challenge(err, admission.audience);
      });
    },
  };
}
