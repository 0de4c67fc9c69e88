/**
 * Cedar called directly (cedar-wasm, policies as text), for tests that compare what Deputy sends
 * Cedar with what Cedar would decide on the full input.
 */
import { randomBytes } from 'node:crypto';
import * as wasm from '@cedar-policy/cedar-wasm/nodejs';
// Through Deputy's one import of Cedar: it switches off the V8 JS-to-Wasm inlining that can abort a
// process calling `statefulIsAuthorized` in a hot loop (src/pdp/cedar.ts).
import { cedar } from '../../src/pdp/cedar.js';
import type { CedarRequest } from '../../src/pdp/engine.js';

/** Cedar's answer, made comparable: decision, determining and erroring policy ids (sorted), or `failure` when Cedar refused the call. */
export type DirectAnswer = { failure: true } | { decision: string; reason: string[]; errors: string[] };

type RawAnswer = { type: string; response?: { decision: string; diagnostics: { reason: string[]; errors: Array<{ policyId: string }> } } };

/** This process's one slot in Cedar's pre-parsed storage, and the policy text it holds. */
const SLOT = `cedar-direct-${randomBytes(6).toString('hex')}`;
let slotText: string | undefined;

/**
 * Decides `request` against the policy text `policies`. The text is pre-parsed once, while
 * consecutive calls pass the same text (`statefulIsAuthorized`: a sixth to a quarter of a call's
 * CPU was re-parsing three policies); the answers are those of the stateless `isAuthorized`
 * on the text, call for call (19,008 calls of pdp-entity-slice-attacks compared, issue 16
 * seventh round). Text Cedar refuses gets the stateless call, and its refusal.
 */
export function isAuthorized(policies: string, request: CedarRequest): DirectAnswer {
  if (slotText !== policies) {
    slotText = cedar.preparsePolicySet(SLOT, { staticPolicies: policies }).type === 'success' ? policies : undefined;
  }
  return comparable(
    (slotText === policies
      ? cedar.statefulIsAuthorized({ ...request, preparsedPolicySetId: SLOT } as never)
      : wasm.isAuthorized({ ...request, policies: { staticPolicies: policies } } as never)) as RawAnswer,
  );
}

/** Decides `request` against a policy set already pre-parsed under `policySetId` (`statefulIsAuthorized`). */
export function isAuthorizedIn(policySetId: string, request: CedarRequest): DirectAnswer {
  return comparable(cedar.statefulIsAuthorized({ ...request, preparsedPolicySetId: policySetId } as never) as RawAnswer);
}

function comparable(out: RawAnswer): DirectAnswer {
  if (out.type !== 'success' || !out.response) return { failure: true };
  const { decision, diagnostics } = out.response;
  return { decision, reason: [...diagnostics.reason].sort(), errors: diagnostics.errors.map((e) => e.policyId).sort() };
}

/** The policies of a policy-set text in Cedar's JSON form (EST), as Deputy's policy store reads them. */
export function ests(text: string): unknown[] {
  const parts = wasm.policySetTextToParts(text) as { type: string; policies: string[] };
  return parts.policies.map((p) => (wasm.policyToJson(p) as { json: unknown }).json);
}
