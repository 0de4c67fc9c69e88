/**
 * The Policy Decision Point's public surface: AuthZEN 1.0 evaluations, batches and search over
 * Cedar policies, evaluated over the whole delegation chain (README "Authorization (PDP)").
 *
 * The PDP never imports `oauth/` (test/unit/import-direction.test.ts): a presented agent token
 * reaches it through the {@link SubjectResolver} port of `delegation/`, which the OAuth side
 * implements; the composition root passes it to {@link startPdp}.
 *
 * - service.ts — {@link startPdp}, the PDP as one service (policies, caches, engine, reloads);
 * - pdp.ts — {@link PolicyDecisionPoint}, evaluations and the `delegate` decision;
 * - chain-evaluation.ts — Deputy's chain semantics: which principals a decision must permit;
 * - exchange-authorizer.ts — the token exchange's authorizer (registry rules, then Cedar);
 * - decision-basis.ts, remembered-decisions.ts — what a decision depends on, and decisions reused while it holds;
 * - authzen.ts — the AuthZEN wire format (parsing, decision bodies); search.ts — search (§8);
 * - policy-store.ts, schema.ts, entities.ts, entity-data.ts, engine.ts, cedar.ts — internals.
 *
 * @module
 */
export type { SubjectResolver } from '../delegation/index.js';
export {
  checkDepth,
  decisionBody,
  itemErrorBody,
  parseEvaluation,
  parseEvaluations,
  parseSearch,
  type ActionInput,
  type BatchItem,
  type EvaluationInput,
  type EvaluationsInput,
  type EvaluationsSemantic,
  type Explain,
  type SearchInput,
  type SearchKind,
} from './authzen.js';
export { basisHolds, basisHoldsNow, basisOrUndefined, decisionBasis, sameBasis, type DecisionBasis } from './decision-basis.js';
export { RememberedDecisions, type RememberedDecisionsOptions } from './remembered-decisions.js';
export { deny, type Decision, type Denial, type DeniedLink, type DenyKind } from './decision.js';
export type { EntityInput } from './entities.js';
export { PdpDelegationAuthorizer } from './exchange-authorizer.js';
export { PolicyDecisionPoint, requestMemo, SUBJECT_TOKEN_PROPERTY, type PdpDeps, type PreparedSubject, type RequestMemo } from './pdp.js';
export { PolicyLoadError, type PolicyInfo, type ReloadResult, type ReloadTrigger } from './policy-store.js';
export { Search, type SearchResponse, type SearchResult } from './search.js';
export { startPdp, type PdpService, type PdpServiceDeps } from './service.js';
