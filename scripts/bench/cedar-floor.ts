/**
 * The policy engine's floor, shared by `bench:pdp` (pdp.ts) and the PDP micro-benchmarks: one raw
 * pre-parsed Cedar call on the default policy set (a user, a resource, an action, a one-link chain
 * context), as src/pdp/engine.ts calls Cedar.
 */
import { cedar, type StatefulAuthorizationCall } from '../../src/pdp/cedar.js';

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

/** CPU µs per floor call: `n` calls after `warmup` untimed ones. */
export function cedarFloorCpuUs(policySetId: string, n: number, warmup = 500): number {
  const call = cedarFloorCall(policySetId);
  for (let i = 0; i < warmup; i++) cedar.statefulIsAuthorized(call);
  const t0 = cpuUs();
  for (let i = 0; i < n; i++) cedar.statefulIsAuthorized(call);
  return (cpuUs() - t0) / n;
}
