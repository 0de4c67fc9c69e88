/**
 * Step `authenticate`: the agent's DPoP-bound Deputy token for the request's audience, with a
 * proof for this exact method and URL (RFC 9449 §4.3, §7.1; RFC 8707 audience).
 *
 * - reads: {@link PepRequest} (`authorization`, `dpopProofs`, `method`, `url`, `audience`).
 * - adds: {@link Authenticated} — the verified token and its proof's {@link PendingProof}.
 * - refuses: 401 with one `DPoP` challenge (RFC 9449 §7.1) naming the error, or none when no
 *   credentials were sent (RFC 6750 §3.1), whatever scheme the agent tried; a Bearer token is
 *   refused (every agent token Deputy issues is DPoP-bound). The challenge may carry
 *   `resource_metadata` (RFC 9728 §5.1, {@link dpopChallenger}).
 * - on a refusal by a later step of the same run: spends the proof if still pending
 *   (a replay then wins as 401 `invalid_dpop_proof`, RFC 9449 §11.1).
 *
 * @module
 */
import { DeputyError, InvalidToken } from '../../errors/index.js';
import { dpopOnlyChallenge, type AccessTokenVerifier } from '../../oauth/access-token.js';
import { PendingProof, type Authenticated, type PepRequest } from '../context.js';
import type { Step } from '../pipeline.js';

/** What `authenticate` needs from the verifier (src/oauth/access-token.ts fits). */
export type ProofVerifier = Pick<AccessTokenVerifier, 'authenticate' | 'spendProof'>;

/** Options of the `authenticate` step: the token verifier, when the proof is spent, the 401 challenge. */
export interface AuthenticateOptions {
  verifier: ProofVerifier;
  /**
   * Leave the proof's `jti` unspent so the first receipt spends it in its own transaction (one
   * commit for both). Only with a receipt step after; otherwise the verifier spends it at once.
   */
  deferProofSpend: boolean;
  /**
   * With `deferProofSpend`: leave the proof's signature verifying while the later steps run
   * (the PDP's decision, the receipt's signature: issue 16), as the {@link PendingProof}'s
   * `verified`. Only for a pipeline whose every write and refusal before the receipt awaits it:
   * `receipt` and `spendProofOnRefusal` do, and a `budget` whose budgeter holds only after it
   * (src/budgets/budgeter.ts `knownCostBudgeter`: the ledger's `ready`).
   */
  deferProofSignature?: boolean;
  /**
   * The 401 challenge ({@link dpopChallenger}; pass one built with a `resourceMetadata` for
   * RFC 9728 `resource_metadata`, which MCP clients discover the AS from). Default: DPoP only.
   */
  challenge?: Challenger;
}

/** Adds a resource's 401 challenge to an error (other errors pass unchanged). */
export type Challenger = (err: unknown, audience: string) => unknown;

/**
 * The challenge of a resource that takes DPoP-bound tokens only: `DPoP` (RFC 9449 §7.1) on every
 * 401, with `resource_metadata` (RFC 9728 §5.1) when `resourceMetadata` names one. Built once
 * per PEP; shared by `authenticate`, `liveChain` and any later step refusing with a 401.
 */
export function dpopChallenger(resourceMetadata?: (audience: string) => string | undefined): Challenger {
  return (err, audience) => {
    if (!(err instanceof DeputyError) || err.status !== 401) return err;
    const withDpop = dpopOnlyChallenge(err);
    const metadata = resourceMetadata?.(audience);
    if (metadata !== undefined && withDpop.challenge) withDpop.challenge = { ...withDpop.challenge, resourceMetadata: metadata };
    return withDpop;
  };
}

/** The `authenticate` step (see the module doc for its contract). */
export function authenticate(options: AuthenticateOptions): Step<PepRequest, Authenticated> {
  const { verifier, deferProofSpend, deferProofSignature = false } = options;
  const challenge = options.challenge ?? dpopChallenger();
  const spend = (key: Parameters<ProofVerifier['spendProof']>[0]) => verifier.spendProof(key);
  return {
    name: 'authenticate',
    async run(req) {
      let auth;
      try {
        auth = await verifier.authenticate(req, req.audience, { deferProofSpend, deferProofSignature: deferProofSpend && deferProofSignature });
      } catch (err) {
        throw challenge(err, req.audience);
      }
      if (auth.scheme !== 'DPoP') throw challenge(new InvalidToken('the gateway accepts DPoP-bound agent tokens only'), req.audience);
      const verified = auth.proofSignature?.catch((err: unknown) => {
        throw challenge(err, req.audience);
      });
      verified?.catch(() => {});
      return { auth, proof: new PendingProof(auth.unspentProof, spend, verified) };
    },
    async refused(ctx) {
      await ctx.proof.spendIfPending().catch((err: unknown) => {
        throw challenge(err, ctx.audience);
      });
    },
  };
}
