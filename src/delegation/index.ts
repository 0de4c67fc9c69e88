/**
 * The delegation model, below both the OAuth server (`oauth/`) and the PDP (`pdp/`): who acts for
 * whom and through whom. It imports neither of them, nor HTTP, Koa or oidc-provider
 * (test/unit/import-direction.test.ts holds it to that).
 *
 * - act-claim.ts — the RFC 8693 §4.1 `act` codec (chain ⇄ nested `act`) and §4.4 `may_act`;
 * - handoff.ts — `urn:deputy:agent:{id}` audiences that hand a delegation to another agent;
 * - delegating-user.ts — the user on whose behalf a chain acts;
 * - registry-rules.ts — the registry's rules (active agent, allowed audiences and scopes, depth);
 * - denial.ts — {@link DelegationDenied}, a refusal carrying its OAuth error code;
 * - subject-resolution.ts — the {@link SubjectResolver} port (implemented by `oauth/`) and the
 *   resolved chain types; registry-check.ts — the registry half of resolution.
 *
 * @module
 */
export { ACT_PARSE_LIMIT, actFromChain, ChainClaimError, chainFromAct, extendChain, mayActNames, type ActorClaim, type DelegationChain } from './act-claim.js';
export type { DelegatingUser } from './delegating-user.js';
export { DelegationDenied, type DenialCode } from './denial.js';
export { AGENT_AUDIENCE_PREFIX, handoffTarget } from './handoff.js';
export { checkAgainstRegistry, type AgentLookup } from './registry-check.js';
export { agentMayTarget, RegistryAuthorizer, type DelegationAuthorizer, type DelegationPermit, type DelegationRequest } from './registry-rules.js';
export {
  checkGrantSequence,
  invalidLink,
  invalidToken,
  sameChain,
  scopesOf,
  type DelegatedSubject,
  type DelegationGrant,
  type DelegationLink,
  type InvalidSubject,
  type SubjectResolution,
  type SubjectResolver,
  type VerifiedChain,
} from './subject-resolution.js';
