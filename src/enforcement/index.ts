/**
 * The enforcement pipeline: what every policy enforcement point (PEP) of Deputy does to a call,
 * as named steps over one typed context. The HTTP gateway (src/gateway/gateway.ts) is one
 * composition; the MCP gateway and the LLM gateway are others, reusing the shared steps and
 * bringing their own resolve / decide / forward (and, for the LLM gateway, a budgeter).
 *
 * ## The steps, in order
 *
 * Per HTTP request — the **admission** ({@link Admission}), run once:
 * 1. `authenticate` — DPoP-bound token for the audience, proof for this method and URL; 401
 *    with a `DPoP` challenge (RFC 9449 §7.1, RFC 6750 §3.1), `resource_metadata` optional
 *    (RFC 9728 §5.1, {@link dpopChallenger}). Adds `auth`, `proof`. With `deferProofSignature`
 *    (the HTTP and LLM gateways; the MCP gateway until its replay check, before the SDK writes a
 *    response head) the proof's signature is still verifying when it returns (`proof.verified`):
 *    the receipt's write, every refusal before it and a budget's hold wait for it.
 * 2. `liveChain` — the token and its lineage unrevoked. Adds `record`, `principal`.
 *
 * Per action — a gateway call, one MCP JSON-RPC message, one LLM request ({@link ActionContext}:
 * `{ admission, … }`):
 * 1. `spendProofOnRefusal` — a refusal before the first receipt still spends the proof.
 * 2. *resolve* (the PEP's own) — what is called: adds `connection` ({@link Targeted}), `action`
 *    ({@link Described}: `{ event, name, resource, digest }` — `digest` the request's identifying
 *    parts, hashed into the receipt only when receipts are on) and what its decide/forward need (HTTP: path and route; MCP: method, tool, arguments; LLM: model,
 *    `max_tokens`, estimated cost). 404 / 400 here.
 * 3. `decide` — the PEP's question ({@link decide}); adds `decision`, never refuses by itself.
 * 4. `budget` — reserve before ({@link budget} with a {@link Budgeter}; the empty slot without),
 *    its hold made only once the proof's signature verified (`proof.verified`, src/budgets/budgeter.ts).
 *    May replace `decision` with a 402 denial; settles after.
 * 5. `receipt` — written for permit and deny alike, before anything is forwarded; the first
 *    receipt of a request spends the proof in its own transaction.
 * 6. `refuseDenied` — a denial stops here (403, or the decision's own `refusal`).
 * 7. `credential` — from the vault for `connection` and the principal. Adds `credential`.
 * 8. forward (the PEP's own) — the upstream call; adds its response and `ended`
 *    ({@link Forwarded}: `() => streamEnding(body)`, when the response was delivered or cut).
 * 9. settle — not a step but the runner: every step that ran is told how the run ended, latest
 *    first: `refused(ctx, refusal)` at once when a step threw; `settle(ctx, ending)` with
 *    `completed` / `cut` once `ended()` resolves.
 *
 * ## Composing a PEP
 *
 * ```ts
 * // RFC 9728 §3.1: the well-known segment goes between the origin and the resource's path.
 * const challenge = dpopChallenger((aud) => { const u = new URL(aud); return `${u.origin}/.well-known/oauth-protected-resource${u.pathname}`; });
 * const admit = Pipeline.start<PepRequest>()
 *   .then(authenticate({ verifier, deferProofSpend: receipts !== undefined, challenge }))
 *   .then(liveChain({ revocations, challenge }));
 * const act = Pipeline.start<{ admission: Admission; message: JsonRpcRequest; session: Session }>()
 *   .then(spendProofOnRefusal({ challenge }))
 *   .then(resolveMcpMessage)            // adds connection, action, tool
 *   .then(decide(askPdpForToolCall))    // tool name + arguments as Cedar context
 *   .then(budget(perToolBudgeter))
 *   .then(receipt({ receipts, logger, challenge }))
 *   .then(refuseDenied({ logger, message: 'mcp message denied' }))
 *   .then(credential(credentials))      // once per upstream session is the PEP's business
 *   .then(forwardToSession);            // adds result + ended
 * // per HTTP request:
 * const admission = await admit.run({ audience, url, method, authorization, dpopProofs, requestId });
 * // per message of a batch (each refusal becomes that message's JSON-RPC error):
 * for (const message of batch) await act.run({ admission, message, session }).catch(toJsonRpcError);
 * ```
 *
 * The MCP gateway's real composition (src/mcp/session.ts `pipelines`, steps in src/mcp/steps.ts)
 * is this one without `spendProofOnRefusal` (its admission spends the proof at once: a request
 * may carry no decided message) and without `credential` (the upstream session's transport
 * injects it): `decide` → `checkPin` → `budget` → `receipt` → `refuseDenied` → `forward`.
 *
 * The LLM gateway: `resolveLlmRequest` (model, `max_tokens`, estimated cost) → `decide` (PDP
 * with those in context) → `budget(budgeter)` (reserve the worst case; 402) → `receipt` →
 * `refuseDenied` → `credential` → a streaming forward that meters usage into the context as
 * the SSE flows and may cut the stream at the cap; its `ended` resolves after the last event or
 * the cut, and the budget hold's `settle` charges what was delivered.
 *
 * ## Adding a step
 *
 * A {@link Step} is `{ name, run(ctx) → additions, refused?(ctx, refusal), settle?(ctx, ending) }`: type its input as
 * the context fields it reads (`ActionContext & Decided`), return the fields it adds (an
 * interface exported beside it; {@link NOTHING} when none), refuse by throwing a typed
 * `DeputyError`, and put clean-up that depends on the outcome in `refused` / `settle`. Insert it with
 * `.then(step)` where its inputs exist: the builder does not compile otherwise. Steps hold no
 * per-call state (one instance serves every call); per-call state goes in the context.
 * A PEP's forward step sets `observe: 'upstream'`: the runner then makes the call a client
 * span (its `traceparent` goes upstream through `withTraceContext`, src/observability/tracing.ts)
 * and times it into `deputy_gateway_upstream_duration_seconds{connection,status}`; `decide` sets
 * `observe: 'decision'`.
 *
 * @module
 */
export {
  type Admission,
  type ActionContext,
  type ActionDescription,
  type Authenticated,
  type Decided,
  type Described,
  type LiveChain,
  type PepDecision,
  type PepRequest,
  type Principal,
  type Targeted,
  PendingProof,
} from './context.js';
export { isThenable, NOTHING, Pipeline, streamEnding, type Ending, type Forwarded, type Outcome, type Refusal, type RunOptions, type Step } from './pipeline.js';
export { authenticate, dpopChallenger, type AuthenticateOptions, type Challenger, type ProofVerifier } from './steps/authenticate.js';
export { liveChain, type LiveChainOptions } from './steps/live-chain.js';
export { spendProofOnRefusal } from './steps/proof.js';
export { decide, refuseDenied } from './steps/decide.js';
export { budget, type Budgeted, type BudgetHold, type Budgeter } from './steps/budget.js';
export { receipt, type ReceiptOptions } from './steps/receipt.js';
export { credential, type Credentialed } from './steps/credential.js';
