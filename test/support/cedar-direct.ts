/**
 * Cedar called directly (cedar-wasm's stateless `isAuthorized`, policies as text), for tests that
 * compare what Deputy sends Cedar with what Cedar would decide on the full input.
 */
import * as wasm from '@cedar-policy/cedar-wasm/nodejs';
import type { CedarRequest } from '../../src/pdp/engine.js';

/** Cedar's answer, made comparable: decision, determining and erroring policy ids (sorted), or `failure` when Cedar refused the call. */
export type DirectAnswer = { failure: true } | { decision: string; reason: string[]; errors: string[] };

/** Decides `request` against the policy text `policies`. */
export function isAuthorized(policies: string, request: CedarRequest): DirectAnswer {
  const out = wasm.isAuthorized({ ...request, policies: { staticPolicies: policies } } as never) as { type: string; response?: { decision: string; diagnostics: { reason: string[]; errors: Array<{ policyId: string }> } } };
  if (out.type !== 'success' || !out.response) return { failure: true };
  const { decision, diagnostics } = out.response;
  return { decision, reason: [...diagnostics.reason].sort(), errors: diagnostics.errors.map((e) => e.policyId).sort() };
}

/** The policies of a policy-set text in Cedar's JSON form (EST), as Deputy's policy store reads them. */
export function ests(text: string): unknown[] {
  const parts = wasm.policySetTextToParts(text) as { type: string; policies: string[] };
  return parts.policies.map((p) => (wasm.policyToJson(p) as { json: unknown }).json);
}
