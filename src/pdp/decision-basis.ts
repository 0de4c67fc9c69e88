/**
 * What an AuthZEN decision depends on besides the request's own bytes, in a form that is cheap to
 * compare: the policy generation, and the objects the asynchronous phase (pdp.ts) hands to the
 * synchronous one — a delegated subject's issuance records (the token resolver's cached array,
 * replaced when the token is verified again) and its registry agents, a plain subject's or a
 * resource's registry agent (the agent cache's objects, replaced when a re-read finds the row
 * changed).
 *
 * The synchronous phase is a pure function of the request and these (Cedar is pure, entities and
 * context are built from them and from the policy snapshot), so two requests with the same bytes
 * and the same basis get the same decision. Computing a basis runs the asynchronous phase itself,
 * so revocation (the shared revocation cache), expiry and the registry's rules are checked as on
 * every decision: a revoked, expired or refused subject has no basis at all.
 *
 * {@link basisHolds} answers the same question without running that phase: the phase is itself a
 * pure function of the request, the time and its caches' answers (token records, revocation
 * state, registry agents), so while every one of those caches would give the answer it gave
 * when the basis was computed — fresh, unexpired, the same objects — the phase would give the
 * same basis again. Whenever a cache would read the store, it says no and the phase runs.
 *
 * @module
 */
import type { Agent } from '../agents/index.js';
import type { DelegationGrant } from '../delegation/index.js';
import type { EvaluationInput } from './authzen.js';
import { requestMemo, type PolicyDecisionPoint, type PreparedSubject, type RequestMemo } from './pdp.js';

/** A subject as its decision depends on it. */
type SubjectMark =
  | { readonly kind: 'plain'; readonly agent: Agent | undefined }
  | { readonly kind: 'delegated'; readonly grants: readonly DelegationGrant[]; readonly agents: readonly Agent[] };

/** Produced by {@link decisionBasis} only; compared with {@link sameBasis} (identity of every object). */
export interface DecisionBasis {
  readonly generation: number;
  /** One per evaluation, in order: its subject and its resource's registry agent. */
  readonly items: ReadonlyArray<{ readonly subject: SubjectMark; readonly resourceAgent: Agent | undefined }>;
}

/**
 * The basis of a decision over `inputs` (one evaluation, or a batch's items in order).
 *
 * @param memo - the request's memo ({@link RequestMemo}): given the same memo, the evaluation that
 *   follows decides on the very subjects and agents this basis names, and repeats none of its
 *   reads (the lean path, src/http/authzen-lean.ts); without one, a batch gets its own.
 * @returns undefined when a subject is invalid (bad, revoked or expired token, refused chain) or
 *   malformed: such decisions are not reused.
 * @throws what the asynchronous phase throws (a store failure); callers fail closed.
 */
export async function decisionBasis(pdp: PolicyDecisionPoint, inputs: readonly EvaluationInput[], memo?: RequestMemo): Promise<DecisionBasis | undefined> {
  const generation = pdp.store.current.generation;
  const items: Array<DecisionBasis['items'][number]> = [];
  // A batch usually repeats one subject; a single evaluation has nothing to share.
  memo ??= inputs.length > 1 ? requestMemo() : undefined;
  for (const input of inputs) {
    const [subject, resource] = await Promise.all([pdp.prepareSubject(input.subject, memo?.subjects), pdp.prepareEntity(input.resource, memo)]);
    const mark = subjectMark(subject);
    if (mark === undefined) return undefined;
    items.push({ subject: mark, resourceAgent: resource.agent });
  }
  return { generation, items };
}

/** Whether two bases are the same: same generation, every subject and agent the same object. */
export function sameBasis(a: DecisionBasis, b: DecisionBasis): boolean {
  if (a.generation !== b.generation || a.items.length !== b.items.length) return false;
  return a.items.every((x, i) => {
    const y = b.items[i]!;
    return x.resourceAgent === y.resourceAgent && sameSubject(x.subject, y.subject);
  });
}

/**
 * Whether {@link decisionBasis} over `inputs` would give `basis` again at `nowMs`, known from
 * cached answers alone (see the module documentation). Synchronous; false whenever the
 * asynchronous phase would read anything, or anything differs: callers then compute the basis.
 */
export function basisHolds(pdp: PolicyDecisionPoint, inputs: readonly EvaluationInput[], basis: DecisionBasis, nowMs: number): boolean {
  if (basis.generation !== pdp.store.current.generation || basis.items.length !== inputs.length) return false;
  return inputs.every((input, i) => {
    const { subject, resourceAgent } = basis.items[i]!;
    const resource = pdp.peekEntityAgent(input.resource, nowMs);
    if (resource === undefined || resource.agent !== resourceAgent) return false;
    if (subject.kind === 'delegated') return pdp.delegationHolds(input.subject, subject.grants, subject.agents, nowMs);
    const plain = pdp.peekEntityAgent(input.subject, nowMs);
    return plain !== undefined && plain.agent === subject.agent;
  });
}

/**
 * {@link basisHolds} at this instant; false (compute the basis) should it throw — a cache that
 * cannot answer is a cache that says no. Shared by every path that reuses remembered decisions
 * (the AuthZEN endpoint's cached path, the gateways' remembered decisions: ./remembered-decisions.ts).
 */
export function basisHoldsNow(pdp: PolicyDecisionPoint, inputs: readonly EvaluationInput[], basis: DecisionBasis): boolean {
  try {
    return basisHolds(pdp, inputs, basis, Date.now());
  } catch {
    return false;
  }
}

/**
 * {@link decisionBasis}, or undefined when it cannot be had (a store away): the evaluation that
 * follows on the same memo then meets the same failure and fails closed, and nothing is remembered.
 *
 * The order is what keeps a remembered decision honest: a basis is computed **before** the
 * evaluation it is remembered with, so a policy reload, a revocation or a registry change that
 * races the evaluation can only make the remembered basis older than the state — which
 * {@link basisHolds} / {@link sameBasis} then refuse — never newer than the decision.
 */
export async function basisOrUndefined(pdp: PolicyDecisionPoint, inputs: readonly EvaluationInput[], memo?: RequestMemo): Promise<DecisionBasis | undefined> {
  try {
    return await decisionBasis(pdp, inputs, memo);
  } catch {
    return undefined;
  }
}

function sameSubject(a: SubjectMark, b: SubjectMark): boolean {
  if (a.kind === 'plain') return b.kind === 'plain' && a.agent === b.agent;
  if (b.kind === 'plain') return false;
  return a.grants === b.grants && a.agents.length === b.agents.length && a.agents.every((agent, i) => agent === b.agents[i]);
}

function subjectMark(subject: PreparedSubject): SubjectMark | undefined {
  switch (subject.kind) {
    case 'plain':
      return { kind: 'plain', agent: subject.agent };
    case 'delegated':
      return { kind: 'delegated', grants: subject.grants, agents: subject.links.map((l) => l.agent) };
    default:
      return undefined;
  }
}
