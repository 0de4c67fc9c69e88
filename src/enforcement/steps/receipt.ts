/**
 * Step `receipt`: the decision's signed receipt (issue 6), written before anything reaches the
 * upstream — fail closed: no receipt, no call. The first receipt of a request spends the DPoP
 * proof's `jti` in its own transaction (one commit for both, RFC 9449 §11.1); a replay writes
 * nothing. Later receipts of the same admission (MCP: the other messages of a batch) are plain.
 *
 * - reads: `decision`, `action` ({@link Described}), the admission's principal, scopes,
 *   request id and {@link PendingProof}.
 * - adds: nothing.
 * - refuses: 401 `invalid_dpop_proof` (with the resource's challenge) for a replayed proof;
 *   503 `temporarily_unavailable` when the receipt cannot be written (the proof is then spent
 *   on its own if the store lets us).
 *
 * Without an appender (receipts off) the step does nothing: `authenticate` spent the proof.
 * With a proof whose signature is still verifying ({@link PendingProof.verified}), the receipt
 * is signed while it verifies and written only once it did; when it did not, the step refuses
 * with its 401 and nothing is written or spent.
 *
 * @module
 */
import { AlreadyRecorded, receiptText, requestDigest, type ReceiptAppender } from '../../audit/index.js';
import type { ReceiptInput } from '../../audit/receipt.js';
import { DeputyError, TemporarilyUnavailable } from '../../errors/index.js';
import { errorCause, unexpectedError, type Logger } from '../../log.js';
import type { OnceKey } from '../../oauth/adapter.js';
import { dpopReplayed } from '../../oauth/dpop.js';
import { findStoreUnavailable } from '../../store/index.js';
import type { ActionContext, Decided, Described } from '../context.js';
import { NOTHING, type Step } from '../pipeline.js';
import { dpopChallenger, type Challenger } from './authenticate.js';

/** Options of the `receipt` step: the appender, the logger and the challenge a refusal carries. */
export interface ReceiptOptions {
  /** Absent: receipts are off and the step does nothing. */
  receipts: ReceiptAppender | undefined;
  logger: Logger;
  /** The resource's 401 challenge (the one given to `authenticate`). */
  challenge?: Challenger;
}

/** The `receipt` step (see the module doc for its contract). */
export function receipt(options: ReceiptOptions): Step<ActionContext & Decided & Described, typeof NOTHING> {
  const { receipts, logger } = options;
  const challenge = options.challenge ?? dpopChallenger();
  if (!receipts) return { name: 'receipt', run: () => NOTHING };
  /** The step's refusal for an append that failed (`key`: the proof's, taken for it). Always throws. */
  const refuse = async (ctx: ActionContext, key: OnceKey | undefined, cause: unknown): Promise<never> => {
    const { proof, audience, requestId } = ctx.admission;
    // A proof that did not verify: its own 401 (nothing was written or spent).
    await proof.verified;
    if (cause instanceof AlreadyRecorded || (cause instanceof DeputyError && cause.code === 'invalid_dpop_proof')) throw challenge(dpopReplayed(), audience);
    logReceiptFailure(logger, cause, requestId);
    // Not written, so not spent either: spend the proof on its own if the store lets us.
    if (key) await proof.spendTaken(key).catch(() => {});
    throw new TemporarilyUnavailable('the call could not be recorded; it was not forwarded', { cause });
  };
  return {
    name: 'receipt',
    run(ctx) {
      const { proof } = ctx.admission;
      const input = receiptInput(ctx);
      const key = receipts.appendOnce ? proof.take() : undefined;
      // A proof still verifying (`deferProofSignature`): the receipt is signed meanwhile, and its
      // statement waits for the signature (nothing written for a proof that fails). One derived
      // promise on the append's, not an `async` run awaiting it (issue 16, twelfth round).
      if (key) return receipts.appendOnce!(input, key, proof.verified).then(added, (cause: unknown) => refuse(ctx, key, cause));
      return appendPlain(receipts, input, proof).then(added, (cause: unknown) => refuse(ctx, undefined, cause));
    },
  };
}

/** The step's addition once its receipt is written: nothing. */
function added(): typeof NOTHING {
  return NOTHING;
}

/** A receipt without a once-key (an appender without `appendOnce`): the proof spent on its own first. */
async function appendPlain(receipts: ReceiptAppender, input: ReceiptInput, proof: ActionContext['admission']['proof']): Promise<void> {
  await proof.spendIfPending();
  await receipts.append(input);
}

/**
 * The operator's line for a receipt not written: a store that cannot serve (an outage, a read-only
 * standby, a conflict past the retries) at `warn`, naming why and the SQLSTATE as the HTTP error
 * boundary does (`StoreUnavailableError: the database is read-only (a standby?) ← error (25006)`)
 * — the MCP gateway's JSON-RPC answer has no other line; anything else (a bug) at `error` with its
 * frames. Never a message Deputy did not write.
 */
function logReceiptFailure(logger: Logger, cause: unknown, reqId: string): void {
  const unavailable = findStoreUnavailable(cause);
  if (!unavailable) {
    logger.error({ err: unexpectedError(cause), reqId }, 'gateway receipt could not be written');
    return;
  }
  const underneath = errorCause(unavailable.cause);
  const why = `${unavailable.name}: ${unavailable.message}${underneath === undefined ? '' : ` ← ${underneath}`}`;
  logger.warn({ err: { code: 'temporarily_unavailable', cause: why }, reqId }, 'gateway receipt could not be written');
}

function receiptInput({ admission, decision, action }: ActionContext & Decided & Described): ReceiptInput {
  const { principal } = admission;
  return {
    agent: principal.agentId,
    user: principal.userId,
    chain: principal.chain,
    event: action.event,
    action: action.name,
    resource: receiptText(action.resource),
    decision: decision.allowed ? 'permit' : 'deny',
    ...(decision.policies ? { policies: decision.policies } : {}),
    ...(decision.allowed ? {} : { reason: receiptText(decision.reason) }),
    scope: [...principal.scopes].join(' '),
    requestId: admission.requestId,
    requestDigest: requestDigest(action.digest),
    tokenId: principal.tokenJti,
    ...action.claims,
  };
}
