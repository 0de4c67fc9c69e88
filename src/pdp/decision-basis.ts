/**
 * What an AuthZEN decision depends on besides the request's own bytes, in a form that is cheap to
 * compare: the policy generation, and the objects the asynchronous phase (pdp.ts) hands to the
 * synchronous one — a delegated subject's issuance records (the token resolver's cached array,
 * replaced when the token is verified again) and its registry agents, a plain subject's or a
 * resource's registry agent (the agent cache's objects, replaced on every re-read).
 *
 * The synchronous phase is a pure function of the request and these (Cedar is pure, entities and
 * context are built from them and from the policy snapshot), so two requests with the same bytes
 * and the same basis get the same decision. Computing a basis runs the asynchronous phase itself,
 * so revocation (the shared revocation cache), expiry and the registry's rules are checked as on
 * every decision: a revoked, expired or refused subject has no basis at all.
 *
 * @module
 */
import type { EvaluationInput } from './authzen.js';
import type { PolicyDecisionPoint, PreparedSubject } from './pdp.js';

/** Values compared one by one with `===`; produced by {@link decisionBasis} only. */
export type DecisionBasis = readonly unknown[];

/**
 * The basis of a decision over `inputs` (one evaluation, or a batch's items in order).
 *
 * @returns undefined when a subject is invalid (bad, revoked or expired token, refused chain) or
 *   malformed: such decisions are not reused.
 * @throws what the asynchronous phase throws (a store failure); callers fail closed.
 */
export async function decisionBasis(pdp: PolicyDecisionPoint, inputs: readonly EvaluationInput[]): Promise<DecisionBasis | undefined> {
  const basis: unknown[] = [pdp.store.current.generation];
  // A batch usually repeats one subject; a single evaluation has nothing to share.
  const memo = inputs.length > 1 ? new Map<string, Promise<PreparedSubject>>() : undefined;
  for (const input of inputs) {
    const [subject, resource] = await Promise.all([pdp.prepareSubject(input.subject, memo), pdp.prepareEntity(input.resource)]);
    const marks = subjectMarks(subject);
    if (marks === undefined) return undefined;
    basis.push(...marks, resource.agent ?? null);
  }
  return basis;
}

/** Whether two bases are the same: same length, every value identical. */
export function sameBasis(a: DecisionBasis, b: DecisionBasis): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function subjectMarks(subject: PreparedSubject): readonly unknown[] | undefined {
  switch (subject.kind) {
    case 'plain':
      return ['plain', subject.agent ?? null];
    case 'delegated':
      return ['delegated', subject.grants, subject.links.length, ...subject.links.map((l) => l.agent)];
    default:
      return undefined;
  }
}
