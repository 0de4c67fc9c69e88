/**
 * The policy engine's floor, shared by `bench:pdp` (pdp.ts) and the PDP micro-benchmarks: one raw
 * pre-parsed Cedar call on the default policy set (a user, a resource, an action, a one-link chain
 * context), as src/pdp/engine.ts calls Cedar.
 */
import type { Cedar, StatefulAuthorizationCall } from '../../src/pdp/cedar.js';
import type { PolicySnapshot } from '../../src/pdp/policy-store.js';

/** The floor's call against the pre-parsed policy set `policySetId`. */
export function cedarFloorCall(policySetId: string): StatefulAuthorizationCall {
  return {
    principal: { type: 'User', id: 'u' },
    action: { type: 'Action', id: 'read' },
    resource: { type: 'Resource', id: 'r' },
    context: { chain: { position: 0, depth: 1, current: false, delegated: true, scopes: ['docs.read'] } },
    entities: [
      { uid: { type: 'User', id: 'u' }, attrs: { id: 'u', email: 'alice@example.com', groups: [], roles: [] }, parents: [] },
      { uid: { type: 'Resource', id: 'r' }, attrs: { id: 'r', owner: 'alice@example.com', scope: 'docs.read' }, parents: [] },
      { uid: { type: 'Action', id: 'read' }, attrs: {}, parents: [] },
    ],
    preparsedPolicySetId: policySetId,
  };
}

/** CPU time of this process (user + system), in µs. */
export function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/**
 * The floor's call against `set`, in the set's own Cedar instance (each policy set is pre-parsed
 * in an instance of its own since the tenth round: asked of another instance, the id is unknown
 * and every call is a fast failure — a floor three times too high). Checked once: throws unless
 * Cedar answers with a decision.
 */
export function checkedFloorCall(set: Pick<PolicySnapshot, 'cedar' | 'policySetId'>): { cedar: Cedar; call: StatefulAuthorizationCall } {
  const call = cedarFloorCall(set.policySetId);
  const answer = set.cedar.statefulIsAuthorized(call);
  if (answer.type !== 'success') throw new Error(`the Cedar floor call failed: ${JSON.stringify(answer.errors).slice(0, 200)}`);
  return { cedar: set.cedar, call };
}

/** CPU µs per floor call: `n` calls after `warmup` untimed ones, against `set` in its own instance. */
export function cedarFloorCpuUs(set: Pick<PolicySnapshot, 'cedar' | 'policySetId'>, n: number, warmup = 500): number {
  const { cedar, call } = checkedFloorCall(set);
  for (let i = 0; i < warmup; i++) cedar.statefulIsAuthorized(call);
  const t0 = cpuUs();
  for (let i = 0; i < n; i++) cedar.statefulIsAuthorized(call);
  return (cpuUs() - t0) / n;
}
