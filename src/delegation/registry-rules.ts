/**
 * The registry's delegation rules: the one question every token exchange asks before issuing —
 * may this agent act for this user, through this chain, with these scopes, at this audience?
 * (DESIGN: action `delegate`.)
 *
 * {@link RegistryAuthorizer} answers from the agent registry (allowed scopes, audiences, depth).
 * The PDP wraps it with Cedar policies; the grant only ever sees {@link DelegationAuthorizer}.
 * The same rules are applied again, link by link, whenever a chain is presented to the PDP
 * (registry-check.ts), so a narrowed registry entry takes effect on tokens already issued.
 *
 * @module
 */
import type { Agent } from '../agents/index.js';
import type { DelegationChain } from './act-claim.js';
import type { DelegatingUser } from './delegating-user.js';
import { DelegationDenied } from './denial.js';
import { AGENT_AUDIENCE_PREFIX, handoffTarget } from './handoff.js';

/** One delegation to decide: the chain as it would be after the exchange. */
export interface DelegationRequest {
  user: DelegatingUser;
  /** The agent that will hold the token (the authenticated client). */
  agent: Agent;
  /** The chain after this exchange, first agent first; its last element is `agent.id`. */
  chain: DelegationChain;
  /** The token audience (RFC 8693 §2.1 `audience`; a handoff audience, or an API's). */
  audience: string;
  /** The scopes the token would carry. */
  scopes: readonly string[];
}

/** What a permit may report: the ids of the policies that decided (recorded in the receipt). */
export interface DelegationPermit {
  policies: readonly string[];
}

/** Decides delegations; implemented by {@link RegistryAuthorizer} and by the PDP on top of it. */
export interface DelegationAuthorizer {
  /**
   * Resolves when allowed (with the deciding policies, if any).
   *
   * @throws {@link DelegationDenied} when refused.
   */
  authorize(request: DelegationRequest): Promise<void | DelegationPermit>;
}

/** Whether `agent` may target `audience`: listed, or a handoff covered by `urn:deputy:agent:*`. */
export function agentMayTarget(agent: Agent, audience: string): boolean {
  if (agent.audiences.includes(audience)) return true;
  return handoffTarget(audience) !== undefined && agent.audiences.includes(`${AGENT_AUDIENCE_PREFIX}*`);
}

/**
 * The registry's rules: the agent is active, and allowed the audience and every scope; the
 * chain is no longer than the agent's `maxDelegationDepth` nor the deployment's limit.
 */
export class RegistryAuthorizer implements DelegationAuthorizer {
  /** @param maxChainDepth The deployment's limit on agents in a chain (`tokens.maxChainDepth`). */
  constructor(readonly maxChainDepth: number) {}

  /**
   * @throws {@link DelegationDenied} `unauthorized_client` (agent disabled), `invalid_target`
   *   (audience not allowed), `invalid_scope` (scope not allowed), `invalid_grant` (too deep).
   */
  async authorize({ agent, chain, audience, scopes }: DelegationRequest): Promise<void> {
    if (agent.status !== 'active') throw new DelegationDenied('unauthorized_client', `agent "${agent.id}" is disabled`);
    if (!agentMayTarget(agent, audience)) {
      throw new DelegationDenied('invalid_target', `agent "${agent.id}" is not allowed the audience "${audience}"`);
    }
    const denied = scopes.filter((s) => !agent.scopes.includes(s));
    if (denied.length > 0) throw new DelegationDenied('invalid_scope', `agent "${agent.id}" is not allowed the scope "${denied.join(' ')}"`);
    const limit = Math.min(agent.maxDelegationDepth, this.maxChainDepth);
    if (chain.length > limit) {
      throw new DelegationDenied('invalid_grant', `delegation depth ${chain.length} exceeds the limit of ${limit} for agent "${agent.id}"`);
    }
  }
}
