/**
 * The decision steps: `decide` asks the PEP's question (the gateway's authorizer, the PDP with
 * an MCP tool call, the PDP with an LLM request's model and cost), `refuseDenied` turns a
 * denial into the agent's error — after `receipt` recorded it, so a denial leaves a receipt.
 *
 * @module
 */
import { AccessDenied } from '../../errors/index.js';
import type { Logger } from '../../log.js';
import type { ActionContext, Decided, Described, PepDecision, Targeted } from '../context.js';
import { isThenable, NOTHING, type Step } from '../pipeline.js';

/**
 * Step `decide`: asks `question` about the action.
 *
 * - reads: whatever `question` reads (the admission's principal, the PEP's resolved action).
 * - adds: {@link Decided} — the decision, allowed or not (it does not refuse: `refuseDenied` does).
 * - refuses: only when `question` throws (a PDP that cannot answer: fail closed).
 *
 * @param question - the PEP's question; one call per action (MCP: per message). A plain value
 *   when the answer is known at once (a remembered decision): the step then adds it without a promise.
 */
export function decide<C>(question: (ctx: C) => PepDecision | Promise<PepDecision>): Step<C, Decided> {
  return {
    name: 'decide',
    observe: 'decision',
    run(ctx) {
      const decision = question(ctx);
      return isThenable(decision) ? decision.then(decided) : decided(decision);
    },
  };
}

function decided(decision: PepDecision): Decided {
  return { decision };
}

/**
 * Step `refuseDenied`: a denied action stops here.
 *
 * - reads: `decision`, `action`, `connection` when there is one, the admission's principal and request id.
 * - adds: nothing.
 * - refuses: the decision's own `refusal` (e.g. 402 from a budget), else 403 `access_denied`
 *   with the decision's reason; logged at info level as `message`.
 */
export function refuseDenied(options: { logger: Logger; message: string }): Step<ActionContext & Decided & Described & Partial<Targeted>, typeof NOTHING> {
  return {
    name: 'refuseDenied',
    run({ decision, admission, action, connection }) {
      if (decision.allowed) return NOTHING;
      const { principal } = admission;
      // The connection, not the resource URL: a path may carry identifiers logs should not keep.
      options.logger.info({ reqId: admission.requestId, connection: connection?.id, agent: principal.agentId, user: principal.userId, action: action.name, reason: decision.reason }, options.message);
      throw decision.refusal ?? new AccessDenied(decision.reason);
    },
  };
}
